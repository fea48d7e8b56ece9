"""Property-based fuzzing of what only a real server sees: stream requests of any shape (parameters,
paths, Host, Authorization, Last-Event-ID as raw header bytes), raw request bodies, and writes
whose refusal must leave the collection listing, reading and replaying normally.

Invariants: never a 5xx; a stream is a 200 `text/event-stream` opening with a `connected` event,
or a JSON error; REST answers are JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth.models import User
from hypothesis import event, given
from hypothesis import strategies as st

from tests.conftest import http_for, token_of
from tests.fuzzing import (
    any_text,
    assert_json_answer,
    dumps,
    fuzz_settings,
    json_values,
    parsed,
    same_json,
    stored_as,
    url_component,
)
from tests.live import Server, SSEClient, unique_name

FIELDS = [
    {"name": "title", "type": "text", "options": {"max_length": 30}},
    {"name": "price", "type": "number"},
    {"name": "at", "type": "datetime"},
    {"name": "meta", "type": "json"},
]
TYPES = {field["name"]: field["type"] for field in FIELDS}

# What HTTP lets through to the application in a header value: tab, visible ASCII, obs-text.
header_text = st.text(st.sampled_from(["\t", *map(chr, range(0x20, 0x7F)), *map(chr, range(0x80, 0x100))]), max_size=40)
query_like = st.lists(
    st.sampled_from([*" ()&|=!<>~\"'\\@.-_0123456789", *TYPES, "id", "created", "null", "&&", "||", "é"]),
    max_size=25,
).map("".join)
parameter_values = st.one_of(
    query_like.map(lambda text: quote(text, safe="")),
    url_component,
    st.sampled_from(["0", "1-1", "-1", "18446744073709551616-0", "99999999999999999999-1", "%C2%B2-1", "%20"]),
)
parameters = st.lists(
    st.tuples(
        st.one_of(*[st.sampled_from(["query", "user_id", "user_name", "token", "last_event_id"])] * 4, url_component),
        parameter_values,
    ),
    max_size=4,
)


def check_stream(stream: SSEClient, context: Any) -> dict[str, Any] | None:
    """A 200 event stream opening with `connected`, or a JSON 4xx: the `connected` data, or None."""
    status = stream.status or 0
    if status != 200:
        assert 400 <= status < 500, (status, context, stream.body[:300])
        assert stream.response_headers.get("content-type") == "application/json", (context, stream.response_headers)
        body = json.loads(stream.body)
        assert isinstance(body["detail"], str), body
        assert isinstance(body["code"], str), body
        event(f"stream {status} {body['code']}")
        return None
    assert stream.response_headers["content-type"] == "text/event-stream", context
    connected = stream.next(timeout=10)
    assert connected.event == "connected", context
    data = connected.json["data"]
    assert data["recovered"] in (None, True, False), data
    event(f"stream 200 recovered={data['recovered']}")
    return data


@pytest.fixture
def host_checked(live_servers: Any, transactional_db: None) -> Server:
    """A server that answers to 127.0.0.1 and localhost only."""
    return live_servers(ALLOWED_HOSTS="127.0.0.1,localhost")


@pytest.fixture
def things(host_checked: Server, staff: User) -> str:
    """A public collection made through that server (once per test, shared by its examples)."""
    with http_for(host_checked, staff) as api:
        name = unique_name("things")
        created = api.post("/api/v1/collections/", json={"name": name, "fields": FIELDS, "list_rule": ""})
        assert created.status_code == 201, created.text
    return name


@pytest.mark.django_db(transaction=True)
@fuzz_settings(200)
@given(
    path=st.one_of(st.just(""), st.just("/@things"), url_component.map(lambda name: f"/{name}")),
    query=parameters,
    host=st.one_of(
        st.none(),
        st.none(),
        st.none(),
        st.sampled_from(["localhost", "127.0.0.1:1", "evil.example", "[::1]", ""]),
        header_text,
    ),
    authorization=st.one_of(st.none(), st.just("@staff"), header_text),
    last_event_id=st.one_of(st.none(), header_text, st.sampled_from(["0", "1-1", "0-0"])),
)
def test_stream_requests_of_any_shape(
    host_checked: Server,
    things: str,
    staff: User,
    path: str,
    query: Any,
    host: Any,
    authorization: Any,
    last_event_id: Any,
) -> None:
    headers: dict[str, Any] = {}
    if host is not None:
        headers["Host"] = host.encode("latin-1")
    if authorization == "@staff":
        headers["Authorization"] = f"Token {token_of(staff)}"
    elif authorization is not None:
        headers["Authorization"] = authorization.encode("latin-1")
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id.encode("latin-1")
    query_string = "&".join(f"{name}={value}" for name, value in query)
    url = f"{host_checked.url}/api/v1/realtime{path.replace('@things', things)}?{query_string}"
    stream = SSEClient(url, headers=headers)
    try:
        check_stream(stream, (url, headers))
    finally:
        stream.close()


@pytest.fixture
def notes(live: Server, staff: User) -> Any:
    """A collection made through the live server, an anchor record, and the event id before it."""
    with http_for(live, staff) as api:
        name = unique_name("notes")
        assert (
            api.post("/api/v1/collections/", json={"name": name, "fields": FIELDS, "list_rule": ""}).status_code == 201
        )
        records = f"/api/v1/collections/{name}/records/"
        before = api.get(records).headers["X-Last-Event-ID"]
        anchor = api.post(records, json={"title": "anchor"}).json()
        yield {
            "api": api,
            "name": name,
            "records": records,
            "before": before,
            "anchor": anchor,
            "accepted": 1,
            "events": 1,
        }


raw_bodies = st.one_of(
    st.binary(max_size=40),
    st.integers(30, 2_000).map(lambda depth: '{"meta": ' + "[" * depth + "]" * depth + "}"),
    st.sampled_from(['{"title": "\\ud800"}', '{"meta": {"\\udfff": 1}}', '{"price": 1e999}', '{"at": "0005-06-01"}']),
)
bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "title": any_text,
            "price": st.one_of(st.integers(), st.floats()),
            "at": st.one_of(st.datetimes().map(lambda moment: moment.isoformat() + "Z"), any_text),
            "meta": json_values,
        },
    ),
    json_values,
)


def replayed(
    live: Server, notes: dict[str, Any], last_event_id: str, expected: int | None = None
) -> tuple[bool | None, list[Any]]:
    """(recovered, the record events) of a stream resumed from `last_event_id`; every event must
    parse. Reads `expected` events when the id was in history, else what arrives within a moment."""
    stream = SSEClient(f"{live.url}/api/v1/realtime/{notes['name']}?last_event_id={last_event_id}")
    try:
        connected = check_stream(stream, last_event_id)
        assert connected is not None
        recovered = connected["recovered"]
        if not recovered:
            expected = None
        events: list[Any] = []
        while expected is None or len(events) < expected:
            try:
                item = stream.next(timeout=5 if expected is not None else 0.1)
            except TimeoutError:
                assert expected is None, (len(events), expected)
                break
            assert item.json["type"] == item.event, item
            if item.event.startswith("record."):
                events.append(item.json)
        return recovered, events
    finally:
        stream.close()


@pytest.mark.django_db(transaction=True)
@fuzz_settings(40)
@given(
    body=bodies,
    raw=st.one_of(st.none(), raw_bodies),
    method=st.sampled_from(["post", "patch"]),
    full_replay=st.integers(0, 4).map(lambda n: n == 0),
)
def test_refused_writes_leave_the_collection_serving_and_replaying(
    live: Server, notes: dict[str, Any], body: Any, raw: Any, method: str, full_replay: bool
) -> None:
    api = notes["api"]
    notes.setdefault("created", 1)  # the anchor
    notes.setdefault("events", 1)
    older = api.get(notes["records"]).headers["X-Last-Event-ID"]
    url = notes["records"] if method == "post" else f"{notes['records']}{notes['anchor']['id']}/"
    content = dumps(body) if raw is None else raw
    response = api.request(method.upper(), url, content=content, headers={"Content-Type": "application/json"})
    answer = assert_json_answer(response, (method, body, raw))
    event(f"{method} {response.status_code}")
    accepted = response.status_code in (200, 201)
    if accepted:
        sent = body if raw is None else parsed(raw)
        for name, value in sent.items():
            assert stored_as(TYPES[name], value, answer[name]), (name, value, answer[name])
        if method == "post":
            notes["created"] += 1
        else:
            notes["anchor"] = answer
        notes["events"] += 1
    listed = assert_json_answer(api.get(notes["records"]), "list")
    assert listed["count"] == notes["created"]
    anchor = assert_json_answer(api.get(f"{notes['records']}{notes['anchor']['id']}/"), "retrieve")
    assert same_json(anchor, notes["anchor"]), (anchor, notes["anchor"])  # jsonb may write 1e+105 as digits
    recovered, latest = replayed(live, notes, older, expected=1 if accepted else 0)
    assert recovered is True
    if accepted:
        assert latest[0]["data"]["id"] == answer["id"]
    if full_replay:  # from before the anchor (unless history aged out), and from the start of history
        recovered, events = replayed(live, notes, notes["before"], expected=notes["events"])
        if recovered:
            assert len([e for e in events if e["type"] == "record.created"]) == notes["created"]
            assert events[0]["data"]["id"] == notes["anchor"]["id"]
        replayed(live, notes, "0")
