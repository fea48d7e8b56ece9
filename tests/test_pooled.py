"""The request handler: each request's sync work in one call on the bounded pool of request threads."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from django.core.signals import request_finished, request_started

from fastcms.pooled import PooledRequestHandler


async def call(
    app: Any, method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through an ASGI app; (status, headers, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        return {}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def handler(transactional_db: None) -> Any:
    handler = PooledRequestHandler(threads=2)
    yield handler
    handler.close()


def test_every_request_runs_its_signals_middleware_and_view_in_one_pool_thread(handler: Any, staff: Any) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=staff).key
    seen: list[tuple[str, str]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.current_thread().name))

    request_started.connect(started)
    request_finished.connect(finished)
    auth = [(b"authorization", f"Token {token}".encode())]
    body = json.dumps({"name": "books", "fields": [{"name": "title", "type": "text"}]}).encode()

    async def run() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        created = await call(handler, "POST", "/api/v1/collections/", body, auth)
        listed = await asyncio.gather(*(call(handler, "GET", "/api/v1/collections/", headers=auth) for _ in range(6)))
        return [created, *listed]

    try:
        answers = asyncio.run(run())
    finally:
        request_started.disconnect(started)
        request_finished.disconnect(finished)
    assert answers[0][0] == 201, answers[0]
    assert all(status == 200 for status, _, _ in answers[1:])
    assert json.loads(answers[-1][2])["results"][0]["name"] == "books"
    threads = {name for _, name in seen}
    assert all(name.startswith("fastcms-request") for name in threads), threads
    assert len(threads) <= 2  # bounded: seven requests, at most two threads
    assert [kind for kind, _ in seen].count("finished") == 7


def test_errors_under_api_are_json_and_others_keep_django_pages(handler: Any) -> None:
    async def run() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        return [
            await call(handler, "GET", "/api/v1/collections/nope/records/"),
            await call(handler, "GET", "/no-such-page/"),
        ]

    api, page = asyncio.run(run())
    assert api[0] == 404
    assert json.loads(api[2])["code"] == "not_found"
    assert page[0] == 404
    assert page[1][b"Content-Type"].startswith(b"text/html")


def test_async_views_run_on_the_servers_loop(handler: Any) -> None:
    from realtime.bus import get_bus

    async def run() -> tuple[tuple[int, dict[bytes, bytes], bytes], Any, Any]:
        bus = get_bus()
        await bus.start()
        try:
            answer = await call(handler, "GET", "/api/v1/presence")
            return answer, bus.loop, asyncio.get_running_loop()
        finally:
            await bus.stop()

    (status, _, body), bus_loop, loop = asyncio.run(run())
    assert status == 200
    assert json.loads(body) == {"users": [], "count": 0}
    assert bus_loop is loop  # the view did not bind the bus to a loop of its own
