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
    app: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunk: int | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through an ASGI app (its body in messages of `chunk` bytes); (status, headers, body)."""
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
    step = chunk or max(len(body), 1)
    parts = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    incoming = [{"type": "http.request", "body": part, "more_body": n < len(parts) - 1} for n, part in enumerate(parts)]
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


def test_bodies_arrive_whole_in_memory_or_spooled_and_the_size_limit_holds(
    handler: Any, staff: Any, settings: Any
) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=staff).key
    auth = [(b"authorization", f"Token {token}".encode())]
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000  # bodies beyond it are spooled
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50_000
    fields = [{"name": "title", "type": "text"}]
    small = json.dumps({"name": "small", "fields": fields}).encode()
    spooled = json.dumps({"name": "spooled", "fields": fields, "list_rule": " " * 1500 + 'title = "x"'}).encode()
    too_large = json.dumps({"name": "huge", "fields": fields, "list_rule": "x" * 60_000}).encode()

    async def run() -> list[tuple[int, dict[bytes, bytes], bytes]]:
        return [
            await call(handler, "POST", "/api/v1/collections/", small, auth, chunk=7),
            await call(handler, "POST", "/api/v1/collections/", spooled, auth, chunk=999),
            await call(handler, "POST", "/api/v1/collections/", too_large, auth, chunk=4096),
        ]

    made_small, made_spooled, refused = asyncio.run(run())
    assert made_small[0] == 201, made_small
    assert made_spooled[0] == 201, made_spooled
    assert json.loads(made_spooled[2])["list_rule"].strip() == 'title = "x"'
    assert refused[0] == 413
    assert json.loads(refused[2])["code"] == "request_too_large"


def test_async_view_routing_remembers_only_short_paths() -> None:
    from fastcms import pooled

    pooled._remembered_async_view_at.cache_clear()
    assert pooled._async_view_at("/api/v1/presence") is True
    assert pooled._async_view_at("/api/v1/collections/") is False
    long_path = "/api/v1/collections/" + "x" * 10_000 + "/records/"
    assert pooled._async_view_at(long_path) is False
    assert pooled._remembered_async_view_at.cache_info().currsize == 2  # the long path was not kept


def test_shutdown_does_not_wait_for_a_stuck_request(transactional_db: None) -> None:
    handler = PooledRequestHandler(threads=2)
    release = threading.Event()
    stuck = handler.pool.submit(release.wait)  # a request that never ends by itself
    closer = threading.Thread(target=handler.close, kwargs={"timeout": 0.1})
    closer.start()
    closer.join(30)
    try:
        assert not closer.is_alive()  # closed the idle thread's connection and returned
        assert not stuck.done()
    finally:
        release.set()
