"""The Django admin: collections edited as field rows and rules, records through typed forms per collection.

Everything goes through the services, with their validation; these tests post what the admin's
pages post. The same screens are driven in Chromium in tests/e2e/test_cms_browser.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from collections_app import services
from collections_app.models import Collection, Record
from tests.conftest import EVERY_TYPE

RECORDS = "/admin/collections_app/record/"


@pytest.fixture
def admin_client(db: None) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    client.force_login(user)
    return client


def rule(value: str | None) -> tuple[str, str]:
    if value is None:
        return "staff", ""
    return ("everyone", "") if value == "" else ("query", value)


def collection_form(
    name: str = "posts", fields: list[dict[str, Any]] | None = None, initial: int = 0, **rules: Any
) -> dict[str, Any]:
    """What the collection page posts: the name, one row per field, and each rule's choice and text."""
    if fields is None:
        fields = [
            {"name": "title", "type": "text", "required": True, "options": {"max_length": 200}},
            {"name": "price", "type": "number"},
        ]
    form: dict[str, Any] = {
        "name": name,
        "fields-TOTAL_FORMS": str(len(fields)),
        "fields-INITIAL_FORMS": str(initial),
        "fields-MIN_NUM_FORMS": "0",
        "fields-MAX_NUM_FORMS": "1000",
    }
    for index, field in enumerate(fields):
        prefix = f"fields-{index}-"
        form[prefix + "name"] = field["name"]
        form[prefix + "type"] = field["type"]
        for flag in ("required", "unique", "hidden", "DELETE"):
            if field.get(flag):
                form[prefix + flag] = "on"
        form[prefix + "options"] = json.dumps(field["options"]) if field.get("options") else ""
    defaults = {"list_rule": "", "view_rule": "price > 5", "create_rule": None, "update_rule": None}
    for name_, value in {**defaults, "delete_rule": None, **rules}.items():
        mode, text = rule(value) if not isinstance(value, tuple) else value
        form[f"{name_}_0"], form[f"{name_}_1"] = mode, text
    return form


def field_row(html: str, name: str) -> str:
    """The admin form's row of one field: its label, input, errors and help."""
    match = re.search(
        rf'<div class="form-row[^"]* field-{name}">(.*?)(?=<div class="form-row|</fieldset>)', html, re.DOTALL
    )
    assert match, name
    return match[1]


def errors_of(html: str) -> list[str]:
    return re.findall(r'<ul class="errorlist[^"]*"[^>]*>\s*<li>(.*?)</li>', html, re.DOTALL)


# --- collections -------------------------------------------------------------------------------


def test_collection_is_created_from_field_rows_and_rules(admin_client: Client) -> None:
    response = admin_client.post("/admin/collections_app/collection/add/", collection_form())
    assert response.status_code == 302, errors_of(response.content.decode())
    collection = Collection.objects.get(name="posts")
    assert collection.list_rule == ""
    assert collection.view_rule == "price > 5"
    assert collection.create_rule is None
    assert collection.fields == [
        {
            "name": "title",
            "type": "text",
            "required": True,
            "unique": False,
            "hidden": False,
            "options": {"max_length": 200},
        },
        {"name": "price", "type": "number", "required": False, "unique": False, "hidden": False, "options": {}},
    ]


def test_collection_page_shows_fields_as_rows(admin_client: Client, products: Collection) -> None:
    html = admin_client.get(f"/admin/collections_app/collection/{products.pk}/change/").content.decode()
    assert 'name="fields-0-name" value="title"' in html
    assert re.search(r'name="fields-1-type"[^>]*>.*?<option value="number" selected>', html, re.DOTALL)
    assert re.search(r'name="fields-6-hidden"[^>]*checked', html)
    assert "{&quot;values&quot;: [&quot;draft&quot;, &quot;published&quot;]}" in html  # select options, as JSON
    assert 'id="fields-empty"' in html  # the row the "Add a field" link copies


def test_field_rows_are_edited_added_and_deleted(admin_client: Client, products: Collection) -> None:
    fields = [dict(field) for field in products.fields]
    fields[1]["options"] = {"min": 0, "max": 1000}
    fields[6]["DELETE"] = True  # secret
    fields.append({"name": "sku", "type": "text", "unique": True})
    form = collection_form(
        "products",
        fields,
        initial=len(products.fields),
        **{r: getattr(products, r) for r in ("list_rule", "view_rule", "create_rule", "update_rule", "delete_rule")},
    )
    response = admin_client.post(f"/admin/collections_app/collection/{products.pk}/change/", form)
    assert response.status_code == 302, errors_of(response.content.decode())
    products.refresh_from_db()
    names = [field["name"] for field in products.fields]
    assert names == ["title", "price", "active", "status", "released", "owner", "meta", "sku"]
    assert products.fields[1]["options"] == {"min": 0, "max": 1000}
    assert products.fields[-1]["unique"] is True


def test_schema_errors_are_shown_on_their_row(admin_client: Client) -> None:
    fields = [
        {"name": "title", "type": "text"},
        {"name": "id", "type": "text"},
        {"name": "status", "type": "select", "options": {"nope": 1}},
    ]
    response = admin_client.post("/admin/collections_app/collection/add/", collection_form(fields=fields))
    assert response.status_code == 200
    html = response.content.decode()
    row_1 = html[html.index('id="fields-1"') : html.index('id="fields-2"')]
    assert "reserved" in row_1
    row_2 = html[html.index('id="fields-2"') : html.index('id="fields-empty"')]
    assert "is not an option of select" in row_2
    assert not Collection.objects.exists()


def test_a_query_typed_beside_staff_only_is_refused_and_kept(admin_client: Client) -> None:
    form = collection_form(list_rule=("staff", "owner = @request.auth.id"))
    response = admin_client.post("/admin/collections_app/collection/add/", form)
    assert response.status_code == 200
    html = response.content.decode()
    assert "A query is typed but “Staff only (null)” is chosen" in html
    assert 'name="list_rule_1" value="owner = @request.auth.id"' in html  # what was typed is still there
    assert not Collection.objects.exists()


@pytest.mark.parametrize(
    ("mode", "text", "saved"),
    [("staff", "", None), ("everyone", "", ""), ("query", "price > 1", "price > 1"), ("everyone", "  ", "")],
)
def test_rule_choices_are_saved_as_null_empty_or_query(
    admin_client: Client, mode: str, text: str, saved: str | None
) -> None:
    response = admin_client.post("/admin/collections_app/collection/add/", collection_form(list_rule=(mode, text)))
    assert response.status_code == 302, errors_of(response.content.decode())
    assert Collection.objects.get().list_rule == saved


def test_query_choice_without_a_query_and_invalid_rules_are_refused(admin_client: Client) -> None:
    empty = admin_client.post("/admin/collections_app/collection/add/", collection_form(list_rule=("query", "")))
    assert "Enter the query" in empty.content.decode()
    invalid = admin_client.post("/admin/collections_app/collection/add/", collection_form(view_rule="nope = 1"))
    assert "Invalid rule" in invalid.content.decode()
    assert not Collection.objects.exists()


def test_collection_list_shows_each_rule_at_a_glance(admin_client: Client, make_collection: Any) -> None:
    make_collection("posts", [{"name": "owner", "type": "user"}], list_rule="", view_rule="owner = @request.auth.id")
    html = admin_client.get("/admin/collections_app/collection/").content.decode()
    row = html[html.index(">posts</a>") :]
    assert '<td class="field-list_rule_badge"><span class="rule-badge rule-everyone"' in row
    assert 'rule-query" title="owner = @request.auth.id">owner = @request.auth.id</code>' in row
    assert row.count("rule-staff") == 3  # create, update and delete
    assert f'href="{RECORDS}?collection=posts">0 records</a>' in row


def test_deleting_a_collection_summarises_its_records(admin_client: Client, products: Collection) -> None:
    services.record_create(collection=products, data={"title": "Hi"})
    page = admin_client.get(f"/admin/collections_app/collection/{products.pk}/delete/").content.decode()
    assert "products, with its 1 records" in page
    response = admin_client.post(f"/admin/collections_app/collection/{products.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Collection.objects.exists()
    assert not Record.objects.exists()


def test_admin_index_lists_each_collections_records(admin_client: Client, products: Collection) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert "Records by collection" in html
    assert f'href="{RECORDS}?collection=products">products</a>' in html
    assert f'href="{RECORDS}add/?collection=products"' in html


# --- the record list ---------------------------------------------------------------------------


@pytest.fixture
def stocked(products: Collection) -> Collection:
    for title, price, active, status in [
        ("Lamp", 150, True, "published"),
        ("Desk", 9, False, "draft"),
        ("Chair", 75.5, True, "draft"),
    ]:
        services.record_create(
            collection=products, data={"title": title, "price": price, "active": active, "status": status}
        )
    return products


def titles(html: str) -> list[str]:
    return re.findall(r'<td class="field-title">(.*?)</td>', html)


def test_record_list_has_a_column_per_field_newest_first(admin_client: Client, stocked: Collection) -> None:
    html = admin_client.get(RECORDS, {"collection": "products"}).content.decode()
    headers = re.findall(r'<th scope="col" class="[^"]*column-([\w]+)', html)
    assert headers[:10] == [
        "id",
        "title",
        "price",
        "active",
        "status",
        "released",
        "owner",
        "secret",
        "meta",
        "created",
    ]
    assert titles(html) == ["Chair", "Desk", "Lamp"]
    assert "<h1>products records</h1>" in html
    assert '&rsaquo; <a href="/admin/collections_app/record/">Records</a>\n&rsaquo; products' in html
    assert "3 records" in html  # the collection's count, not every record's


def test_record_list_sorts_numbers_numerically(admin_client: Client, stocked: Collection) -> None:
    price_column = 3  # 0: the action checkbox, 1: id, 2: title, 3: price
    ascending = admin_client.get(RECORDS, {"collection": "products", "o": str(price_column)}).content.decode()
    assert titles(ascending) == ["Desk", "Chair", "Lamp"]
    descending = admin_client.get(RECORDS, {"collection": "products", "o": f"-{price_column}"}).content.decode()
    assert titles(descending) == ["Lamp", "Chair", "Desk"]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("price > 50 && active = true", ["Chair", "Lamp"]),
        ('status = "draft"', ["Chair", "Desk"]),
        ("lam", ["Lamp"]),  # plain words: found in the text fields
    ],
)
def test_record_search_takes_the_query_language(
    admin_client: Client, stocked: Collection, search: str, expected: list[str]
) -> None:
    html = admin_client.get(RECORDS, {"collection": "products", "q": search}).content.decode()
    assert titles(html) == expected


def test_invalid_search_shows_a_message(admin_client: Client, stocked: Collection) -> None:
    response = admin_client.get(RECORDS, {"collection": "products", "q": "price > abc"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Invalid query at position 8" in html
    assert titles(html) == []


@pytest.mark.parametrize(
    "params", [{"q": "lamp\x00"}, {"q": 'title = "a\x00"'}, {"status__exact": "dr\x00aft"}, {"q": "x" * 5000}]
)
def test_odd_search_and_filter_values_are_no_error(admin_client: Client, stocked: Collection, params: Any) -> None:
    response = admin_client.get(RECORDS, {"collection": "products", **params})
    assert response.status_code == 200


def test_record_list_filters_select_and_bool_fields(admin_client: Client, stocked: Collection) -> None:
    page = admin_client.get(RECORDS, {"collection": "products"}).content.decode()
    assert "By status" in page
    assert "By active" in page
    drafts = admin_client.get(RECORDS, {"collection": "products", "status__exact": "draft"}).content.decode()
    assert titles(drafts) == ["Chair", "Desk"]
    inactive = admin_client.get(RECORDS, {"collection": "products", "active__exact": "false"}).content.decode()
    assert titles(inactive) == ["Desk"]


def test_unknown_collection_is_a_message_not_an_error(admin_client: Client, stocked: Collection) -> None:
    response = admin_client.get(RECORDS, {"collection": "nosuch"})
    assert response.status_code == 200
    assert "There is no collection named “nosuch”" in response.content.decode()


# --- the record form ---------------------------------------------------------------------------


@pytest.fixture
def things(make_collection: Any) -> Collection:
    collection = make_collection("things", [])
    services.collection_update(collection=collection, changes={"fields": EVERY_TYPE})
    return Collection.objects.get(pk=collection.pk)


def filled(parent: Record, user: User, /, **changes: str) -> dict[str, str]:
    form = {
        "title": "Lamp",
        "body": "",
        "price": "9.5",
        "count": "3",
        "active": "on",
        "contact": "a@example.com",
        "site": "https://example.com/x",
        "day": "2026-03-04",
        "at": "2026-03-04T05:06:07",
        "status": "published",
        "meta": '{"tags": ["a"]}',
        "parent": parent.pk,
        "owner": str(user.pk),
    }
    return {**form, **changes}


def test_add_form_has_an_input_per_field_type(admin_client: Client, things: Collection) -> None:
    html = admin_client.get(f"{RECORDS}add/", {"collection": "things"}).content.decode()
    expected = {
        "title": 'type="text" name="title"',
        "body": '<textarea name="body"',
        "price": 'type="number" name="price" step="any" min="0"',
        "count": 'type="number" name="count" step="1"',
        "active": 'type="checkbox" name="active"',
        "contact": 'type="email" name="contact"',
        "site": 'type="url" name="site"',
        "day": 'type="date" name="day"',
        "at": 'type="datetime-local" name="at"',
        "status": '<select name="status"',
        "meta": 'class="json-editor"',
        "parent": 'data-ajax--url="/admin/collections_app/record/lookup/records/things/"',
        "owner": 'data-ajax--url="/admin/collections_app/record/lookup/user/"',
    }
    for name, snippet in expected.items():
        assert snippet in html, name
    assert "<h1>Add a things record</h1>" in html
    assert ">null<" not in html  # the JSON editor starts empty


def test_record_is_added_and_edited_through_typed_form(admin_client: Client, things: Collection) -> None:
    owner = User.objects.get(username="root")
    parent = services.record_create(collection=things, data={"title": "Parent"})
    url = f"{RECORDS}add/?collection=things"
    response = admin_client.post(url, filled(parent, owner))
    assert response.status_code == 302, errors_of(response.content.decode())
    assert response["Location"] == f"{RECORDS}?collection=things"
    record = things.records.exclude(pk=parent.pk).get()
    assert record.data == {
        "title": "Lamp",
        "price": 9.5,
        "count": 3,
        "active": True,
        "contact": "a@example.com",
        "site": "https://example.com/x",
        "day": "2026-03-04",
        "at": "2026-03-04T05:06:07.000000Z",
        "status": "published",
        "meta": {"tags": ["a"]},
        "parent": parent.pk,
        "owner": str(owner.pk),
    }
    change = f"{RECORDS}{record.pk}/change/"
    page = admin_client.get(change).content.decode()
    assert 'value="2026-03-04T05:06:07"' in page
    assert f'<option value="{parent.pk}" selected>Parent ({parent.pk})</option>' in page
    assert "things" in page.split('<div class="breadcrumbs">')[1].split("</div>")[0]
    edited = admin_client.post(change, filled(parent, owner, price="12", active="", meta="", parent=""))
    assert edited.status_code == 302, errors_of(edited.content.decode())
    record.refresh_from_db()
    assert record.data["price"] == 12
    assert record.data["active"] is False
    assert "meta" not in record.data  # empty means no value
    assert "parent" not in record.data


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price", "-1", "greater than or equal to 0"),
        ("count", "2.5", "whole number"),
        ("contact", "not-an-email", "valid email"),
        ("meta", "{nope", "Enter a valid JSON"),
        ("title", "", "required"),
        ("parent", "nosuchrecord", "does not exist"),
        ("owner", "999999", "does not exist"),
    ],
)
def test_validation_errors_are_shown_on_their_field(
    admin_client: Client, things: Collection, field: str, value: str, message: str
) -> None:
    owner = User.objects.get(username="root")
    parent = services.record_create(collection=things, data={"title": "Parent"})
    response = admin_client.post(f"{RECORDS}add/?collection=things", filled(parent, owner, **{field: value}))
    assert response.status_code == 200
    row = field_row(response.content.decode(), field)
    assert "errorlist" in row
    assert message in row, row
    assert things.records.count() == 1


def test_unchanged_datetime_keeps_its_microseconds(admin_client: Client, things: Collection) -> None:
    record = services.record_create(collection=things, data={"title": "T", "at": "2026-01-02T03:04:05.123456Z"})
    page = admin_client.get(f"{RECORDS}{record.pk}/change/").content.decode()
    shown = re.search(r'name="at" value="([^"]+)"', page)[1]
    response = admin_client.post(f"{RECORDS}{record.pk}/change/", {"title": "T2", "at": shown})
    assert response.status_code == 302, errors_of(response.content.decode())
    record.refresh_from_db()
    assert record.data == {"title": "T2", "at": "2026-01-02T03:04:05.123456Z"}


def test_unique_values_are_refused_on_their_field(admin_client: Client, make_collection: Any) -> None:
    make_collection("tags", [{"name": "slug", "type": "text", "unique": True}])
    assert admin_client.post(f"{RECORDS}add/?collection=tags", {"slug": "a"}).status_code == 302
    again = admin_client.post(f"{RECORDS}add/?collection=tags", {"slug": "a"})
    assert "A record with this value already exists." in again.content.decode()


def test_adding_without_a_collection_asks_for_one(admin_client: Client, products: Collection) -> None:
    html = admin_client.get(f"{RECORDS}add/").content.decode()
    assert "choose its collection" in html
    assert f'href="{RECORDS}add/?collection=products"' in html


def test_add_message_and_title_name_the_collection(admin_client: Client, products: Collection) -> None:
    response = admin_client.post(f"{RECORDS}add/?collection=products", {"title": "Hi"}, follow=True)
    record = products.records.get()
    assert f"products/{record.pk}" in response.content.decode()  # “The record “products/…” was added”
    assert str(record) == f"products/{record.pk}"


def test_pickers_search_records_and_users(admin_client: Client, things: Collection) -> None:
    lamp = services.record_create(collection=things, data={"title": "Lamp"})
    services.record_create(collection=things, data={"title": "Desk"})
    found = admin_client.get(f"{RECORDS}lookup/records/things/", {"term": "lam"}).json()
    assert found == {"results": [{"id": lamp.pk, "text": f"Lamp ({lamp.pk})"}], "pagination": {"more": False}}
    by_id = admin_client.get(f"{RECORDS}lookup/records/things/", {"term": lamp.pk}).json()
    assert [item["id"] for item in by_id["results"]] == [lamp.pk]
    User.objects.create_user("alice", first_name="Alice", last_name="Liddell")
    users = admin_client.get(f"{RECORDS}lookup/user/", {"term": "lidd"}).json()
    assert [item["text"] for item in users["results"]] == ["alice (Alice Liddell)"]
    assert admin_client.get(f"{RECORDS}lookup/records/nosuch/").status_code == 404


def test_pickers_need_staff(client: Client, things: Collection) -> None:
    response = client.get(f"{RECORDS}lookup/user/")
    assert response.status_code == 302  # to the admin's login page
    assert "/admin/login/" in response["Location"]


def test_hidden_fields_are_marked_in_the_form(admin_client: Client, products: Collection) -> None:
    html = admin_client.get(f"{RECORDS}add/", {"collection": "products"}).content.decode()
    assert "Hidden: shown only to staff." in field_row(html, "secret")
