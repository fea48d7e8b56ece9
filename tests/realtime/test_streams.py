"""SSE streams against a real uvicorn server: format, events, live queries, rules, errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import User

from collections_app.management.commands.load_demo import DEMO
from tests.conftest import http_for, settle_events
from tests.live import Server, SSEClient
from tests.realtime.conftest import PRODUCT_FIELDS, records_of, stream_of

ENVELOPE_KEYS = ["id", "type", "collection", "record_id", "data", "timestamp"]


def test_stream_opens_with_headers_retry_and_connected(
    live: Server, open_stream: Any, make_live_collection: Any
) -> None:
    products = make_live_collection("products", PRODUCT_FIELDS, list_rule="")
    stream = open_stream(live, stream_of(products), query="price>100")
    assert stream.status == 200
    assert stream.response_headers["content-type"] == "text/event-stream"
    assert stream.response_headers["cache-control"] == "no-cache"
    assert stream.response_headers["x-accel-buffering"] == "no"
    connected = stream.next()
    assert stream.retry == 3000
    assert connected.event == "connected"
    assert connected.id is None  # no id: line, so the browser keeps its last event id
    envelope = connected.json
    assert list(envelope) == ENVELOPE_KEYS
    assert envelope["id"] is None
    assert envelope["type"] == "connected"
    assert envelope["record_id"] is None
    data = envelope["data"]
    assert set(data) == {"client_id", "collection", "query", "user_id", "last_event_id", "recovered", "cursor"}
    assert data["collection"] == products["name"]
    assert data["query"] == "price>100"
    assert data["user_id"] is None
    assert data["last_event_id"] is None
    assert data["recovered"] is None
    assert isinstance(data["cursor"], str)
    assert envelope["timestamp"].endswith("Z")


def test_record_events_carry_the_seed_payload(
    live: Server, open_stream: Any, staff_http: Any, make_live_collection: Any
) -> None:
    posts = make_live_collection(
        "posts", [{"name": "title", "type": "text"}, {"name": "content", "type": "text"}], list_rule=""
    )
    stream = open_stream(live, "/api/v1/realtime")
    stream.next()
    created = staff_http.post(records_of(posts), json={"title": "New Post", "content": "Post content..."}).json()
    event = stream.next_of("record.created")
    body = event.json
    assert list(body) == ENVELOPE_KEYS
    assert event.id == body["id"]
    assert body["id"]
    assert body["type"] == "record.created"
    assert body["collection"] == posts["name"]
    assert body["record_id"] == created["id"]
    assert body["data"] == created  # the record as REST shows it
    assert body["timestamp"].endswith("Z")
    assert len(body["timestamp"]) == 27

    staff_http.patch(f"{records_of(posts)}{created['id']}/", json={"title": "Edited"})
    updated = stream.next_of("record.updated").json
    assert updated["data"]["title"] == "Edited"
    assert updated["record_id"] == created["id"]
    assert updated["id"] > body["id"] or len(updated["id"]) > len(body["id"])

    staff_http.delete(f"{records_of(posts)}{created['id']}/")
    deleted = stream.next_of("record.deleted").json
    assert deleted["data"]["title"] == "Edited"  # the record as it was
    assert deleted["data"]["id"] == created["id"]


def test_collection_events_and_deletion_ends_one_collection_streams(
    live: Server, open_stream: Any, staff_http: Any, make_live_collection: Any
) -> None:
    everything = open_stream(live, "/api/v1/realtime", user=None)
    everything.next()
    collection = make_live_collection("gadgets", [{"name": "name", "type": "text"}], list_rule="")
    created = everything.next_of("collection.created").json
    assert created["collection"] == collection["name"]
    assert created["record_id"] is None
    assert created["data"]["id"] == collection["id"]
    assert created["data"]["fields"][0]["name"] == "name"

    only = open_stream(live, stream_of(collection))
    only.next()
    staff_http.patch(
        f"/api/v1/collections/{collection['name']}/",
        json={"fields": [{"name": "name", "type": "text"}, {"name": "size", "type": "number"}]},
    )
    assert only.next_of("collection.updated").json["data"]["fields"][1]["name"] == "size"
    assert everything.next_of("collection.updated").json["collection"] == collection["name"]

    for index in range(3):
        staff_http.post(records_of(collection), json={"name": f"g{index}"})
    for _ in range(3):
        only.next_of("record.created")
    staff_http.delete(f"/api/v1/collections/{collection['name']}/")
    assert only.next().event == "collection.deleted"  # one event, not one per record
    assert only.ended.wait(5)  # the server ends that stream cleanly
    assert everything.next_of("collection.deleted", "record.deleted").event == "collection.deleted"


def test_collection_events_respect_the_list_rule(
    live: Server, open_stream: Any, make_live_collection: Any, staff: User
) -> None:
    anonymous = open_stream(live, "/api/v1/realtime")
    as_staff = open_stream(live, "/api/v1/realtime", user=staff)
    anonymous.next()
    as_staff.next()
    internal = make_live_collection("internal", [{"name": "x", "type": "text"}])  # list_rule null: staff only
    assert as_staff.next_of("collection.created").json["collection"] == internal["name"]
    public = make_live_collection("public", [{"name": "x", "type": "text"}], list_rule="")
    assert anonymous.next_of("collection.created").json["collection"] == public["name"]  # never "internal"


@pytest.mark.parametrize(
    ("collection", "query", "demo", "matching", "other"),
    [
        (None, "status=published", "posts", {"title": "a", "status": "published"}, {"title": "b", "status": "draft"}),
        ("products", "price>100", "products", {"name": "a", "price": 150}, {"name": "b", "price": 50}),
        ("users", "active=true", "users", {"name": "a", "active": True}, {"name": "b", "active": False}),
        ("posts", None, "posts", {"title": "a"}, None),
        ("posts", "author=john", "posts", {"title": "a", "author": "john"}, {"title": "b", "author": "jane"}),
    ],
)
def test_seed_examples(
    live: Server,
    open_stream: Any,
    staff_http: Any,
    make_live_collection: Any,
    collection: str | None,
    query: str | None,
    demo: str,
    matching: dict[str, Any],
    other: dict[str, Any] | None,
) -> None:
    """The seed document's streams, on the demo collections' schemas."""
    spec = next(spec for spec in DEMO if spec["name"] == demo)
    rules = {key: value for key, value in spec.items() if key.endswith("_rule")}
    made = {demo: make_live_collection(demo, spec["fields"], **rules)}
    path = "/api/v1/realtime" if collection is None else stream_of(made[collection])
    stream = open_stream(live, path, **({"query": query} if query else {}))
    assert stream.next().event == "connected"
    if other is not None:
        staff_http.post(records_of(made[demo]), json=other)
    created = staff_http.post(records_of(made[demo]), json=matching).json()
    event = stream.next_of("record.created")
    assert event.json["record_id"] == created["id"]
    assert not [e for e in stream.drain(0.3) if e.event == "record.created"]


def test_live_query_delivers_leaving_updates_and_ignores_others(
    live: Server, open_stream: Any, staff_http: Any, make_live_collection: Any
) -> None:
    products = make_live_collection("products", PRODUCT_FIELDS, list_rule="")
    stream = open_stream(live, stream_of(products), query="price>100")
    stream.next()
    url = records_of(products)
    cheap = staff_http.post(url, json={"name": "cheap", "price": 5}).json()
    pricey = staff_http.post(url, json={"name": "pricey", "price": 500}).json()
    assert stream.next_of("record.created").json["record_id"] == pricey["id"]
    staff_http.patch(f"{url}{pricey['id']}/", json={"price": 50})  # leaves the query
    leaving = stream.next_of("record.updated").json
    assert leaving["record_id"] == pricey["id"]
    assert leaving["data"]["price"] == 50
    staff_http.patch(f"{url}{cheap['id']}/", json={"price": 6})  # never matched
    staff_http.patch(f"{url}{cheap['id']}/", json={"price": 600})  # enters
    entering = stream.next_of("record.updated").json
    assert entering["record_id"] == cheap["id"]
    assert entering["data"]["price"] == 600
    staff_http.delete(f"{url}{pricey['id']}/")  # not matching when deleted: not delivered
    staff_http.delete(f"{url}{cheap['id']}/")
    assert stream.next_of("record.deleted").json["record_id"] == cheap["id"]
    assert [e.event for e in stream.drain(0.3)] == []


def test_access_rules_per_subscriber(
    live: Server, open_stream: Any, make_live_collection: Any, alice: User, bob: User, staff: User
) -> None:
    notes = make_live_collection(
        "notes",
        PRODUCT_FIELDS,
        list_rule="owner = @request.auth.id",
        create_rule="owner = @request.auth.id",
        update_rule="owner = @request.auth.id",
    )
    as_alice = open_stream(live, stream_of(notes), user=alice)
    as_bob = open_stream(live, "/api/v1/realtime", user=bob)
    as_staff = open_stream(live, stream_of(notes), user=staff)
    anonymous = open_stream(live, "/api/v1/realtime")
    for stream in (as_alice, as_bob, as_staff, anonymous):
        stream.next()
    with http_for(live, alice) as alice_http:
        record = alice_http.post(records_of(notes), json={"name": "mine", "owner": str(alice.pk), "secret": "s"}).json()
        seen = as_alice.next_of("record.created").json["data"]
        assert seen["name"] == "mine"
        assert "secret" not in seen
        assert as_staff.next_of("record.created").json["data"]["secret"] == "s"
        # Handing the record to Bob: Alice may no longer see it, so she gets only its id.
        with http_for(live, staff) as staff_http:
            staff_http.patch(f"{records_of(notes)}{record['id']}/", json={"owner": str(bob.pk)})
        assert as_alice.next_of("record.updated").json["data"] == {"id": record["id"]}
        handed = as_bob.next_of("record.updated").json["data"]
        assert handed["owner"] == str(bob.pk)
        assert "secret" not in handed
    assert [e.event for e in anonymous.drain(0.3) if e.event.startswith("record.")] == []
    assert [e.event for e in as_bob.drain(0.1) if e.event == "record.created"] == []  # never saw Alice's


def test_rolled_back_writes_publish_nothing(
    live: Server, open_stream: Any, make_live_collection: Any, alice: User, bob: User
) -> None:
    notes = make_live_collection("notes", PRODUCT_FIELDS, list_rule="", create_rule="owner = @request.auth.id")
    stream = open_stream(live, stream_of(notes))
    stream.next()
    with http_for(live, alice) as alice_http:
        # Saved, then refused by the create rule: the transaction rolls back.
        assert alice_http.post(records_of(notes), json={"name": "forged", "owner": str(bob.pk)}).status_code == 403
        assert alice_http.post(records_of(notes), json={"name": "fine", "owner": str(alice.pk)}).status_code == 201
    assert stream.next_of("record.created").json["data"]["name"] == "fine"


def test_errors_before_the_stream(live: Server, open_stream: Any, make_live_collection: Any, alice: User) -> None:
    products = stream_of(make_live_collection("products", PRODUCT_FIELDS, list_rule=""))
    internal = stream_of(make_live_collection("internal", PRODUCT_FIELDS))
    cases = [
        (dict(path="/api/v1/realtime", token="nope"), 401, "authentication_failed"),
        (dict(path="/api/v1/realtime", headers={"Authorization": "Token nope"}), 401, "authentication_failed"),
        (dict(path="/api/v1/realtime/nothing"), 404, "not_found"),
        (dict(path=products, query="price>abc"), 400, "invalid_query"),
        (dict(path=products, query="secret=x"), 400, "invalid_query"),
        (dict(path="/api/v1/realtime", query="(price>1"), 400, "invalid_query"),
        (dict(path=internal), 401, "not_authenticated"),
        (dict(path=internal, user=alice), 403, "permission_denied"),
        (dict(path="/api/v1/realtime", user=alice, user_id="someone-else"), 403, "presence_forbidden"),
        (dict(path="/api/v1/realtime", user_name="x" * 101, user_id="u"), 400, "invalid_parameter"),
    ]
    for kwargs, status, code in cases:
        stream = open_stream(live, **kwargs)
        assert stream.status == status, (kwargs, stream.body)
        body = stream.json_error()
        assert body["code"] == code, kwargs
        assert body["detail"], kwargs
    bad = open_stream(live, products, query="price>abc").json_error()
    assert bad["position"] == 6


def test_all_collections_stream_treats_foreign_comparisons_as_false(
    live: Server, open_stream: Any, staff_http: Any, make_live_collection: Any
) -> None:
    products = make_live_collection("products", PRODUCT_FIELDS, list_rule="")
    posts = make_live_collection(
        "posts", [{"name": "title", "type": "text"}, {"name": "price", "type": "bool"}], list_rule=""
    )
    plain = make_live_collection("plain", [{"name": "title", "type": "text"}], list_rule="")
    stream = open_stream(live, "/api/v1/realtime", query="price>100 || title=x")
    stream.next()
    staff_http.post(records_of(posts), json={"title": "t", "price": True})  # bool: `> 100` cannot apply
    staff_http.post(records_of(plain), json={"title": "y"})  # no price field
    product = staff_http.post(records_of(products), json={"name": "n", "price": 101}).json()
    assert stream.next_of("record.created").json["record_id"] == product["id"]


def test_last_event_id_header_on_record_reads(live: Server, staff_http: Any, make_live_collection: Any) -> None:
    url = records_of(make_live_collection("products", PRODUCT_FIELDS, list_rule="", view_rule=""))
    before = staff_http.get(url)
    record = staff_http.post(url, json={"name": "n"}).json()
    settle_events(live)  # with Redis, the event reaches the log a moment after the write's response
    after = staff_http.get(url)
    detail = staff_http.get(f"{url}{record['id']}/")

    def key(response: Any) -> tuple[int, ...]:
        return tuple(int(part) for part in response.headers["x-last-event-id"].split("-"))

    assert key(after) > key(before)  # the record's event came in between
    assert key(detail) >= key(after)


def test_snapshot_then_subscribe_misses_nothing(
    live: Server, open_stream: Any, staff_http: Any, make_live_collection: Any
) -> None:
    products = make_live_collection("products", PRODUCT_FIELDS, list_rule="")
    url = records_of(products)
    staff_http.post(url, json={"name": "before"})
    snapshot = staff_http.get(url)
    marker = snapshot.headers["x-last-event-id"]
    staff_http.post(url, json={"name": "between"})  # after the snapshot, before the stream
    stream = open_stream(live, stream_of(products), last_event_id=marker)
    connected = stream.next().json["data"]
    assert connected["last_event_id"] == marker
    assert connected["recovered"] is True
    # No gap; the snapshot's own write may come again (its event can reach the log after the read).
    names = [stream.next_of("record.created").json["data"]["name"]]
    while names[-1] != "between":
        names.append(stream.next_of("record.created").json["data"]["name"])
    assert set(names) <= {"before", "between"}
    staff_http.post(url, json={"name": "after"})
    assert stream.next_of("record.created").json["data"]["name"] == "after"


def test_session_cookie_authenticates_streams(live: Server, open_stream: Any, make_live_collection: Any) -> None:
    import re

    import httpx

    internal = stream_of(make_live_collection("internal", PRODUCT_FIELDS))  # staff only
    root = User.objects.create_superuser("root", "root@example.com", "root-pass")
    with httpx.Client(base_url=live.url) as browser:
        login = browser.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post("/admin/login/", data={"username": "root", "password": "root-pass", "csrfmiddlewaretoken": csrf})
        session = browser.cookies["sessionid"]
    stream = open_stream(live, internal, headers={"Cookie": f"sessionid={session}"})
    assert stream.status == 200
    assert stream.next().json["data"]["user_id"] == str(root.pk)
    assert open_stream(live, internal, headers={"Cookie": "sessionid=forged"}).status == 401


def test_streams_follow_collection_changes_without_reading_the_database(
    live_servers: Any, transactional_db: None, staff: User
) -> None:
    """Streams find collections in memory; collection events keep that registry current."""
    server = live_servers(FASTCMS_COLLECTIONS_REFRESH="60")
    fields = [{"name": "name", "type": "text"}]
    with http_for(server, staff) as api:
        for generation in range(2):  # the second "gadgets" is a new collection under the old name
            api.post("/api/v1/collections/", json={"name": "gadgets", "fields": fields, "list_rule": ""})
            time.sleep(0.2)
            stream = SSEClient(f"{server.url}/api/v1/realtime/gadgets")
            assert stream.next().event == "connected"
            api.post("/api/v1/collections/gadgets/records/", json={"name": f"g{generation}"})
            assert stream.next_of("record.created").json["data"]["name"] == f"g{generation}"
            api.patch("/api/v1/collections/gadgets/", json={"list_rule": None})  # staff only now
            time.sleep(0.2)
            refused = SSEClient(f"{server.url}/api/v1/realtime/gadgets")
            assert refused.status == 401
            api.delete("/api/v1/collections/gadgets/")
            time.sleep(0.2)
            gone = SSEClient(f"{server.url}/api/v1/realtime/gadgets")
            assert gone.status == 404
            stream.close()
