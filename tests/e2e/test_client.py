"""The browser client (/static/fastcms/realtime.js) and its React hooks, in a real Chromium.

Test pages are served by Playwright (`/e2e/...` on the server's or a proxy's origin); the client,
the API and the streams by a real server. React and ReactDOM come from tests/e2e/vendor/
(fetch.sh), never from another host. Skipped, as the other browser tests, without Chromium.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth.models import User

from collections_app import services
from collections_app.models import Collection
from tests.conftest import LIVE_DEFAULTS, http_for, token_of
from tests.e2e.browsing import WAIT_MS
from tests.live import Server, SSEClient, free_port, wait_until
from tests.proxy import TCPProxy

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:
    sync_playwright = None

VENDOR = Path(__file__).parent / "vendor"
FIELDS = [
    {"name": "n", "type": "number"},
    {"name": "tag", "type": "select", "options": {"values": ["a", "b", "c"]}},
]
# Short retries, so reconnects in these tests take a fraction of a second.
FAST = {"FASTCMS_SSE_RETRY_MS": "200"}
# History in this process only: a restart (or a tiny history) loses it, as without Redis.
MEMORY = {
    "FASTCMS_EVENT_BACKEND": "realtime.backends.memory.MemoryBackend",
    "FASTCMS_PRESENCE_BACKEND": "presence.backends.memory.MemoryPresence",
}

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>client test</title>
<link rel="icon" href="data:,">
<script type="importmap">{"imports": {"react": "/e2e/react.js"}}</script>
</head><body><div id="root"></div>
<script type="module" src="/e2e/harness.js"></script>
</body></html>"""

# What the tests drive: clients, subscriptions and live lists kept in `window.t`.
HARNESS = """
import { createRealtime } from '/static/fastcms/realtime.js';
const t = { clients: {}, got: {}, refetches: {}, errors: {}, lives: {}, states: [] };
t.client = (name, options = {}) => {
  const rt = createRealtime({ ...options, onStateChange: (state) => t.states.push([name, state]) });
  t.clients[name] = rt;
  return rt;
};
t.subscribe = (client, key, collection, query) => {
  t.got[key] = [];
  t.refetches[key] = 0;
  return t.clients[client].subscribe(collection, query, (event, info) => {
    t.got[key].push([event.type, event.record_id, info.left]);
  }, { onRefetch: () => { t.refetches[key] += 1; }, onError: (error) => { t.errors[key] = error; } });
};
t.live = (client, key, collection, query) => {
  t.lives[key] = t.clients[client].live(collection, query);
  return t.lives[key].ready;
};
t.presence = (client, key) => {
  t.got[key] = [];
  t.lives[key] = t.clients[client].presence((users) => { t.got[key] = users.map((user) => user.user_id); },
    { onError: (error) => { t.errors[key] = error; } });
  return t.lives[key].ready;
};
window.t = t;
"""

# React from the UMD build the page loaded before: the import map's "react".
REACT_MODULE = "const React = window.React; export default React;"

REACT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>react test</title>
<link rel="icon" href="data:,">
<script src="/e2e/vendor/react.production.min.js"></script>
<script src="/e2e/vendor/react-dom.production.min.js"></script>
<script type="importmap">{"imports": {"react": "/e2e/react.js"}}</script>
</head><body><div id="root"></div>
<script type="module" src="/e2e/app.js"></script>
</body></html>"""

# The seed's PostsList, as written there (JSX spelled with createElement), seven times on one
# page, and a live list of the same query.
REACT_APP = """
import React from 'react';
import { useRealtime, useLiveQuery } from '/static/fastcms/react.js';
const h = React.createElement;

function PostsList() {
  const { events, connected } = useRealtime('posts', 'status=published');

  return (
    h('div', { className: 'posts-list' },
      h('div', { className: 'status' }, 'Status: ', connected ? 'Connected' : 'Disconnected'),
      h('ul', null, events.map((event, i) => h('li', { key: i }, event.type, ': ', event.data.title))))
  );
}

function Published() {
  const { records, connected } = useLiveQuery('posts', 'status=published');
  return h('ol', { id: 'published', 'data-connected': String(connected) },
    records.map((record) => h('li', { key: record.id }, record.title)));
}

function App() {
  return h('main', null, ...[0, 1, 2, 3, 4, 5, 6].map((i) => h(PostsList, { key: i })), h(Published));
}

ReactDOM.createRoot(document.getElementById('root')).render(h(React.StrictMode, null, h(App)));
"""


class ClientPage:
    """A page of the test origin, with the requests it made and the errors it reported."""

    def __init__(self, browser: Browser, origin: str, html: str = PAGE, app: str = "") -> None:
        self.context = browser.new_context(base_url=origin)
        self.context.route(f"{origin}/e2e/**", lambda route: self._serve(route, html, app))
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(WAIT_MS)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"{m.text} @ {m.location}"))
        self.page.goto("/e2e/page.html")
        if html == PAGE:
            self.page.wait_for_function("() => window.t !== undefined")

    @staticmethod
    def _serve(route: Any, html: str, app: str) -> None:
        path = urlsplit(route.request.url).path
        files = {
            "/e2e/page.html": (html, "text/html"),
            "/e2e/harness.js": (HARNESS, "text/javascript"),
            "/e2e/react.js": (REACT_MODULE, "text/javascript"),
            "/e2e/app.js": (app, "text/javascript"),
        }
        if path in files:
            body, content_type = files[path]
            route.fulfill(body=body, content_type=content_type)
        elif path.startswith("/e2e/vendor/") and (VENDOR / Path(path).name).is_file():
            route.fulfill(path=VENDOR / Path(path).name, content_type="text/javascript")
        else:
            route.fulfill(status=404, body="not a test file")

    def run(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def streams(self) -> list[str]:
        """The stream requests the page made (not the token requests)."""
        return [url for url in self.requests if urlsplit(url).path == "/api/v1/realtime"]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def pages(browser: Browser) -> Iterator[Callable[..., ClientPage]]:
    opened: list[ClientPage] = []

    def open_(origin: str, **kwargs: Any) -> ClientPage:
        page = ClientPage(browser, origin, **kwargs)
        opened.append(page)
        return page

    yield open_
    for page in opened:
        page.close()


@pytest.fixture
def fast(live_servers: Any, transactional_db: None) -> Server:
    return live_servers(**FAST)


@pytest.fixture
def make_collections(staff: User) -> Iterator[Callable[..., httpx.Client]]:
    """Create collections on a server; returns a staff API client for it (closed after the test)."""
    clients: list[httpx.Client] = []

    def make(server: Server, *names: str) -> httpx.Client:
        api = http_for(server, staff)
        clients.append(api)
        for name in names:
            response = api.post("/api/v1/collections/", json={"name": name, "fields": FIELDS, "list_rule": ""})
            assert response.status_code == 201, response.text
        return api

    yield make
    for api in clients:
        api.close()


def rest_list(api: httpx.Client, collection: str, query: str) -> list[dict[str, Any]]:
    """Every record of the REST list for `query`, all pages, ordered by `created`."""
    records: list[dict[str, Any]] = []
    page = 1
    while True:
        params = {"query": query, "page_size": "500", "ordering": "created", "page": str(page)}
        body = api.get(f"/api/v1/collections/{collection}/records/", params=params).json()
        records += body["results"]
        if not body["next"]:
            return records
        page += 1


def matches(record: dict[str, Any], query: str) -> bool:
    """The few live queries these tests use, evaluated in Python."""
    n, tag = record.get("n"), record.get("tag")
    return {
        "": True,
        "n>=50": n is not None and n >= 50,
        "tag=a": tag == "a",
        "n<50 && tag!=a": n is not None and n < 50 and tag != "a",
    }[query]


QUERIES = ["", "n>=50", "tag=a", "n<50 && tag!=a"]
# What Chromium reports of requests that a cut connection broke; nothing else may appear.
NETWORK_ERROR = "Failed to load resource: net::ERR_"


# --- one stream for many subscriptions -------------------------------------------------------


def test_twenty_subscriptions_share_one_stream_and_get_every_event_once(
    pages: Any, fast: Server, alice: User, make_collections: Any
) -> None:
    names = [f"c{i}" for i in range(5)]
    api = make_collections(fast, *names)
    page = pages(fast.url)
    subscriptions = [(f"{name}:{query}", name, query) for name in names for query in QUERIES]
    account = token_of(alice)
    page.run(
        """([subs, token]) => {
          t.client('main', { token });
          for (const [key, collection, query] of subs) t.subscribe('main', key, collection, query);
        }""",
        [subscriptions, account],
    )
    page.page.wait_for_function("() => t.clients.main.state === 'open'")
    rng = random.Random(20)
    created = []
    for index in range(40):
        name = names[index % 5]
        data = {"n": rng.randrange(100), "tag": rng.choice("abc")}
        created.append(api.post(f"/api/v1/collections/{name}/records/", json=data).json())
    expected = {
        key: [["record.created", r["id"], False] for r in created if r["collection"] == name and matches(r, query)]
        for key, name, query in subscriptions
    }
    assert wait_until(lambda: page.run("() => t.got") == expected, timeout=15), page.run("() => t.got")
    time.sleep(0.3)
    assert page.run("() => t.got") == expected  # nothing twice
    streams = page.streams()
    assert len(streams) == 1, streams  # twenty subscriptions, five collections: one connection
    assert all(account not in url for url in page.requests)  # the account token never in a URL
    assert "token=" in streams[0]
    assert page.errors == []


# --- network faults ------------------------------------------------------------------------------


def test_a_cut_connection_loses_no_event(pages: Any, fast: Server, make_collections: Any) -> None:
    api = make_collections(fast, "items", "others")
    with TCPProxy(fast.port) as proxy:
        page = pages(proxy.http_url)
        page.run(
            """() => {
              t.client('main');
              t.subscribe('main', 'items', 'items', 'n>=50');
              t.subscribe('main', 'others', 'others', '');
              t.subscribe('main', 'all', '*', 'tag=a');
            }"""
        )
        page.page.wait_for_function("() => t.clients.main.state === 'open'")
        rng = random.Random(7)
        created = []
        for index in range(60):
            if index == 20:
                proxy.cut()
                page.page.wait_for_function("() => t.clients.main.state === 'connecting'")
            if index == 40:
                proxy.restore()
            name = "items" if index % 2 else "others"
            data = {"n": rng.randrange(100), "tag": rng.choice("abc")}
            created.append(api.post(f"/api/v1/collections/{name}/records/", json=data).json())
            time.sleep(0.02)
        expected = {
            "items": [r["id"] for r in created if r["collection"] == "items" and r["n"] >= 50],
            "others": [r["id"] for r in created if r["collection"] == "others"],
            "all": [r["id"] for r in created if r["tag"] == "a"],
        }
        # Record events only: a "*" label also receives collection events, which this test does not count.
        received = (
            "() => Object.fromEntries(Object.entries(t.got).map(([k, v]) =>"
            " [k, v.filter((e) => e[0].startsWith('record.')).map((e) => e[1])]))"
        )
        assert wait_until(lambda: page.run(received) == expected, timeout=20), page.run("() => t.got")
        assert page.run("() => t.refetches") == {"items": 0, "others": 0, "all": 0}  # resumed, not refetched
        assert len(page.streams()) >= 2  # it did reconnect
    assert all(NETWORK_ERROR in error for error in page.errors), page.errors


def live_state(page: ClientPage, key: str) -> Any:
    return page.run("(key) => t.lives[key].records", key)


def test_live_lists_equal_rest_after_300_random_writes_some_while_disconnected(
    pages: Any, fast: Server, make_collections: Any
) -> None:
    api = make_collections(fast, "items")
    rng = random.Random(300)
    existing: list[str] = []
    for _ in range(30):
        existing.append(api.post("/api/v1/collections/items/records/", json={"n": rng.randrange(100)}).json()["id"])
    with TCPProxy(fast.port) as proxy:
        page = pages(proxy.http_url)
        page.run("() => { t.client('main'); }")
        for key, query in (("high", "n>=50"), ("a", "tag=a"), ("all", "")):
            page.run("([key, query]) => t.live('main', key, 'items', query)", [key, query])
        page.page.wait_for_function("() => t.clients.main.state === 'open'")
        for step in range(300):
            if step == 120:
                proxy.cut()
            if step == 180:
                proxy.restore()
            action = rng.random()
            if action < 0.4 or len(existing) < 5:
                data = {"n": rng.randrange(100), "tag": rng.choice("abc")}
                existing.append(api.post("/api/v1/collections/items/records/", json=data).json()["id"])
            elif action < 0.8:
                change = rng.choice([{"n": rng.randrange(100)}, {"tag": rng.choice("abc")}, {"tag": None}])
                api.patch(f"/api/v1/collections/items/records/{rng.choice(existing)}/", json=change)
            else:
                victim = existing.pop(rng.randrange(len(existing)))
                api.delete(f"/api/v1/collections/items/records/{victim}/")
        for key, query in (("high", "n>=50"), ("a", "tag=a"), ("all", "")):
            expected = rest_list(api, "items", query)
            assert wait_until(lambda key=key, expected=expected: live_state(page, key) == expected, timeout=20), key
        assert len(page.streams()) >= 2
    assert all(NETWORK_ERROR in error for error in page.errors), page.errors


def test_recovered_false_makes_live_refetch(
    pages: Any, live_servers: Any, transactional_db: None, make_collections: Any
) -> None:
    server = live_servers(**FAST, **MEMORY, FASTCMS_HISTORY_SIZE="5")
    api = make_collections(server, "items")
    with TCPProxy(server.port) as proxy:
        page = pages(proxy.http_url)
        page.run("() => { t.client('main'); t.subscribe('main', 'plain', 'items', ''); }")
        page.run("() => t.live('main', 'list', 'items', 'n>=50')")
        page.page.wait_for_function("() => t.clients.main.state === 'open'")
        api.post("/api/v1/collections/items/records/", json={"n": 60})
        page.page.wait_for_function("() => t.got.plain.length === 1")
        loads = sum("/records/" in url for url in page.requests)
        proxy.cut()
        for n in range(10):  # more than the history keeps
            api.post("/api/v1/collections/items/records/", json={"n": 40 + n * 3})
        proxy.restore()
        page.page.wait_for_function("() => t.refetches.plain === 1")
        expected = rest_list(api, "items", "n>=50")
        assert wait_until(lambda: live_state(page, "list") == expected, timeout=15)
        assert sum("/records/" in url for url in page.requests) > loads  # the list was read again
        api.post("/api/v1/collections/items/records/", json={"n": 99})
        expected = rest_list(api, "items", "n>=50")
        assert wait_until(lambda: live_state(page, "list") == expected, timeout=15)


def test_a_server_restart_without_history_makes_live_refetch(
    pages: Any, transactional_db: None, staff: User, make_collections: Any
) -> None:
    port = free_port()
    env = {**LIVE_DEFAULTS, **FAST, **MEMORY}
    first = Server(env, port=port).start()
    try:
        api = make_collections(first, "items")
        for n in (10, 60, 70):
            api.post("/api/v1/collections/items/records/", json={"n": n})
        page = pages(first.url)
        page.run("() => { t.client('main'); return t.live('main', 'list', 'items', 'n>=50'); }")
        page.page.wait_for_function("() => t.clients.main.state === 'open'")
        assert [r["n"] for r in live_state(page, "list")] == [60, 70]
    finally:
        first.stop()
    items = Collection.objects.get(name="items")
    services.record_create(collection=items, data={"n": 80})  # while no server runs
    second = Server(env, port=port).start()
    try:
        page.page.wait_for_function("() => t.clients.main.state === 'open'", timeout=30_000)
        with http_for(second, staff) as api:
            expected = rest_list(api, "items", "n>=50")
            assert [r["n"] for r in expected] == [60, 70, 80]
            assert wait_until(lambda: live_state(page, "list") == expected, timeout=15)
            api.post("/api/v1/collections/items/records/", json={"n": 90})
            expected = rest_list(api, "items", "n>=50")
            assert wait_until(lambda: live_state(page, "list") == expected, timeout=15)
    finally:
        second.stop()


# --- React ------------------------------------------------------------------------------------------


def test_react_hooks_render_the_seed_posts_list_on_one_stream(pages: Any, fast: Server, make_collections: Any) -> None:
    api = make_collections(fast)
    definition = {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": True},
            {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
        ],
        "list_rule": "",
        "view_rule": "",
    }
    assert api.post("/api/v1/collections/", json=definition).status_code == 201
    earlier = api.post("/api/v1/collections/posts/records/", json={"title": "Earlier", "status": "published"}).json()
    page = pages(fast.url, html=REACT_PAGE, app=REACT_APP)
    lists = page.page.locator(".posts-list")
    page.page.wait_for_function("() => document.querySelectorAll('.posts-list').length === 7")
    for index in range(7):
        page.page.locator(".status").nth(index).wait_for(state="attached")
    page.page.wait_for_function(
        "() => [...document.querySelectorAll('.status')].every((e) => e.textContent === 'Status: Connected')"
    )
    page.page.wait_for_function("() => document.querySelector('#published').textContent === 'Earlier'")

    api.post("/api/v1/collections/posts/records/", json={"title": "Draft", "status": "draft"})
    post = api.post("/api/v1/collections/posts/records/", json={"title": "Hello", "status": "published"}).json()
    api.patch(f"/api/v1/collections/posts/records/{post['id']}/", json={"title": "Hello again"})
    api.patch(f"/api/v1/collections/posts/records/{earlier['id']}/", json={"status": "draft"})  # leaves
    api.delete(f"/api/v1/collections/posts/records/{post['id']}/")

    expected = [
        "record.created: Hello",
        "record.updated: Hello again",
        "record.updated: Earlier",  # the update that took it out of the query
        "record.deleted: Hello again",
    ]
    script = (
        "(i) => [...document.querySelectorAll('.posts-list')[i].querySelectorAll('li')].map((li) => li.textContent)"
    )
    for index in range(7):
        assert wait_until(lambda index=index: page.run(script, index) == expected, timeout=10), page.run(script, index)
    assert lists.count() == 7
    assert wait_until(lambda: page.run("() => document.querySelector('#published').children.length") == 0)
    api.post("/api/v1/collections/posts/records/", json={"title": "Last", "status": "published"})
    page.page.wait_for_function("() => document.querySelector('#published').textContent === 'Last'")
    assert len(page.streams()) == 1, page.streams()  # seven hooks and a live list, one connection
    assert all(urlsplit(url).netloc == urlsplit(fast.url).netloc for url in page.requests)
    assert page.errors == []


def test_records_created_before_the_list_loads_are_not_lost(
    pages: Any, fast: Server, staff: User, make_collections: Any
) -> None:
    """A write racing the first load lands once: in the list read, or after it from the stream."""
    api = make_collections(fast, "items")
    stop = threading.Event()
    headers = {"Authorization": f"Token {token_of(staff)}"}

    def writer() -> None:
        with httpx.Client(base_url=fast.url, headers=headers, timeout=30) as own:
            while not stop.is_set():
                own.post("/api/v1/collections/items/records/", json={"n": 1})

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        page = pages(fast.url)
        page.run("() => { t.client('main'); return t.live('main', 'list', 'items', ''); }")
        page.page.wait_for_function("() => t.clients.main.state === 'open'")
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)
    expected = rest_list(api, "items", "")
    assert wait_until(lambda: live_state(page, "list") == expected, timeout=15)
    assert len({r["id"] for r in expected}) == len(expected) > 0
    assert json.dumps(live_state(page, "list")) == json.dumps(expected)


def test_subscriptions_added_while_events_flow_get_each_event_once(
    pages: Any, fast: Server, staff: User, make_collections: Any
) -> None:
    """A list added mid-stream resumes the shared stream from its snapshot: the replay it needs
    is not delivered again to the subscriptions that already had it."""
    api = make_collections(fast, "items")
    page = pages(fast.url)
    page.run("() => { t.client('main'); t.subscribe('main', 'first', 'items', ''); }")
    page.page.wait_for_function("() => t.clients.main.state === 'open'")
    created: list[str] = []
    stop = threading.Event()
    headers = {"Authorization": f"Token {token_of(staff)}"}

    def writer() -> None:
        with httpx.Client(base_url=fast.url, headers=headers, timeout=30) as own:
            while not stop.is_set():
                created.append(own.post("/api/v1/collections/items/records/", json={"n": 1}).json()["id"])

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for index in range(3):
            time.sleep(0.3)
            page.run("(key) => t.live('main', key, 'items', '')", f"list{index}")
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(10)
    received = "() => t.got.first.map((event) => event[1])"
    assert wait_until(lambda: page.run(received) == created, timeout=15), (len(page.run(received)), len(created))
    expected = rest_list(api, "items", "")
    for index in range(3):
        assert wait_until(lambda index=index: live_state(page, f"list{index}") == expected, timeout=15)
    assert page.run(received) == created  # still once each
    assert page.errors == []


# --- presence ----------------------------------------------------------------------------------


def test_the_presence_list_follows_joins_and_leaves_and_a_refusal_ends_it(pages: Any, fast: Server) -> None:
    page = pages(fast.url)
    page.run("() => { t.client('watch'); return t.presence('watch', 'here'); }")
    visitor = f"visitor-{random.randrange(10**9)}"
    with SSEClient(f"{fast.url}/api/v1/realtime?user_id={visitor}") as stream:
        stream.next()
        page.page.wait_for_function("(id) => t.got.here.includes(id)", arg=visitor)
    page.page.wait_for_function("(id) => !t.got.here.includes(id)", arg=visitor)  # after the grace period
    assert page.run("() => t.lives.here.error") is None

    page.run("() => { t.client('bad', { token: 'not-a-token' }); return t.presence('bad', 'refused'); }")
    assert page.run("() => t.errors.refused.status") == 401
    assert page.run("() => [t.lives.refused.closed, t.lives.refused.error.code]") == [True, "authentication_failed"]
    time.sleep(1)  # a refusal is final: not asked again
    asked = [url for url in page.requests if urlsplit(url).path == "/api/v1/presence"]
    assert len(asked) == 2, asked
    assert all("401" in error for error in page.errors), page.errors
