"""Multiplexed streams (`?subscribe=`): checks before the stream, one event per write with its
labels, rules per label, resume, and the `cursor` of `connected`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from collections_app.query import Auth, parse
from realtime.backends.memory import MemoryBackend
from realtime.bus import EventBus
from realtime.events import CollectionInfo, Event
from realtime.subscribers import Subscriber
from realtime.subscriptions import LabelPlan, SubscribeError, Subscription, parse_subscribe
from tests.conftest import http_for, settle_events, token_of
from tests.live import Server
from tests.realtime.conftest import PRODUCT_FIELDS

ENVELOPE_KEYS = ["id", "type", "collection", "record_id", "data", "timestamp"]
MULTIPLEXED_KEYS = [*ENVELOPE_KEYS, "subscriptions", "left"]
POSTS = "/api/v1/collections/posts/records/"
PRODUCTS = "/api/v1/collections/products/records/"
POST_FIELDS = [
    {"name": "title", "type": "text"},
    {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
    {"name": "secret", "type": "text", "hidden": True},
]


def subscribe(**labels: tuple[str, str]) -> str:
    return json.dumps({label: {"collection": c, "query": q} for label, (c, q) in labels.items()})


# --- the parameter, without a server -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[" * 5000 + "]" * 5000, "not valid JSON"),
        ('["posts"]', "must be a JSON object"),
        ("{}", "names no subscription"),
        (json.dumps({f"l{i}": {"collection": "*"} for i in range(21)}), "at most 20 subscriptions"),
        (json.dumps({"bad label": {"collection": "*"}}), "label 'bad label' must be"),
        (json.dumps({"x" * 33: {"collection": "*"}}), "must be 1 to 32"),
        (json.dumps({"": {"collection": "*"}}), "must be 1 to 32"),
        (json.dumps({"a": "posts"}), "subscribe[a]: must be an object"),
        (json.dumps({"a": {"collection": "posts", "filter": "x"}}), "subscribe[a]: unknown key 'filter'"),
        (json.dumps({"a": {"query": "x=1"}}), 'subscribe[a]: "collection" must be'),
        (json.dumps({"a": {"collection": 7}}), 'subscribe[a]: "collection" must be'),
        (json.dumps({"a": {"collection": "posts", "query": 7}}), 'subscribe[a]: "query" must be a string'),
        ('{"a": {"collection": "posts", "query": "title=\\ud800"}}', "subscribe[a]: text must be valid Unicode"),
        ("x" * 20000, "longer than"),
    ],
)
def test_malformed_subscribe_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(SubscribeError) as caught:
        parse_subscribe(text)
    assert message in caught.value.detail
    assert caught.value.status == 400


def test_subscribe_keeps_the_labels_in_order_and_defaults_the_query() -> None:
    text = json.dumps(
        {
            "b": {"collection": "posts", "query": "status=draft"},
            "a": {"collection": "*"},
            "c-1_": {"collection": "x", "query": None},
        }
    )
    assert parse_subscribe(text) == [("b", "posts", "status=draft"), ("a", "*", ""), ("c-1_", "x", "")]


# --- the bus, in this process ----------------------------------------------------------------------


def shop_info() -> CollectionInfo:
    from collections_app.schema import load_fields

    specs = tuple(load_fields(PRODUCT_FIELDS))
    return CollectionInfo(
        id="s" * 15,
        name="shop",
        version="2026-01-01T00:00:00.000000Z",
        fields=specs,
        created="2026-01-01T00:00:00.000000Z",
        field_map={s.name: s for s in specs},
        list_rule="",
        view_rule="",
        create_rule=None,
        update_rule=None,
        delete_rule=None,
    )


def multiplexed(info: CollectionInfo, key: str, **queries: str | None) -> Subscriber:
    stream = Subscriber(client_id=key, auth=Auth(), staff=False, query=None, collection=None, client_key=key)
    stream.subscriptions = tuple(
        Subscription(
            stream=stream,
            plan=LabelPlan(label=label, collection=None if q is None else info, query=parse(q) if q else None),
        )
        for label, q in queries.items()
    )
    return stream


def test_an_event_reaches_a_multiplexed_stream_once_and_frames_are_shared_per_label_set() -> None:
    info = shop_info()

    async def scenario() -> tuple[list[Subscriber], Subscriber]:
        bus = EventBus(MemoryBackend(size=100, seconds=60))
        await bus.start()
        try:
            streams = [
                multiplexed(info, f"m{i}", cheap="price < 10", lamps="name = lamp", every=None, pricey="price > 100")
                for i in range(2)
            ]
            plain = Subscriber(client_id="p", auth=Auth(), staff=False, query=None, collection=info, client_key="p")
            for sub in (*streams, plain):
                await bus.subscribe(sub, None)
            data = {"id": "r" * 15, "collection": "shop", "created": "x", "updated": "x", "name": "lamp", "price": 5}
            bus.publish(Event(type="record.created", collection="shop", record_id=data["id"], data=data, schema=info))
            await asyncio.sleep(0.05)
            return streams, plain
        finally:
            await bus.stop()

    streams, plain = asyncio.run(scenario())
    for stream in streams:
        assert len(stream.queue) == 1  # one frame, however many labels matched
    assert streams[0].queue[0] is streams[1].queue[0]  # serialised once per (form, labels)
    envelope = json.loads(streams[0].queue[0].decode().split("data: ", 1)[1])
    assert list(envelope) == MULTIPLEXED_KEYS
    assert envelope["subscriptions"] == ["cheap", "every", "lamps"]
    assert envelope["left"] == []
    assert list(json.loads(plain.queue[0].decode().split("data: ", 1)[1])) == ENVELOPE_KEYS


# --- checks before the stream, against a real server ------------------------------------------------


@pytest.fixture
def site(make_named_collection: Any) -> None:
    make_named_collection("posts", POST_FIELDS, list_rule="", view_rule="")
    make_named_collection("products", PRODUCT_FIELDS, list_rule="", view_rule="")
    make_named_collection("notes", PRODUCT_FIELDS, list_rule="owner = @request.auth.id")
    make_named_collection("internal", PRODUCT_FIELDS)  # every rule null: staff only


@pytest.mark.parametrize(
    ("params", "user", "status", "code", "label", "detail"),
    [
        ({"subscribe": "{not json"}, None, 400, "invalid_parameter", None, "subscribe: not valid JSON"),
        (
            {"subscribe": json.dumps({f"l{i}": {"collection": "posts"} for i in range(21)})},
            None,
            400,
            "invalid_parameter",
            None,
            "at most 20",
        ),
        ({"subscribe": subscribe(**{"a.b": ("posts", "")})}, None, 400, "invalid_parameter", None, "label 'a.b'"),
        (
            {"subscribe": subscribe(ok=("posts", ""), gone=("nosuch", ""))},
            None,
            404,
            "not_found",
            "gone",
            "subscribe[gone]: Collection 'nosuch' not found.",
        ),
        ({"subscribe": subscribe(p=("products", "price>abc"))}, None, 400, "invalid_query", "p", "subscribe[p]:"),
        ({"subscribe": subscribe(p=("products", "nosuch=1"))}, None, 400, "invalid_query", "p", "subscribe[p]:"),
        ({"subscribe": subscribe(any=("*", "title = ("))}, None, 400, "invalid_query", "any", "subscribe[any]:"),
        ({"subscribe": subscribe(p=("posts", ""), i=("internal", ""))}, None, 401, "not_authenticated", "i", None),
        ({"subscribe": subscribe(p=("posts", ""), i=("internal", ""))}, "alice", 403, "permission_denied", "i", None),
        ({"subscribe": subscribe(p=("posts", "")), "query": "title=x"}, None, 400, "invalid_parameter", None, None),
    ],
    ids=[
        "bad-json",
        "too-many",
        "bad-label",
        "unknown-collection",
        "bad-value",
        "unknown-field",
        "bad-syntax-on-star",
        "anonymous-staff-only",
        "forbidden",
        "with-query",
    ],
)
def test_every_label_is_checked_before_the_stream(
    live: Server,
    site: None,
    alice: User,
    params: dict[str, str],
    user: str | None,
    status: int,
    code: str,
    label: str | None,
    detail: str | None,
) -> None:
    if user == "alice":
        params = {**params, "token": token_of(alice)}
    response = httpx.get(f"{live.url}/api/v1/realtime", params=params, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["code"] == code
    assert body.get("label") == label
    if label is not None:
        assert body["detail"].startswith(f"subscribe[{label}]: ")
    if detail is not None:
        assert detail in body["detail"]


def test_subscribe_belongs_to_the_all_collections_endpoint(live: Server, site: None) -> None:
    response = httpx.get(
        f"{live.url}/api/v1/realtime/posts", params={"subscribe": subscribe(p=("posts", ""))}, timeout=10
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"


# --- delivery ------------------------------------------------------------------------------------


def test_each_write_arrives_once_with_the_labels_it_matched(
    live: Server, site: None, open_stream: Any, staff_http: Any
) -> None:
    labels = subscribe(
        pub=("posts", "status=published"),
        posts=("posts", ""),
        cheap=("products", "price<100"),
        cheap2=("products", "price < 100"),
        every=("*", ""),
    )
    stream = open_stream(live, "/api/v1/realtime", subscribe=labels)
    plain = open_stream(live, "/api/v1/realtime")
    connected = stream.next().json
    assert connected["subscriptions"] == ["pub", "posts", "cheap", "cheap2", "every"]
    assert connected["data"]["collection"] is None
    assert plain.next().event == "connected"

    post = staff_http.post(POSTS, json={"title": "Hello", "status": "published"}).json()
    staff_http.post(POSTS, json={"title": "Draft", "status": "draft"})
    staff_http.patch(f"{POSTS}{post['id']}/", json={"status": "draft"})  # leaves "pub"
    staff_http.post(PRODUCTS, json={"name": "Pen", "price": 5})
    staff_http.post(PRODUCTS, json={"name": "Lamp", "price": 500})
    staff_http.delete(f"{POSTS}{post['id']}/")

    expected = [
        ("record.created", ["every", "posts", "pub"], []),
        ("record.created", ["every", "posts"], []),
        ("record.updated", ["every", "posts", "pub"], ["pub"]),
        ("record.created", ["cheap", "cheap2", "every"], []),
        ("record.created", ["every"], []),
        ("record.deleted", ["every", "posts"], []),
    ]
    received = [stream.next_of(*{t for t, _, _ in expected}).json for _ in expected]
    assert [(e["type"], e["subscriptions"], e["left"]) for e in received] == expected
    assert all(list(e) == MULTIPLEXED_KEYS for e in received)
    assert received[2]["data"]["status"] == "draft"  # the record as it is now, so the client can drop it
    assert stream.drain(0.3) == []  # nothing twice
    seed_shaped = [plain.next_of("record.created", "record.updated", "record.deleted").json for _ in expected]
    assert all(list(e) == ENVELOPE_KEYS for e in seed_shaped)  # ordinary streams keep the seed's envelope


def test_rules_apply_per_label(
    live: Server, site: None, open_stream: Any, staff_http: Any, staff: User, alice: User, bob: User
) -> None:
    labels = subscribe(mine=("notes", ""), posts=("posts", ""), every=("*", ""))
    as_alice = open_stream(live, "/api/v1/realtime", user=alice, subscribe=labels)
    as_staff = open_stream(live, "/api/v1/realtime", user=staff, subscribe=labels)
    as_alice.next()
    as_staff.next()
    staff_http.post("/api/v1/collections/internal/records/", json={"name": "staff only"})
    staff_http.post("/api/v1/collections/notes/records/", json={"name": "bob's", "owner": str(bob.pk)})
    note = staff_http.post(
        "/api/v1/collections/notes/records/", json={"name": "alice's", "owner": str(alice.pk), "secret": "s"}
    ).json()
    staff_http.patch(f"/api/v1/collections/notes/records/{note['id']}/", json={"owner": str(bob.pk)})

    seen = [as_alice.next_of("record.created", "record.updated").json for _ in range(2)]
    assert [(e["type"], e["data"].get("name"), e["subscriptions"], e["left"]) for e in seen] == [
        ("record.created", "alice's", ["every", "mine"], []),
        ("record.updated", None, ["every", "mine"], ["every", "mine"]),  # out of her view: id only
    ]
    assert "secret" not in seen[0]["data"]  # hidden fields only for staff
    assert seen[1]["data"] == {"id": note["id"]}
    assert as_alice.drain(0.3) == []  # neither bob's note nor the staff-only record

    staffs = [as_staff.next_of("record.created", "record.updated").json for _ in range(4)]
    assert [e["subscriptions"] for e in staffs] == [["every"], ["every", "mine"], ["every", "mine"], ["every", "mine"]]
    assert staffs[2]["data"]["secret"] == "s"


def test_resume_replays_with_labels_recomputed(live: Server, site: None, open_stream: Any, staff_http: Any) -> None:
    labels = subscribe(pub=("posts", "status=published"), cheap=("products", "price<100"))
    stream = open_stream(live, "/api/v1/realtime", subscribe=labels)
    stream.next()
    staff_http.post(POSTS, json={"title": "seen", "status": "published"})
    last_seen = stream.next_of("record.created").id
    stream.close()
    staff_http.post(POSTS, json={"title": "missed", "status": "published"})
    staff_http.post(POSTS, json={"title": "not wanted", "status": "draft"})
    staff_http.post(PRODUCTS, json={"name": "missed", "price": 1})

    resumed = open_stream(live, "/api/v1/realtime", subscribe=labels, headers={"Last-Event-ID": last_seen})
    connected = resumed.next().json["data"]
    assert connected["recovered"] is True
    replayed = [resumed.next_of("record.created").json for _ in range(2)]
    assert [(e["collection"], e["subscriptions"]) for e in replayed] == [("posts", ["pub"]), ("products", ["cheap"])]
    staff_http.post(PRODUCTS, json={"name": "live", "price": 2})
    live_event = resumed.next_of("record.created").json
    assert (live_event["data"]["name"], live_event["subscriptions"]) == ("live", ["cheap"])
    assert resumed.drain(0.3) == []


@pytest.mark.parametrize("multiplexed", [False, True], ids=["plain", "multiplexed"])
def test_a_drop_before_the_first_event_loses_nothing(
    live: Server, site: None, open_stream: Any, staff_http: Any, multiplexed: bool
) -> None:
    params = {"subscribe": subscribe(p=("posts", ""))} if multiplexed else {}
    path = "/api/v1/realtime" if multiplexed else "/api/v1/realtime/posts"
    staff_http.post(POSTS, json={"title": "before"})  # older than the stream: never sent
    settle_events(live)  # with Redis its event arrives a moment after the write: not after the stream opens
    stream = open_stream(live, path, **params)
    cursor = stream.next().json["data"]["cursor"]
    assert cursor != "0"
    stream.close()  # dropped before any event
    staff_http.post(POSTS, json={"title": "while away"})
    resumed = open_stream(live, path, last_event_id=cursor, **params)
    assert resumed.next().json["data"]["recovered"] is True
    assert resumed.next_of("record.created").json["data"]["title"] == "while away"
    assert resumed.drain(0.3) == []


def test_presence_and_collection_events_reach_the_labels_that_follow_them(
    live: Server, site: None, open_stream: Any, staff_http: Any
) -> None:
    stream = open_stream(live, "/api/v1/realtime", subscribe=subscribe(every=("*", 'id=""'), posts=("posts", "")))
    stream.next()
    with open_stream(live, "/api/v1/realtime", user_id="mux-visitor"):
        joined = stream.next_for("user.joined", user_id="mux-visitor").json
    assert joined["subscriptions"] == ["every"]
    staff_http.patch("/api/v1/collections/posts/", json={"list_rule": ""})
    updated = stream.next_of("collection.updated").json
    assert updated["subscriptions"] == ["every", "posts"]


def test_a_deleted_collection_ends_its_labels_and_the_stream_goes_on(
    live: Server, site: None, open_stream: Any, staff_http: Any
) -> None:
    stream = open_stream(live, "/api/v1/realtime", subscribe=subscribe(posts=("posts", ""), cheap=("products", "")))
    only_posts = open_stream(live, "/api/v1/realtime", subscribe=subscribe(posts=("posts", "")))
    stream.next()
    only_posts.next()
    assert staff_http.delete("/api/v1/collections/posts/").status_code == 204
    assert stream.next_of("collection.deleted").json["subscriptions"] == ["posts"]
    assert only_posts.next_of("collection.deleted").json["subscriptions"] == ["posts"]
    assert only_posts.ended.wait(5)  # no label left: the stream ends
    staff_http.post(PRODUCTS, json={"name": "still", "price": 1})
    assert stream.next_of("record.created").json["subscriptions"] == ["cheap"]


def test_anonymous_multiplexed_streams_open_inline_and_find_new_collections(
    live: Server, open_stream: Any, make_named_collection: Any
) -> None:
    with http_for(live) as anonymous:
        assert anonymous.get("/api/v1/presence").status_code == 200
    make_named_collection("fresh", PRODUCT_FIELDS, list_rule="")
    stream = open_stream(live, "/api/v1/realtime", subscribe=subscribe(f=("fresh", "price>1")))
    assert stream.status == 200
    assert stream.next().json["subscriptions"] == ["f"]
