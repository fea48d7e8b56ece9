"""Bad input on the stream endpoints: a JSON 4xx before any stream starts, or (for an event id the
server could not have issued) a stream that says the id is not in history. Never a 5xx."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
from django.contrib.auth.models import User

from realtime.backends.base import parse_id
from tests.live import Server, SSEClient, wait_until
from tests.realtime.conftest import PRODUCT_FIELDS, stream_of


def presence_users(server: Server) -> set[str]:
    return {user["user_id"] for user in httpx.get(f"{server.url}/api/v1/presence").json()["users"]}


FOREIGN_IDS = [
    "²-1",
    "1-²",
    "\u0661-\u0661",  # Arabic-Indic digits
    "-1",
    "1-",
    "-",
    " 1-1",
    "1-1 ",
    "+1-1",
    "1.5-2",
    "0x10-1",
    "18446744073709551616-0",  # 2**64: beyond a Redis stream id
    "1-18446744073709551616",
    "9" * 30 + "-1",
    "x" * 500,
    "0-0-0",
]


@pytest.mark.parametrize("event_id", FOREIGN_IDS)
def test_parse_id_refuses_what_no_backend_issues(event_id: str) -> None:
    assert parse_id(event_id) is None


def test_parse_id_reads_issued_ids() -> None:
    assert parse_id("0") == (0, 0)
    assert parse_id("1796174402856-2") == (1796174402856, 2)
    assert parse_id(f"{2**64 - 1}-{2**64 - 1}") == (2**64 - 1, 2**64 - 1)


def test_an_event_id_the_server_could_not_have_issued_is_not_in_history(
    live: Server, open_stream: Any, make_live_collection: Any
) -> None:
    products = make_live_collection("products", PRODUCT_FIELDS, list_rule="")
    for event_id in FOREIGN_IDS:
        for stream in (
            open_stream(live, stream_of(products), last_event_id=event_id),
            open_stream(live, "/api/v1/realtime", headers={"Last-Event-ID": event_id.encode("utf-8")}),
        ):
            assert stream.status == 200, (event_id, stream.body)
            connected = stream.next().json["data"]
            assert connected["recovered"] is False, event_id
            stream.close()


@pytest.mark.parametrize("parameter", ["user_name", "user_id", "query", "last_event_id", "token"])
def test_stream_parameters_that_are_not_valid_text_are_a_400_naming_them(
    live: Server, open_stream: Any, parameter: str
) -> None:
    for raw in ("%ED%A0%80", "a%FFb", "%00"):
        stream = SSEClient(f"{live.url}/api/v1/realtime?user_id=u-{parameter}&{parameter}={raw}")
        assert stream.status == 400, (parameter, raw)
        body = stream.json_error()
        assert body["code"] == "invalid_parameter"
        assert parameter in body["detail"]
    assert f"u-{parameter}" not in presence_users(live)


def test_a_stream_with_a_host_not_allowed_never_starts(
    live_servers: Any, transactional_db: None, open_stream: Any, staff: User
) -> None:
    server = live_servers(ALLOWED_HOSTS="127.0.0.1,localhost")
    for path in ("/api/v1/realtime", "/api/v1/realtime/anything"):
        stream = open_stream(server, path, headers={"Host": "evil.example"}, user_id="rebound")
        assert stream.status == 400
        assert stream.response_headers["content-type"] == "application/json"
        assert stream.json_error() == {
            "detail": "The Host header is not one this server answers to.",
            "code": "invalid_host",
        }
    allowed = open_stream(server, "/api/v1/realtime", headers={"Host": "localhost"}, user_id="welcome")
    assert allowed.status == 200
    assert wait_until(lambda: "welcome" in presence_users(server))
    assert "rebound" not in presence_users(server)


def test_odd_paths_and_parameters_are_json_4xx(live: Server) -> None:
    for path in (
        "/api/v1/realtime/%00",
        "/api/v1/realtime/" + quote("é" * 300),
        "/api/v1/realtime/" + "x" * 5_000,
        "/api/v1/realtime?query=" + quote("(" * 5_000),
        "/api/v1/realtime?user_name=" + "n" * 101,
    ):
        stream = SSEClient(f"{live.url}{path}")
        assert 400 <= (stream.status or 0) < 500, (path, stream.status, stream.body)
        assert stream.response_headers["content-type"] == "application/json"


def test_stream_paths_resolve_once_and_unknown_paths_are_never_remembered() -> None:
    """The stream handler remembers what a stream path resolved to; a path that resolves to no
    view (a 404) and a path too long to remember are resolved every time, so they cost no memory."""
    from django.test import RequestFactory
    from django.urls import Resolver404, set_urlconf

    from realtime.handler import REMEMBERED_PATH, StreamHandler, _remembered

    handler = StreamHandler()
    factory = RequestFactory()
    _remembered.cache_clear()
    try:
        first = handler.resolve_request(factory.get("/api/v1/realtime/products"))
        again = handler.resolve_request(factory.get("/api/v1/realtime/products"))
        assert first is again
        assert first.kwargs == {"name": "products"}
        other = handler.resolve_request(factory.get("/api/v1/realtime/tokens"))
        assert other.kwargs == {"name": "tokens"}  # a collection named "tokens", not the token endpoint
        with pytest.raises(Resolver404):
            handler.resolve_request(factory.get("/api/v1/realtime/a/b"))
        long_name = "n" * REMEMBERED_PATH
        handler.resolve_request(factory.get(f"/api/v1/realtime/{long_name}"))
        assert _remembered.cache_info().currsize == 2
    finally:
        set_urlconf(None)  # resolving set the stream URLconf for this thread: back to the project's
