"""The live console and the seed document's JavaScript, in a real Chromium against a real server.

The browser tests skip when the `playwright` package or Debian's Chromium is missing; the page's
server-side tests (first in this file) run everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import http_for, token_of
from tests.e2e.browsing import ARTIFACTS, Pages
from tests.live import Server, SSEClient

try:
    from playwright.sync_api import Browser, Page, expect
except ImportError:  # only the browser tests need it; they skip without it
    pass

COLLECTIONS: list[dict[str, Any]] = [
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "content", "type": "text"},
            {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
            {"name": "author", "type": "text"},
        ],
        "list_rule": "",
        "view_rule": "",
    },
    {
        "name": "products",
        "fields": [{"name": "name", "type": "text", "required": True}, {"name": "price", "type": "number"}],
        "list_rule": "",
        "view_rule": "",
        "create_rule": "@request.auth.id != null",
    },
    {
        "name": "users",
        "fields": [{"name": "name", "type": "text", "required": True}, {"name": "active", "type": "bool"}],
        "list_rule": "",
        "view_rule": "",
    },
    {"name": "internal", "fields": [{"name": "note", "type": "text"}]},  # staff only: every rule null
]


# --- the page, server side (no browser) -------------------------------------------------------


def option_values(html: str) -> list[str]:
    return [part.split('"', 1)[0] for part in html.split('<option value="')[1:]]


def test_console_lists_the_collections_the_viewer_may_list(client: Client, staff: User, make_collection: Any) -> None:
    make_collection("public", [{"name": "x", "type": "text"}], list_rule="")
    make_collection("ruled", [{"name": "x", "type": "text"}], list_rule="x = 'a'")
    make_collection("secret", [{"name": "x", "type": "text"}])  # list_rule null: staff only
    anonymous = client.get("/")
    assert anonymous.status_code == 200
    assert anonymous["Content-Type"].startswith("text/html")
    assert option_values(anonymous.content.decode()) == ["", "public", "ruled"]
    client.force_login(staff)
    assert option_values(client.get("/").content.decode()) == ["", "public", "ruled", "secret"]


def test_console_works_without_collections_and_loads_only_its_own_assets(client: Client, db: None) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert option_values(html) == [""]  # "all collections" only
    assert "/static/console/console.js" in html
    assert "/static/console/console.css" in html
    assert "http://" not in html
    assert "https://" not in html
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert client.post("/").status_code == 405


# --- browser fixtures (tests/e2e/conftest.py: `browser`, `pages`) ----------------------------


@pytest.fixture
def site(live: Server, staff: User) -> Iterator[httpx.Client]:
    """The test collections, created through REST; yields a staff API client."""
    with http_for(live, staff) as api:
        for definition in COLLECTIONS:
            response = api.post("/api/v1/collections/", json=definition)
            assert response.status_code == 201, response.text
        yield api


def create(api: httpx.Client, collection: str, **data: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/collections/{collection}/records/", json=data)
    assert response.status_code == 201, response.text
    return response.json()


def connect(page: Page, collection: str = "", name: str = "", **fields: str) -> None:
    """Fill the connection form (collection from the list, or a typed name) and press Connect."""
    page.get_by_label("Collection", exact=True).select_option(collection)
    page.get_by_label("Or another name").fill(name)
    for label, value in (
        ("Live query", fields.get("query", "")),
        ("User id", fields.get("user_id", "")),
        ("User name", fields.get("user_name", "")),
        ("Token", fields.get("token", "")),
    ):
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Connect", exact=True).click()


def record_rows(page: Page) -> Any:
    return page.locator("#events tbody tr[data-type^='record.']")


# --- the console ------------------------------------------------------------------------------


def test_live_query_shows_exactly_the_matching_records(pages: Pages, site: httpx.Client) -> None:
    page = pages.console()
    assert page.locator("#collection option").evaluate_all("options => options.map(o => o.value)") == [
        "",
        "posts",
        "products",
        "users",
    ]  # anonymous viewer: not the staff-only collection
    connect(page, "products", query="price>100", user_id="console-user", user_name="Console User")
    expect(page.locator("#state")).to_have_text("connected")
    expect(page.locator("#presence li[data-user-id='console-user'] .name")).to_have_text("Console User")

    cheap = create(site, "products", name="Cheap", price=50)
    lamp = create(site, "products", name="Lamp", price=150)  # after the other: commit order

    row = record_rows(page).filter(has_text=lamp["id"])
    expect(row).to_have_count(1)
    expect(row.locator(".type")).to_have_text("record.created")
    expect(row.locator(".collection")).to_have_text("products")
    expect(row.locator(".summary")).to_contain_text('name="Lamp"')
    expect(row.locator(".summary")).to_contain_text("price=150")
    expect(record_rows(page)).to_have_count(1)  # the cheap one, sent first, would be here by now
    expect(page.locator("#events tbody")).not_to_contain_text(cheap["id"])

    updated = site.patch(f"/api/v1/collections/products/records/{lamp['id']}/", json={"price": 170})
    assert updated.status_code == 200
    expect(record_rows(page).first.locator(".type")).to_have_text("record.updated")
    expect(record_rows(page).first.locator(".summary")).to_contain_text("price=170")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "console.png", full_page=True)

    page.get_by_role("button", name="Disconnect").click()
    expect(page.locator("#state")).to_have_text("closed")
    assert pages.errors == []


def test_console_loads_nothing_from_another_host(pages: Pages, site: httpx.Client) -> None:
    page = pages.new()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/")
    expect(page.locator("#presence-state")).to_have_text("live")
    origin = urlsplit(pages.server.url)
    assert requested
    assert all(urlsplit(url)[:2] == origin[:2] for url in requested), requested
    paths = {urlsplit(url).path for url in requested}
    assert {"/", "/static/console/console.js", "/static/console/console.css", "/api/v1/presence"} <= paths
    assert pages.errors == []


def test_presence_shows_users_joining_and_leaving(pages: Pages, site: httpx.Client, live: Server) -> None:
    with SSEClient(f"{live.url}/api/v1/realtime?user_id=early-bird&user_name=Early") as early:
        assert early.next().event == "connected"
        page = pages.console()
        expect(page.locator("#presence li[data-user-id='early-bird'] .name")).to_have_text("Early")  # snapshot

        other = pages.new()
        other.goto("/")
        other.evaluate("() => { window.bea = new EventSource('/api/v1/realtime?user_id=user-b&user_name=Bea'); }")
        bea = page.locator("#presence li[data-user-id='user-b']")
        expect(bea.locator(".name")).to_have_text("Bea")
        expect(bea.locator("code")).to_have_text("user-b")

        other.evaluate("() => window.bea.close()")
        expect(bea).to_have_count(0)  # user.left, after the grace period
    expect(page.locator("#presence li[data-user-id='early-bird']")).to_have_count(0)
    expect(page.locator("#presence-empty")).to_be_visible()
    assert pages.errors == []


@pytest.mark.parametrize(
    ("case", "status"),
    [("bad query", 400), ("bad token", 401), ("staff only", 403), ("unknown collection", 404)],
)
def test_stream_errors_show_the_server_detail(
    pages: Pages, site: httpx.Client, live: Server, alice: User, case: str, status: int
) -> None:
    form, path, params = {
        "bad query": ({"collection": "products", "query": "price>abc"}, "products", {"query": "price>abc"}),
        "bad token": ({"token": "not-a-token"}, "", {"token": "not-a-token"}),
        "staff only": ({"name": "internal", "token": token_of(alice)}, "internal", {"token": token_of(alice)}),
        "unknown collection": ({"name": "nosuch"}, "nosuch", {}),
    }[case]
    url = f"/api/v1/realtime{'/' + path if path else ''}{'?' + urlencode(params) if params else ''}"
    answer = httpx.get(f"{live.url}{url}", timeout=10)
    assert answer.status_code == status
    detail = answer.json()["detail"]

    page = pages.console()
    connect(page, **form)
    expect(page.locator("#stream-error")).to_contain_text(f"{status}: {detail}")
    expect(page.locator("#state")).to_have_text("closed")  # a 4xx is not retried
    # The browser itself reports the refused requests (the EventSource's and the one that read
    # the message); nothing else may appear.
    expected = f"Failed to load resource: the server responded with a status of {status}"
    assert pages.errors
    assert all(error.startswith(f"console.error: {expected}") and "/api/v1/realtime" in error for error in pages.errors)


def test_server_busy_is_shown_and_retried_until_disconnect(
    browser: Browser, live_servers: Any, transactional_db: None
) -> None:
    busy = live_servers(FASTCMS_SSE_MAX_CONNECTIONS="1")  # the page's presence stream takes the one slot
    context = browser.new_context(base_url=busy.url)
    try:
        pages = Pages(busy, context)
        page = pages.console()
        connect(page)
        expect(page.locator("#stream-error")).to_contain_text("503: Too many open streams on this server")
        expect(page.locator("#stream-error")).to_contain_text("Retrying in")
        expect(page.locator("#state")).to_have_text("reconnecting")  # a 5xx is retried, with backoff
        page.get_by_role("button", name="Disconnect").click()
        expect(page.locator("#state")).to_have_text("closed")
        assert pages.errors
        assert all("status of 503" in error for error in pages.errors), pages.errors
    finally:
        context.close()


def test_create_form_creates_records_and_shows_server_errors(
    pages: Pages, site: httpx.Client, live: Server, alice: User
) -> None:
    page = pages.console()
    connect(page, "products", query="price>100")
    expect(page.locator("#state")).to_have_text("connected")
    record = page.get_by_label("JSON object", exact=False)
    create_button = page.get_by_role("button", name="Create", exact=True)
    result = page.locator("#create-result")

    record.fill('{"name": "Desk", "price": 300}')
    create_button.click()  # no token: anonymous, refused by the create rule
    anonymous = httpx.post(f"{live.url}/api/v1/collections/products/records/", json={"name": "Desk", "price": 300})
    expect(result).to_have_text(f"401: {anonymous.json()['detail']}")

    page.get_by_label("Token", exact=True).fill(token_of(alice))
    record.fill('{"name": "Desk", "price": "abc"}')
    create_button.click()
    invalid = site.post("/api/v1/collections/products/records/", json={"name": "Desk", "price": "abc"}).json()
    expect(result).to_have_text(f"400: price: {' '.join(invalid['price'])}")

    record.fill("[1, 2]")
    create_button.click()
    expect(result).to_have_text("The record must be a JSON object.")

    record.fill('{"name": "Desk", "price": 300}')
    create_button.click()
    expect(result).to_contain_text("Created ")
    created_id = result.inner_text().split()[1]
    expect(record_rows(page).filter(has_text=created_id).locator(".summary")).to_contain_text('name="Desk"')
    allowed = ("status of 401", "status of 400")  # the two refused creates, reported by the browser
    assert all(any(text in error for text in allowed) for error in pages.errors), pages.errors
    assert len(pages.errors) == 2


def test_signed_in_staff_sees_staff_collections_and_creates_with_the_session(pages: Pages, site: httpx.Client) -> None:
    page = pages.new()
    page.goto("/admin/login/?next=/")
    page.get_by_label("Username").fill("staff")
    page.get_by_label("Password").fill("staff-pass")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".viewer")).to_contain_text("Signed in as staff (staff)")
    assert "internal" in page.locator("#collection option").evaluate_all("options => options.map(o => o.value)")

    connect(page, "internal")  # the session cookie authenticates the stream
    expect(page.locator("#state")).to_have_text("connected")
    page.get_by_label("JSON object", exact=False).fill('{"note": "from the session"}')
    page.get_by_role("button", name="Create", exact=True).click()  # session + CSRF token, no API token
    expect(page.locator("#create-result")).to_contain_text("Created ")
    expect(record_rows(page).first.locator(".summary")).to_contain_text('note="from the session"')
    assert pages.errors == []  # the admin's login page included (its icon is /favicon.ico)


# --- the seed document's JavaScript, run as written -------------------------------------------

# Gives each snippet a `console` that records what it logs, so its own listeners are observed.
HARNESS = """() => {
  window.seed = { logs: [], sources: {} };
  window.seed.console = { log: (...args) => window.seed.logs.push(JSON.parse(JSON.stringify(args))) };
}"""

SEED_BASIC = """
// Connect to real-time updates
const eventSource = new EventSource('/api/v1/realtime');

// Listen to record events
eventSource.addEventListener('record.created', (e) => {
  const data = JSON.parse(e.data);
  console.log('New record:', data);
});

eventSource.addEventListener('record.updated', (e) => {
  const data = JSON.parse(e.data);
  console.log('Record updated:', data);
});

eventSource.addEventListener('record.deleted', (e) => {
  const data = JSON.parse(e.data);
  console.log('Record deleted:', data);
});
"""

SEED_LIVE_QUERIES = {
    "published": "const eventSource = new EventSource('/api/v1/realtime?query=status=published');",
    "expensive": "const eventSource = new EventSource('/api/v1/realtime/products?query=price>100');",
    "active": "const eventSource = new EventSource('/api/v1/realtime/users?query=active=true');",
    "posts": "const eventSource = new EventSource('/api/v1/realtime/posts');",
    "john": "const eventSource = new EventSource('/api/v1/realtime/posts?query=author=john');",
}

SEED_PRESENCE = """
// Connect with user ID for presence tracking
const userId = 'user-123';
const eventSource = new EventSource(`/api/v1/realtime?user_id=${userId}`);

// Listen to presence events
eventSource.addEventListener('user.joined', (e) => {
  const data = JSON.parse(e.data);
  console.log('User joined:', data.data);
  // { user_id, user_name, connections, last_seen }
});

eventSource.addEventListener('user.left', (e) => {
  const data = JSON.parse(e.data);
  console.log('User left:', data.data);
});
"""

SEED_SECURITY = """
const token = 'your-auth-token';
const eventSource = new EventSource(
  `/api/v1/realtime?token=${token}&user_id=123`
);
"""

# useRealtime's effect body, verbatim, with React's state setters passed in.
SEED_HOOK_EFFECT = """
    let url = `/api/v1/realtime`;
    if (collection) {
      url = `/api/v1/realtime/${collection}`;
    }
    if (query) {
      url += `?query=${encodeURIComponent(query)}`;
    }

    const eventSource = new EventSource(url);

    eventSource.addEventListener('connected', () => {
      setConnected(true);
    });

    eventSource.addEventListener('record.created', (e) => {
      const data = JSON.parse(e.data);
      setEvents(prev => [...prev, data]);
    });

    eventSource.addEventListener('record.updated', (e) => {
      const data = JSON.parse(e.data);
      setEvents(prev => [...prev, data]);
    });

    eventSource.addEventListener('record.deleted', (e) => {
      const data = JSON.parse(e.data);
      setEvents(prev => [...prev, data]);
    });

    eventSource.onerror = () => {
      setConnected(false);
    };

    return () => {
      eventSource.close();
    };
"""

# React without React: a state cell per useState, the effect run once, its cleanup kept.
HOOK_HARNESS = (
    """(args) => {
  const [name, collection, query] = args;
  const hook = { events: [], connected: false, urls: [] };
  const setEvents = (next) => { hook.events = typeof next === 'function' ? next(hook.events) : next; };
  const setConnected = (next) => { hook.connected = next; };
  const Native = window.EventSource;
  // Records the URL the effect builds, then behaves exactly as the browser's EventSource.
  const EventSource = class extends Native {
    constructor(url, init) { super(url, init); hook.urls.push(url); hook.source = this; }
  };
  const effect = () => {"""
    + SEED_HOOK_EFFECT
    + """  };
  hook.cleanup = effect();
  window.hooks = window.hooks || {};
  window.hooks[name] = hook;
}"""
)

ENVELOPE = ["id", "type", "collection", "record_id", "data", "timestamp"]


def seed_page(pages: Pages) -> Page:
    page = pages.console()
    page.evaluate(HARNESS)
    return page


def run_snippet(page: Page, name: str, code: str, record: tuple[str, ...] = ()) -> None:
    """Run a seed snippet as written; its `eventSource` is kept as `seed.sources[name]`.

    Events of the `record` types are logged as `[type, payload]` too, by listeners added in the
    same task as the snippet, so none can be missed.
    """
    page.evaluate(
        "([name, types]) => {\n  const console = window.seed.console;\n"
        + code
        + "\n  window.seed.sources[name] = eventSource;"
        + "\n  for (const type of types) {"
        + "\n    eventSource.addEventListener(type, (e) => window.seed.logs.push([type, JSON.parse(e.data)]));"
        + "\n  }\n}",
        [name, list(record)],
    )
    page.wait_for_function("(name) => window.seed.sources[name].readyState === EventSource.OPEN", arg=name)


def wait_for_log(page: Page, label: str, where: str = "true") -> dict[str, Any]:
    """The first thing a snippet logged after `label` for which the JS expression `where` holds."""
    finder = f"(label) => window.seed.logs.find(([text, data]) => text === label && ({where}))"
    page.wait_for_function(finder, arg=label)
    return page.evaluate(f"(label) => ({finder})(label)[1]", label)


def test_seed_basic_connection_snippet(pages: Pages, site: httpx.Client) -> None:
    page = seed_page(pages)
    run_snippet(page, "basic", SEED_BASIC)
    post = create(site, "posts", title="New Post", content="Post content...")
    where = f"data.record_id === {json.dumps(post['id'])}"

    created = wait_for_log(page, "New record:", where)
    assert list(created) == ENVELOPE
    assert created["type"] == "record.created"
    assert created["collection"] == "posts"
    assert created["data"] == post  # the record as REST shows it
    assert created["timestamp"].endswith("Z")

    site.patch(f"/api/v1/collections/posts/records/{post['id']}/", json={"title": "Edited"})
    updated = wait_for_log(page, "Record updated:", where)
    assert updated["type"] == "record.updated"
    assert updated["data"]["title"] == "Edited"

    site.delete(f"/api/v1/collections/posts/records/{post['id']}/")
    deleted = wait_for_log(page, "Record deleted:", where)
    assert list(deleted) == ENVELOPE
    assert deleted["data"]["id"] == post["id"]
    assert deleted["data"]["title"] == "Edited"  # as it was
    assert pages.errors == []


def test_seed_live_query_snippets(pages: Pages, site: httpx.Client) -> None:
    page = seed_page(pages)
    for name, code in SEED_LIVE_QUERIES.items():
        run_snippet(page, name, code)
    page.evaluate("""() => {
      window.seed.received = {};
      for (const [name, source] of Object.entries(window.seed.sources)) {
        window.seed.received[name] = [];
        source.addEventListener('record.created', (e) => window.seed.received[name].push(JSON.parse(e.data)));
      }
    }""")
    # Every non-matching record is committed before every matching one, so a stream that has
    # its last expected record would already hold any wrongly delivered one.
    draft = create(site, "posts", title="Draft", status="draft", author="jane")
    create(site, "products", name="Cheap", price=50)
    create(site, "users", name="Jane Roe", active=False)
    published = create(site, "posts", title="Published", status="published", author="john")
    expensive = create(site, "products", name="Lamp", price=150)
    active = create(site, "users", name="John Doe", active=True)
    expected = {
        "published": [published],
        "expensive": [expensive],
        "active": [active],
        "posts": [draft, published],
        "john": [published],
    }
    for name, records in expected.items():
        page.wait_for_function(
            "([name, id]) => window.seed.received[name].some((event) => event.record_id === id)",
            arg=[name, records[-1]["id"]],
        )
    received = page.evaluate("() => window.seed.received")
    for name, records in expected.items():
        assert [event["data"] for event in received[name]] == records, name
        assert all(list(event) == ENVELOPE and event["type"] == "record.created" for event in received[name])
    assert pages.errors == []


def test_seed_presence_snippet(pages: Pages, site: httpx.Client, live: Server) -> None:
    assert "user-123" not in {user["user_id"] for user in httpx.get(f"{live.url}/api/v1/presence").json()["users"]}
    page = seed_page(pages)
    run_snippet(page, "presence", SEED_PRESENCE)
    joined = wait_for_log(page, "User joined:", "data.user_id === 'user-123'")  # its own join
    assert list(joined) == ["user_id", "user_name", "connections", "last_seen"]
    assert joined["connections"] == 1
    assert joined["user_name"] is None
    assert joined["last_seen"].endswith("Z")

    # Get Active Users (the document's curl example)
    active = httpx.get(f"{live.url}/api/v1/presence").json()
    assert set(active) == {"users", "count"}
    assert {"user_id": "user-123", "user_name": None, "connections": 1} in [
        {key: user[key] for key in ("user_id", "user_name", "connections")} for user in active["users"]
    ]

    other = pages.new()
    other.goto("/")
    other.evaluate("() => { window.other = new EventSource('/api/v1/realtime?user_id=user-456&user_name=Jo'); }")
    other_joined = wait_for_log(page, "User joined:", "data.user_id === 'user-456'")
    assert other_joined["user_name"] == "Jo"
    other.close()  # closing the tab ends its stream
    left = wait_for_log(page, "User left:", "data.user_id === 'user-456'")
    assert list(left) == ["user_id", "user_name", "connections", "last_seen"]
    assert left["connections"] == 0
    assert pages.errors == []


def test_seed_security_snippet_with_a_real_token(pages: Pages, site: httpx.Client, staff: User) -> None:
    page = seed_page(pages)
    code = SEED_SECURITY.replace("your-auth-token", token_of(staff))
    run_snippet(page, "security", code, record=("connected", "user.joined", "record.created"))
    assert wait_for_log(page, "connected")["data"]["user_id"] == "123"  # staff may present as anyone
    assert wait_for_log(page, "user.joined", "data.data.user_id === '123'")["data"]["user_name"] == "Stella Staff"
    note = create(site, "internal", note="staff only")
    created = wait_for_log(page, "record.created", f"data.record_id === {json.dumps(note['id'])}")
    assert created["data"]["note"] == "staff only"  # the token's user (staff) may list this collection
    assert pages.errors == []


def test_seed_react_hook_logic(pages: Pages, site: httpx.Client) -> None:
    page = pages.console()
    page.evaluate(HOOK_HARNESS, ["posts", "posts", "status=published"])
    page.evaluate(HOOK_HARNESS, ["everything", None, ""])
    page.wait_for_function("() => window.hooks.posts.connected && window.hooks.everything.connected")
    assert page.evaluate("() => window.hooks.posts.urls") == ["/api/v1/realtime/posts?query=status%3Dpublished"]
    assert page.evaluate("() => window.hooks.everything.urls") == ["/api/v1/realtime"]

    create(site, "posts", title="Draft", status="draft")
    published = create(site, "posts", title="Hello", status="published")
    site.patch(f"/api/v1/collections/posts/records/{published['id']}/", json={"title": "Hello again"})
    site.delete(f"/api/v1/collections/posts/records/{published['id']}/")
    page.wait_for_function("() => window.hooks.posts.events.length >= 3")
    # What PostsList renders: `{event.type}: {event.data.title}` per event.
    rendered = page.evaluate("() => window.hooks.posts.events.map((event) => `${event.type}: ${event.data.title}`)")
    assert rendered == ["record.created: Hello", "record.updated: Hello again", "record.deleted: Hello again"]
    page.wait_for_function("() => window.hooks.everything.events.length >= 4")
    everything = page.evaluate("() => window.hooks.everything.events.map((event) => event.type)")
    assert everything == ["record.created", "record.created", "record.updated", "record.deleted"]

    page.evaluate("() => window.hooks.posts.cleanup()")  # unmount
    assert page.evaluate("() => window.hooks.posts.source.readyState") == 2  # CLOSED

    page.evaluate(HOOK_HARNESS, ["missing", "nosuch", ""])  # 404: onerror sets connected false
    page.wait_for_function("() => window.hooks.missing.source.readyState === EventSource.CLOSED")
    assert page.evaluate("() => window.hooks.missing.connected") is False
    assert len(pages.errors) == 1
    assert "status of 404" in pages.errors[0]
