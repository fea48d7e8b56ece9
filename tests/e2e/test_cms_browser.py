"""The CMS as a person uses it, in Chromium against a real server: admin, browsable API, docs, console.

Each page is saved as a screenshot in test-artifacts/cms-*.png. The browser tests skip when the
`playwright` package or Debian's Chromium is missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from collections_app import services
from collections_app.models import Collection
from tests.conftest import EVERY_TYPE, http_for, token_of
from tests.e2e.browsing import Pages, screenshot
from tests.live import Server

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # only the browser tests need it; they skip without it
    pass

RECORDS = "/admin/collections_app/record/"


@pytest.fixture
def root(transactional_db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", "root-pass", first_name="Ruth")


@pytest.fixture
def things(live: Server, root: User) -> Collection:
    """A public-read collection with a field of every type (its relation points to itself)."""
    collection = services.collection_create(name="things", fields=[], list_rule="", view_rule="")
    services.collection_update(collection=collection, changes={"fields": EVERY_TYPE})
    return Collection.objects.get(pk=collection.pk)


@pytest.fixture
def api(live: Server, root: User) -> Iterator[httpx.Client]:
    with http_for(live, root) as client:
        yield client


def sign_in(page: Page, next_url: str = "/admin/") -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("root-pass")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_url}")


def row(page: Page, field: str) -> Any:
    return page.locator(f"div.form-row.field-{field}")


def pick(page: Page, field: str, search: str, choice: str) -> None:
    """Choose in a select2 picker: open it, type, click the found option."""
    row(page, field).locator(".select2-selection").click()
    page.locator(".select2-container--open .select2-search__field").fill(search)
    page.locator(".select2-results__option", has_text=choice).click()


def records_of(api: httpx.Client, name: str, query: str = "") -> list[dict[str, Any]]:
    response = api.get(f"/api/v1/collections/{name}/records/", params={"query": query} if query else None)
    assert response.status_code == 200, response.text
    return response.json()["results"]


# --- the admin ---------------------------------------------------------------------------------


def test_admin_adds_and_edits_a_record_of_every_field_type(
    pages: Pages, things: Collection, api: httpx.Client, root: User
) -> None:
    parent = api.post("/api/v1/collections/things/records/", json={"title": "Parent"}).json()
    page = pages.new()
    sign_in(page, f"{RECORDS}add/?collection=things")
    expect(page.locator("h1")).to_have_text("Add a things record")

    page.locator("#id_title").fill("Lamp")
    page.locator("#id_body").fill("A lamp.\nSecond line.")
    page.locator("#id_price").fill("-1")  # below the minimum: refused on its field
    page.locator("#id_count").fill("3")
    page.locator("#id_active").check()
    page.locator("#id_contact").fill("ruth@example.com")
    page.locator("#id_site").fill("https://example.com/lamp")
    page.locator("#id_day").fill("2026-03-04")
    page.locator("#id_at").fill("2026-03-04T05:06:07")
    page.locator("#id_status").select_option("published")
    page.locator("#id_meta").fill('{"tags": ["a", "b"]}')
    pick(page, "parent", "Par", f"Parent ({parent['id']})")
    pick(page, "owner", "ruth", "root (Ruth)")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".errornote")).to_be_visible()
    expect(row(page, "price").locator(".errorlist")).to_contain_text("greater than or equal to 0")
    expect(row(page, "title").locator(".errorlist")).to_have_count(0)
    expect(page.locator("#id_title")).to_have_value("Lamp")  # nothing typed is lost
    expect(row(page, "parent").locator(".select2-selection__rendered")).to_contain_text("Parent")
    screenshot(page, "cms-admin-record-add-error")

    page.locator("#id_price").fill("9.5")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    expect(page.locator("h1")).to_have_text("things records")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    screenshot(page, "cms-admin-records")

    [lamp] = records_of(api, "things", 'title = "Lamp"')
    assert {key: lamp[key] for key in lamp if key not in ("id", "collection", "created", "updated")} == {
        "title": "Lamp",
        "body": "A lamp.\nSecond line.",
        "price": 9.5,
        "count": 3,
        "active": True,
        "contact": "ruth@example.com",
        "site": "https://example.com/lamp",
        "day": "2026-03-04",
        "at": "2026-03-04T05:06:07.000000Z",
        "status": "published",
        "meta": {"tags": ["a", "b"]},
        "parent": parent["id"],
        "owner": str(root.pk),
    }

    page.get_by_role("link", name=lamp["id"], exact=True).click()
    expect(page.locator("h1")).to_have_text("Edit a things record")
    expect(page.locator(".breadcrumbs")).to_contain_text(
        f"things \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK} {lamp['id']}"
    )
    expect(page.locator("#id_at")).to_have_value("2026-03-04T05:06:07")
    page.locator("#id_count").fill("4")
    page.locator("#id_active").uncheck()
    page.locator("#id_meta").fill("[1, 2]")
    screenshot(page, "cms-admin-record-change")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    edited = api.get(f"/api/v1/collections/things/records/{lamp['id']}/").json()
    assert (edited["count"], edited["active"], edited["meta"], edited["at"]) == (4, False, [1, 2], lamp["at"])
    assert pages.errors == []


def test_admin_record_list_searches_sorts_and_filters(pages: Pages, things: Collection, api: httpx.Client) -> None:
    for title, price, status in [("Lamp", 150, "published"), ("Desk", 9, "draft"), ("Chair", 75, "draft")]:
        api.post("/api/v1/collections/things/records/", json={"title": title, "price": price, "status": status})
    page = pages.new()
    sign_in(page, f"{RECORDS}?collection=things")
    titles = page.locator("#result_list tbody td.field-title")
    expect(titles).to_have_text(["Chair", "Desk", "Lamp"])  # newest first

    screenshot(page, "cms-admin-records-sorting")
    page.locator("#result_list thead th.column-price a").first.click()  # sort by price
    expect(titles).to_have_text(["Desk", "Chair", "Lamp"])

    page.locator("#searchbar").fill('price > 50 && status = "draft"')
    page.locator("#searchbar").press("Enter")
    expect(titles).to_have_text(["Chair"])

    page.locator("#searchbar").fill("price > cheap")
    page.locator("#searchbar").press("Enter")
    expect(page.locator(".messagelist .error")).to_contain_text("Invalid query at position 8")
    screenshot(page, "cms-admin-records-invalid-query")

    page.goto(f"{RECORDS}?collection=things")
    page.locator("#changelist-filter").get_by_role("link", name="published").click()
    expect(titles).to_have_text(["Lamp"])
    assert pages.errors == []


def test_rule_editor_keeps_a_typed_expression(pages: Pages, things: Collection) -> None:
    page = pages.new()
    sign_in(page, f"/admin/collections_app/collection/{things.pk}/change/")
    mode, text = page.locator("#id_create_rule_0"), page.locator("#id_create_rule_1")
    expect(mode).to_have_value("staff")
    text.fill("@request.auth.id != null && owner = @request.auth.id")
    expect(mode).to_have_value("query")  # typing switches the choice to the query
    screenshot(page, "cms-admin-collection")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    things.refresh_from_db()
    assert things.create_rule == "@request.auth.id != null && owner = @request.auth.id"

    # Choosing "Staff only" beside the query is refused, and the query stays.
    mode.select_option("staff")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".errorlist")).to_contain_text("A query is typed but “Staff only (null)” is chosen")
    expect(text).to_have_value("@request.auth.id != null && owner = @request.auth.id")
    things.refresh_from_db()
    assert things.create_rule == "@request.auth.id != null && owner = @request.auth.id"

    # The list shows the rule at a glance.
    page.goto("/admin/collections_app/collection/")
    expect(page.locator("td.field-create_rule_badge code")).to_have_text(
        "@request.auth.id != null && owner = @request.auth.id"
    )
    expect(page.locator("td.field-list_rule_badge")).to_have_text("everyone")
    expect(page.locator("td.field-delete_rule_badge")).to_have_text("staff only")
    screenshot(page, "cms-admin-collections")
    assert pages.errors == []


def test_fields_are_added_as_rows(pages: Pages, things: Collection) -> None:
    page = pages.new()
    sign_in(page, f"/admin/collections_app/collection/{things.pk}/change/")
    page.get_by_role("button", name="Add a field").click()
    new_row = page.locator("#fields-group tbody tr.dynamic-fields").last
    new_row.locator("input[name$='-name']").fill("stock")
    new_row.locator("select[name$='-type']").select_option("number")
    new_row.locator("textarea[name$='-options']").fill('{"min": 0, "integer": true}')
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    things.refresh_from_db()
    assert things.fields[-1] == {
        "name": "stock",
        "type": "number",
        "required": False,
        "unique": False,
        "hidden": False,
        "options": {"min": 0, "integer": True},
    }
    assert pages.errors == []


# --- the browsable API and the docs ------------------------------------------------------------


def test_browsable_api_form_creates_a_record(pages: Pages, things: Collection, api: httpx.Client) -> None:
    page = pages.new()
    page.goto("/api/v1/collections/")  # anonymous: a 401 page that offers to log in
    page.locator(".login-needed").get_by_role("link", name="log in").click()
    page.locator("#id_username").fill("root")
    page.locator("#id_password").fill("root-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("h1")).to_have_text("Collections")

    page.goto("/api/v1/collections/things/records/")
    expect(page.locator("h1")).to_have_text("Things records")
    form = page.locator("#post-object-form")
    form.locator("[name=title]").fill("From the form")
    form.locator("[name=price]").fill("12.5")
    form.locator("[name=count]").fill("7")
    form.locator("[name=active]").check()
    form.locator("[name=day]").fill("2026-07-08")
    form.locator("[name=status]").select_option("draft")
    form.locator("[name=meta]").fill('{"from": "form"}')
    form.get_by_role("button", name="POST").click()
    expect(page.locator(".response-info")).to_contain_text("HTTP 201 Created")
    screenshot(page, "cms-api-created")
    [created] = records_of(api, "things", 'title = "From the form"')
    assert (created["price"], created["count"], created["active"], created["meta"]) == (12.5, 7, True, {"from": "form"})
    assert created["day"] == "2026-07-08"
    errors = [error for error in pages.errors if "status of 401" not in error]  # the 401 page itself
    assert errors == []


def test_openapi_follows_a_new_field(live: Server, things: Collection, api: httpx.Client) -> None:
    def properties() -> dict[str, Any]:
        schema = api.get("/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}).json()
        return schema["components"]["schemas"]["ThingsRecordRequest"]["properties"]

    assert properties()["meta"] == {"description": "Any JSON value.", "nullable": True}
    assert "stock" not in properties()
    fields = [*things.fields, {"name": "stock", "type": "number", "options": {"integer": True}}]
    assert api.patch("/api/v1/collections/things/", json={"fields": fields}).status_code == 200
    assert properties()["stock"] == {"type": "integer", "nullable": True}


def test_swagger_try_it_out_creates_and_lists_records(
    pages: Pages, things: Collection, api: httpx.Client, root: User
) -> None:
    page = pages.new()
    page.goto("/api/v1/docs/")
    page.locator(".auth-wrapper .btn.authorize").click()
    bearer = page.locator(".auth-container", has=page.locator("#auth-bearer-value"))
    bearer.locator("#auth-bearer-value").fill(token_of(root))
    bearer.get_by_role("button", name="Apply credentials").click()
    page.locator(".close-modal").click()

    create = page.locator("#operations-things-records_things_create")
    create.locator(".opblock-summary").click()
    create.get_by_role("button", name="Try it out").click()
    create.locator("textarea.body-param__text").fill(json.dumps({"title": "From Swagger", "price": 3, "active": True}))
    create.get_by_role("button", name="Execute").click()
    expect(create.locator(".live-responses-table tbody .response-col_status")).to_contain_text("201")
    screenshot(page, "cms-docs-created")
    [created] = records_of(api, "things", 'title = "From Swagger"')
    assert (created["price"], created["active"]) == (3, True)

    listing = page.locator("#operations-things-records_things_list")
    listing.locator(".opblock-summary").click()
    listing.get_by_role("button", name="Try it out").click()
    listing.locator("tr[data-param-name='query'] input").fill('title ~ "swagger"')
    listing.get_by_role("button", name="Execute").click()
    expect(listing.locator(".live-responses-table tbody .response-col_status")).to_contain_text("200")
    expect(listing.locator(".live-responses-table")).to_contain_text(created["id"])
    assert pages.errors == []


# --- the console, and every page ---------------------------------------------------------------


def test_console_at_420_px_has_no_horizontal_overflow(
    browser: Browser, live: Server, things: Collection, api: httpx.Client
) -> None:
    context = browser.new_context(base_url=live.url, viewport={"width": 420, "height": 860})
    try:
        pages = Pages(live, context)
        page = pages.new()
        sign_in(page, "/")
        expect(page.locator("#self-presence")).to_be_visible()  # honest: the presence feed counts this page
        expect(page.locator("#presence li .you")).to_have_text("you, this page")
        page.get_by_label("Collection", exact=True).select_option("things")
        page.get_by_label("User id", exact=True).fill("a-rather-long-user-id-for-a-narrow-screen-0123456789")
        page.get_by_role("button", name="Connect", exact=True).click()
        expect(page.locator("#state")).to_have_text("connected")
        long_text = "A text long enough to wrap several times on a narrow phone screen " * 3
        created = api.post("/api/v1/collections/things/records/", json={"title": "Long", "body": long_text})
        assert created.status_code == 201, created.text
        expect(page.locator("#events tbody tr[data-type='record.created']")).to_have_count(1)
        widths = page.evaluate(
            """() => {
              const wrap = document.querySelector('.table-wrap');
              return {page: document.documentElement.scrollWidth, view: window.innerWidth,
                      table: wrap.scrollWidth, wrap: wrap.clientWidth};
            }"""
        )
        screenshot(page, "cms-console-420")
        assert widths["page"] <= widths["view"], widths
        assert widths["table"] <= widths["wrap"], widths  # no event cut off or scrolled sideways
        assert pages.errors == []
    finally:
        context.close()


def test_no_page_reports_a_console_error(pages: Pages, things: Collection, api: httpx.Client) -> None:
    record = api.post("/api/v1/collections/things/records/", json={"title": "Seen"}).json()
    icon = httpx.get(f"{pages.server.url}/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"

    anonymous = pages.new()
    for name, url in [("admin-login", "/admin/login/"), ("api-login", "/api/v1/auth/login/"), ("console-anon", "/")]:
        visit(anonymous, url)
        screenshot(anonymous, f"cms-page-{name}")
    anonymous.close()

    page = pages.new()
    sign_in(page)
    # The record forms and lists, the collection pages and the docs are checked by the tests above.
    visited = {
        "admin-index": "/admin/",
        "admin-collection-add": "/admin/collections_app/collection/add/",
        "admin-records-all": RECORDS,
        "admin-records-choose": f"{RECORDS}add/",
        "api-root": "/api/v1/",
        "api-record": f"/api/v1/collections/things/records/{record['id']}/",
        "api-collection": "/api/v1/collections/things/",
    }
    for name, url in {**visited, "console": "/"}.items():
        visit(page, url)
        screenshot(page, f"cms-page-{name}")
    assert pages.errors == []


def visit(page: Page, url: str) -> None:
    """Load a page and wait until it is done (the console: until its presence list is live)."""
    page.goto(url)
    if url == "/":
        expect(page.locator("#presence-state")).to_have_text("live")  # its stream never lets the network idle
    else:
        page.wait_for_load_state("networkidle")
