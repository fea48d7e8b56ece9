"""Bad input against a real server (uvicorn, DEBUG off): every refusal is a JSON 4xx, nothing is
stored, and the collection keeps listing, reading and replaying normally afterwards."""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.conftest import http_for
from tests.live import Server, SSEClient, unique_name

FIELDS = [
    {"name": "title", "type": "text"},
    {"name": "at", "type": "datetime"},
    {"name": "meta", "type": "json"},
    {"name": "price", "type": "number"},
]


@pytest.fixture
def api(live: Server, staff: User) -> Any:
    with http_for(live, staff) as client:
        yield client


@pytest.fixture
def notes_name(api: httpx.Client) -> str:
    """A public collection, made through the server (so its collection registry hears of it)."""
    name = unique_name("notes")
    response = api.post("/api/v1/collections/", json={"name": name, "fields": FIELDS, "list_rule": ""})
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def notes(notes_name: str) -> str:
    return f"/api/v1/collections/{notes_name}/records/"


def raw_post(api: httpx.Client, url: str, body: Any) -> httpx.Response:
    """POST `body` as JSON text; json.dumps writes a lone surrogate as the escape `\\ud800`."""
    return api.post(url, content=json.dumps(body), headers={"Content-Type": "application/json"})


def assert_json_error(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json", response.headers
    return response.json()


def test_a_lone_surrogate_is_refused_and_stores_nothing(
    live: Server, api: httpx.Client, notes_name: str, notes: str
) -> None:
    kept = api.post(notes, json={"title": "kept"}).json()
    for body, field in (
        ({"title": "\ud800"}, "title"),
        ({"meta": {"a\udfff": 1}}, "meta"),
        ({"meta": [[{"deep": "x\ud800y"}]]}, "meta"),
    ):
        assert field in assert_json_error(raw_post(api, notes, body), 400)
    listed = api.get(notes)
    assert listed.status_code == 200
    assert [record["title"] for record in listed.json()["results"]] == ["kept"]
    assert api.get(f"{notes}{kept['id']}/").status_code == 200
    assert api.get("/admin/collections_app/record/").status_code in (200, 302)  # never a 500
    replay = SSEClient(f"{live.url}/api/v1/realtime/{notes_name}?last_event_id=0")
    try:
        connected = replay.next().json["data"]
        assert connected["recovered"] is True
        created = replay.next_of("record.created")
        assert created.json["data"]["title"] == "kept"
    finally:
        replay.close()


def test_datetimes_of_early_years_round_trip_and_system_dates_compare(api: httpx.Client, notes: str) -> None:
    early = api.post(notes, json={"title": "early", "at": "0005-06-01T00:00:00Z"})
    assert early.status_code == 201, early.text
    assert early.json()["at"] == "0005-06-01T00:00:00.000000Z"
    api.post(notes, json={"title": "late", "at": "2020-01-01T00:00:00Z"})
    ordered = api.get(notes, params={"ordering": "at"}).json()["results"]
    assert [record["title"] for record in ordered] == ["early", "late"]
    everything = api.get(notes, params={"query": 'created > "0001-01-01T00:00:00Z"'})
    assert everything.status_code == 200, everything.text
    assert everything.json()["count"] == 2


def test_oversized_in_lists_and_deep_json_are_400s(api: httpx.Client, notes: str) -> None:
    values = ",".join(str(n) for n in range(1_000))
    assert "price__in" in assert_json_error(api.get(notes, params={"price__in": values}), 400)
    deep = '{"meta": ' + "[" * 1_000 + "]" * 1_000 + "}"
    assert_json_error(api.post(notes, content=deep, headers={"Content-Type": "application/json"}), 400)
    assert "meta" in assert_json_error(raw_post(api, notes, {"meta": json.loads("[" * 33 + "]" * 33)}), 400)
    assert api.get(notes).json()["count"] == 0


def test_invalid_utf8_in_a_query_literal_is_a_400(api: httpx.Client, notes: str) -> None:
    response = api.get(f"{notes}?query=title%3D%22%ED%A0%80%22")
    assert "query" in assert_json_error(response, 400)["detail"]


def test_a_catastrophic_pattern_neither_takes_long_nor_stalls_others(
    live: Server, api: httpx.Client, staff: User
) -> None:
    field = {"name": "slug", "type": "text", "options": {"pattern": "^([a-z0-9]+)+$"}}
    pages = f"/api/v1/collections/{unique_name('pages')}/records/"
    definition = {"name": pages.split("/")[4], "fields": [field], "list_rule": "", "create_rule": ""}
    assert api.post("/api/v1/collections/", json=definition).status_code == 201
    outcome: dict[str, Any] = {}

    def write() -> None:
        with httpx.Client(base_url=live.url, timeout=60) as writer:
            outcome["write"] = writer.post(pages, json={"slug": "a" * 50_000 + "!"})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        with httpx.Client(base_url=live.url, timeout=2) as other:  # a stalled server would time out
            for _ in range(5):
                assert other.get("/api/v1/presence").status_code == 200
                assert other.get(pages).status_code == 200
    finally:
        writer.join(timeout=30)
    assert "slug" in assert_json_error(outcome["write"], 400)
    accepted = api.post(pages, json={"slug": "abc123"})
    assert accepted.status_code == 201, accepted.text


def test_a_pattern_re2_cannot_run_is_refused_when_saved(api: httpx.Client) -> None:
    field = {"name": "slug", "type": "text", "options": {"pattern": "(a)\\1"}}
    body = assert_json_error(api.post("/api/v1/collections/", json={"name": "pages", "fields": [field]}), 400)
    assert "pattern" in body["fields"][0]


def test_a_host_not_allowed_is_a_json_400(live_servers: Any, transactional_db: None) -> None:
    server = live_servers(ALLOWED_HOSTS="127.0.0.1,localhost")
    for path in ("/api/v1/collections/", "/api/v1/presence", "/api/v1/nowhere/"):
        response = httpx.get(f"{server.url}{path}", headers={"Host": "evil.example"})
        assert assert_json_error(response, 400) == {
            "detail": "The Host header is not one this server answers to.",
            "code": "invalid_host",
        }
    assert httpx.get(f"{server.url}/api/v1/presence", headers={"Host": "localhost"}).status_code == 200


def test_a_body_over_the_upload_limit_is_a_json_413(api: httpx.Client, notes: str) -> None:
    big = json.dumps({"title": "x", "meta": "x" * (1024 * 1024)})
    assert assert_json_error(api.post(notes, content=big, headers={"Content-Type": "application/json"}), 413) == {
        "detail": "The request body is larger than 1048576 bytes.",
        "code": "request_too_large",
    }
    assert api.get(notes).json()["count"] == 0


def test_a_session_write_without_its_csrf_token_is_a_json_403(live: Server, notes: str) -> None:
    User.objects.create_superuser("root", "root@example.com", "root-pass")
    with httpx.Client(base_url=live.url) as browser:
        login = browser.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post("/admin/login/", data={"username": "root", "password": "root-pass", "csrfmiddlewaretoken": csrf})
        refused = browser.post(notes, json={"title": "forged"})
        assert assert_json_error(refused, 403)["code"] == "csrf_failed"
        accepted = browser.post(notes, json={"title": "mine"}, headers={"X-CSRFToken": browser.cookies["csrftoken"]})
        assert accepted.status_code == 201, accepted.text
        assert [record["title"] for record in browser.get(notes).json()["results"]] == ["mine"]


@pytest.mark.parametrize(
    "path",
    [
        "{notes}%00/",
        "/api/v1/collections/%ED%A0%80/records/",
        "{notes}" + "x" * 5_000 + "/",
        "{notes}?page=%F0%9F%98%80",
        "{notes}?page_size=-1&page=99999999999999999999",
        "{notes}?ordering=%00",
    ],
)
def test_ids_and_parameters_of_any_shape_are_json_4xx(api: httpx.Client, notes: str, path: str) -> None:
    response = api.get(path.replace("{notes}", notes))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["Content-Type"] == "application/json"
