"""Property-based fuzzing of the REST surface, in process (DRF's APIClient; middleware included).

Invariants: never a 5xx; every answer is JSON; an accepted write stored exactly what its field
types say (read back equal); a refused write stored nothing, and the collection still lists and
reads normally. Streams, Host headers and raw bytes are fuzzed against a live server in
tests/realtime/test_fuzz_streams.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from hypothesis import assume, event, given
from hypothesis import strategies as st
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection, Record
from tests.conftest import client_for
from tests.fuzzing import (
    any_text,
    assert_json_answer,
    dates,
    datetimes,
    deep_values,
    dumps,
    emails,
    encode_component,
    fuzz_settings,
    json_values,
    numbers,
    parsed,
    same_json,
    short_text,
    stored_as,
    url_component,
    urls,
)

THINGS = "/api/v1/collections/things/records/"
FIELDS = [
    {"name": "text", "type": "text", "options": {"max_length": 40}},
    {"name": "slug", "type": "text", "options": {"pattern": "^[a-z]+(-[a-z]+)*$"}},
    {"name": "number", "type": "number", "options": {"min": -1e12}},
    {"name": "whole", "type": "number", "options": {"integer": True}},
    {"name": "flag", "type": "bool"},
    {"name": "email", "type": "email"},
    {"name": "url", "type": "url"},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "choice", "type": "select", "options": {"values": ["a", "b", "é"]}},
    {"name": "data", "type": "json"},
    {"name": "link", "type": "relation", "options": {"collection": "things"}},
    {"name": "owner", "type": "user"},
    {"name": "code", "type": "text", "unique": True},
    {"name": "secret", "type": "text", "hidden": True},
]
TYPES = {field["name"]: field["type"] for field in FIELDS}
FILTERS = [
    "id",
    "id__in",
    "created__gt",
    "updated__lte",
    *(f"{name}{suffix}" for name in TYPES for suffix in ("", "__gt", "__gte", "__lt", "__lte", "__in", "__icontains")),
]

# Values a field may be sent: mostly of its own type (so writes are often accepted), else anything.
valid_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
PLAUSIBLE = {
    "text": valid_text,
    "slug": st.from_regex(r"[a-z]{1,8}(-[a-z]{1,8})?", fullmatch=True),
    "number": st.one_of(st.integers(-(10**12), 10**15), st.floats(-1e12, 1e300), numbers),
    "whole": st.integers(-(10**6), 10**6),
    "flag": st.booleans(),
    "email": emails,
    "url": urls,
    "day": dates,
    "at": datetimes,
    "choice": st.sampled_from(["a", "b", "é"]),
    "data": st.one_of(json_values, deep_values),
    "link": st.sampled_from(["@target", "@target", "zzzzzzzzzzzzzzz"]),
    "owner": st.sampled_from(["@alice", "@alice-as-number", "999999"]),
    "code": valid_text,
    "secret": valid_text,
}
WILD = st.one_of(
    json_values,
    short_text,
    st.sampled_from(["", " ", "\x00", "\ud800", "0", "-1", "\u0663", "\u00b2", "\uff11", "1" * 19, "c", "A"]),
)
valid_values = {name: st.one_of(PLAUSIBLE[name], st.none()) for name in TYPES}
wild_values = {name: st.one_of(PLAUSIBLE[name], WILD) for name in TYPES}
record_bodies = st.one_of(
    st.fixed_dictionaries({}, optional=valid_values),
    st.fixed_dictionaries({}, optional=wild_values),
    st.dictionaries(st.one_of(short_text, st.sampled_from(["id", "created", "collection"])), json_values, max_size=3),
    json_values,
)
raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.integers(30, 3_000).map(lambda depth: '{"data": ' + "[" * depth + "]" * depth + "}"),
    st.sampled_from(['{"number": 1e999}', '{"number": -0}', '{"whole": ' + "9" * 5_000 + "}", "{", '{"a": NaN}']),
)


@pytest.fixture
def world(db: None, staff: User, alice: User) -> dict[str, Any]:
    """`things` (every field type, open rules) with one target record, and who is who."""
    things = services.collection_create(
        name="things", fields=FIELDS, list_rule="", view_rule="", create_rule="", update_rule="", delete_rule=""
    )
    target = services.record_create(collection=things, data={"text": "target"})
    api = client_for(staff)
    return {
        "api": api,
        "alice": alice,
        "target": target.id,
        "state": api.get(f"{THINGS}{target.id}/").json(),
    }


def resolve(value: Any, world: dict[str, Any]) -> Any:
    return (
        {
            "@target": world["target"],
            "@alice": str(world["alice"].pk),
            "@alice-as-number": world["alice"].pk,
        }.get(value, value)
        if isinstance(value, str)
        else value
    )


def check_collection_still_serves(world: dict[str, Any], count: int) -> None:
    api = world["api"]
    listed = assert_json_answer(api.get(THINGS, {"page_size": 1, "ordering": "-created"}), "list after a write")
    assert listed["count"] == count == Record.objects.count()
    assert assert_json_answer(api.get(f"{THINGS}{world['target']}/"), "target") == world["state"]


@pytest.mark.django_db
@fuzz_settings(150)
@given(
    method=st.sampled_from(["post", "post", "put", "patch"]),
    body=record_bodies,
    raw=st.one_of(st.none(), st.none(), st.none(), raw_bodies),
)
def test_record_writes_store_what_they_say_or_nothing(world: dict[str, Any], method: str, body: Any, raw: Any) -> None:
    api = world["api"]
    if isinstance(body, dict):
        body = {key: resolve(value, world) for key, value in body.items()}
    url = THINGS if method == "post" else f"{THINGS}{world['target']}/"
    before = Record.objects.count()
    response = getattr(api, method)(url, dumps(body) if raw is None else raw, content_type="application/json")
    answer = assert_json_answer(response, (method, body, raw))
    event(f"{method} {response.status_code}")
    if response.status_code not in (200, 201):
        assert 400 <= response.status_code < 500
        check_collection_still_serves(world, before)
        return
    if raw is not None:
        body = parsed(raw)
    assert isinstance(body, dict), (raw, body)
    previous = world["state"] if method == "patch" else {}
    for name, field_type in TYPES.items():
        if name in body:
            assert stored_as(field_type, body[name], answer[name]), (name, body[name], answer[name])
        else:
            assert answer[name] == previous.get(name), (name, answer[name])
    read_back = assert_json_answer(api.get(f"{THINGS}{answer['id']}/"), "read back")
    assert same_json(read_back, answer), (read_back, answer)  # jsonb may write 1e+16 as digits
    answer = read_back
    if method == "post":
        check_collection_still_serves(world, before + 1)
    else:
        world["state"] = answer
        check_collection_still_serves(world, before)


form_pairs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([*TYPES, "_method", "_content", "_content_type", "csrfmiddlewaretoken"]), any_text),
        st.one_of(st.sampled_from(["", "true", "on", "1", "-1", "1e999", "{", "[]", "@target"]), any_text),
    ),
    max_size=6,
)


@pytest.mark.django_db
@fuzz_settings(100)
@given(method=st.sampled_from(["post", "put", "patch"]), pairs=form_pairs, junk=st.binary(max_size=16))
def test_html_form_posts_of_any_shape(world: dict[str, Any], method: str, pairs: Any, junk: bytes) -> None:
    """The browsable API's forms: any fields and text (invalid UTF-8 included), answered as HTML,
    a refused one with its form filled in; never a 5xx, and a refusal writes nothing."""
    api = world["api"]
    body = "&".join(f"{encode_component(key)}={encode_component(value)}" for key, value in pairs)
    body = body.encode() + (b"&x=" + junk if junk else b"")
    url = THINGS if method == "post" else f"{THINGS}{world['target']}/"
    before = Record.objects.count()
    response = getattr(api, method)(
        url, body, content_type="application/x-www-form-urlencoded", HTTP_ACCEPT="text/html"
    )
    event(f"{method} {response.status_code}")
    assert response.status_code < 500, response.content[:2000]
    if response.status_code not in (200, 201):
        check_collection_still_serves(world, before)
    else:
        world["state"] = api.get(f"{THINGS}{world['target']}/").json()


option_values = st.one_of(
    json_values,
    st.sampled_from([0, 1, -1, 5, 1e400, "x", "(", "(a)\\1", "^([a-z]+)+$", [], ["a", "a"], ["a"], "things"]),
)
field_definitions = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["a", "b", "id", "A", "x__y", "", 5]), short_text)},
    optional={
        "type": st.one_of(st.sampled_from([*sorted(set(TYPES.values())), "nope", 3]), short_text),
        "required": st.one_of(st.booleans(), json_values),
        "unique": st.one_of(st.booleans(), json_values),
        "hidden": st.one_of(st.booleans(), json_values),
        "options": st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(
                    ["min", "max", "min_length", "max_length", "pattern", "integer", "values", "collection", "x"]
                ),
                option_values,
                max_size=3,
            ),
        ),
    },
)
rules = st.one_of(st.none(), st.just(""), any_text, st.sampled_from(["a = 1", "id != null", "@request.auth.id = a"]))
OPTIONS_FOR = {
    "text": st.fixed_dictionaries(
        {},
        optional={
            "min_length": st.integers(0, 5),
            "max_length": st.integers(1, 50),
            "pattern": st.sampled_from(["^a", "b+", "^([a-z0-9]+)+$", "(a)\\1", "(?=a)", "["]),
        },
    ),
    "number": st.fixed_dictionaries({}, optional={"min": numbers, "max": numbers, "integer": st.booleans()}),
    "select": st.fixed_dictionaries({"values": st.lists(short_text, min_size=1, max_size=3)}),
    "relation": st.fixed_dictionaries({"collection": st.sampled_from(["things", "fuzzed", "nowhere"])}),
}
plausible_fields = st.sampled_from(sorted(set(TYPES.values()))).flatmap(
    lambda type_name: st.fixed_dictionaries(
        {"name": st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), "type": st.just(type_name)},
        optional={
            "required": st.booleans(),
            "unique": st.booleans(),
            "hidden": st.booleans(),
            "options": OPTIONS_FOR.get(type_name, st.just({})),
        },
    )
)
field_lists = st.one_of(
    json_values, st.lists(field_definitions, max_size=3), st.lists(plausible_fields, max_size=4, unique_by=str)
)


def expected_field(sent: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": sent["name"],
        "type": sent["type"],
        "required": sent.get("required", False),
        "unique": sent.get("unique", False),
        "hidden": sent.get("hidden", False),
        "options": sent.get("options") or {},
    }


@pytest.mark.django_db
@fuzz_settings(100)
@given(
    name=st.one_of(st.just("fuzzed"), short_text),
    fields=st.one_of(field_lists, st.lists(plausible_fields, max_size=4)),
    list_rule=rules,
    patch=st.booleans(),
)
def test_collection_writes_store_what_they_say_or_nothing(
    world: dict[str, Any], name: Any, fields: Any, list_rule: Any, patch: bool
) -> None:
    api = world["api"]
    body = {"name": name, "fields": fields, "list_rule": list_rule}
    if patch:  # on `things` itself: its record must keep serving whatever happens
        body.pop("name")
        response = api.patch("/api/v1/collections/things/", dumps(body), content_type="application/json")
    else:
        response = api.post("/api/v1/collections/", dumps(body), content_type="application/json")
    answer = assert_json_answer(response, body)
    event(f"{'patch' if patch else 'create'} {response.status_code}")
    accepted = response.status_code in (200, 201)
    if accepted and not patch:
        assert api.delete(f"/api/v1/collections/{answer['name']}/").status_code == 204  # before any assertion
    if accepted and patch:
        restored = api.patch("/api/v1/collections/things/", {"fields": FIELDS, "list_rule": ""}, format="json")
        assert restored.status_code == 200, restored.content
    assert Collection.objects.count() == 1
    assert assert_json_answer(api.get("/api/v1/collections/"), "collections")["count"] == 1
    world["state"] = assert_json_answer(api.get(f"{THINGS}{world['target']}/"), "target")
    check_collection_still_serves(world, 1)
    if not accepted:
        assert 400 <= response.status_code < 500
        return
    assert isinstance(fields, list)
    assert answer["fields"] == [expected_field(field) for field in fields]
    assert answer["list_rule"] == list_rule
    assert answer["name"] == (name if not patch else "things")


query_like = st.lists(
    st.sampled_from(
        [*" ()&|=!<>~\"'\\@.-_0123456789eE", *TYPES, "id", "created", "@request.auth.id", "null", "true", "&&", "||"]
    ),
    max_size=30,
).map("".join)
parameter_values = st.one_of(
    query_like.map(lambda text: text.replace("%", "%25").replace("&", "%26").replace("+", "%2B").replace("#", "%23")),
    url_component,
    st.lists(st.sampled_from(["1", "a", "2020-01-01", "true", "", "%00", "%FF"]), max_size=120).map(",".join),
)
parameter_names = st.one_of(
    st.sampled_from([*FILTERS, "query", "ordering", "page", "page_size", "token"]), url_component
)


@pytest.mark.django_db
@fuzz_settings(200)
@given(
    parameters=st.lists(st.tuples(parameter_names, parameter_values), max_size=5),
    who=st.sampled_from(["staff", "anonymous"]),
)
def test_list_parameters_of_any_shape(world: dict[str, Any], parameters: list[tuple[str, str]], who: str) -> None:
    api = world["api"] if who == "staff" else APIClient()
    query_string = "&".join(f"{name}={value}" for name, value in parameters)
    response = api.get(f"{THINGS}?{query_string}")
    answer = assert_json_answer(response, query_string)
    event(str(response.status_code))
    assert response.status_code in (200, 400, 404), (response.status_code, query_string, answer)
    if response.status_code == 200:
        assert isinstance(answer["results"], list)
        assert answer["count"] >= len(answer["results"])
    else:
        assert answer, query_string


@pytest.mark.django_db
@fuzz_settings(100)
@given(
    method=st.sampled_from(["get", "put", "patch", "delete"]),
    collection=st.one_of(st.just("things"), url_component),
    record=st.one_of(st.none(), url_component),
    authorization=st.one_of(
        st.none(),
        st.just("@staff"),
        st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60),
        st.tuples(st.sampled_from(["Token", "Bearer", "token", "Basic", "Token  ", ""]), short_text).map(
            lambda parts: f"{parts[0]} {parts[1]}"
        ),
    ),
    body=st.one_of(st.none(), record_bodies),
)
def test_ids_and_headers_of_any_shape(
    world: dict[str, Any], method: str, collection: str, record: Any, authorization: Any, body: Any
) -> None:
    # Staff may really replace or delete `things`; the other checks need it as it is.
    assume(not (authorization == "@staff" and record is None and method != "get"))
    client = APIClient()
    if authorization == "@staff":
        client = world["api"]
    elif authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization.encode("latin-1", "replace").decode("latin-1"))
    url = f"/api/v1/collections/{collection}/" + ("" if record is None else f"records/{record}/")
    data = "" if body is None else dumps(body)
    before = Record.objects.count()
    response = client.generic(method.upper(), url, data, content_type="application/json")
    assert_json_answer(response, (method, url, authorization, body))
    event(f"{method} {response.status_code}")
    if response.status_code >= 400:
        check_collection_still_serves(world, before)
