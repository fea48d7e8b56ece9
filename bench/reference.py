"""The yardstick: a minimal raw-ASGI SSE broadcaster, served by `uvicorn bench.reference:app`.

`GET /events[?topic=T]` opens a stream: `retry: 3000`, a `connected` event, then every published
event as `id:`, `event:`, `data:` lines (with `topic`, only events whose data has that `topic`).
`POST /publish[?collection=C]` with a JSON object body sends it to every open stream as a
`record.created` event and answers 201. Honest on purpose: each event is serialised once, each
stream has its own asyncio.Queue and is closed when it falls 1,000 events behind, and streams are
indexed by topic, all of which the product can do too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs

QUEUE_LIMIT = 1000
HEARTBEAT_SECONDS = 15.0
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]

Queue = asyncio.Queue[bytes | None]  # None ends the stream
_streams: dict[str | None, set[Queue]] = {None: set()}  # topic -> its streams; None: streams without a topic
_event_ids = itertools.count(1)


def _envelope(event_id: str | None, type_: str, collection: str | None, record_id: str | None, data: Any) -> bytes:
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    envelope = {"id": event_id, "type": type_, "collection": collection, "record_id": record_id}
    return json.dumps({**envelope, "data": data, "timestamp": timestamp}, separators=(",", ":")).encode()


def _deliver(frame: bytes, groups: list[set[Queue]]) -> int:
    """Queue `frame` on every stream in `groups`; a stream already QUEUE_LIMIT behind is closed instead."""
    delivered, overflowing = 0, []
    for group in groups:
        for queue in group:
            if queue.qsize() >= QUEUE_LIMIT:
                overflowing.append((group, queue))
            else:
                queue.put_nowait(frame)
                delivered += 1
    for group, queue in overflowing:
        group.discard(queue)
        queue.put_nowait(None)
    return delivered


async def _body(receive: Any) -> bytes | None:
    """The whole request body; None when the client went away first."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _json(send: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _until_disconnect(receive: Any, queue: Queue) -> None:
    # uvicorn's send() does not fail once the client is gone: only receive() tells, so end the stream from here.
    while (await receive())["type"] != "http.disconnect":
        pass
    queue.put_nowait(None)


async def _events(scope: dict[str, Any], receive: Any, send: Any) -> None:
    topic = parse_qs(scope["query_string"].decode()).get("topic", [None])[0]
    queue: Queue = asyncio.Queue()  # bounded by _deliver's check, which closes the stream instead of blocking
    group = _streams.setdefault(topic, set())
    group.add(queue)  # registered before `connected` is sent, so nothing published after it is missed
    watcher = asyncio.ensure_future(_until_disconnect(receive, queue))
    try:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        hello = _envelope(None, "connected", None, None, {"client_id": secrets.token_hex(8), "topic": topic})
        await send(
            {
                "type": "http.response.body",
                "body": b"retry: 3000\n\nevent: connected\ndata: " + hello + b"\n\n",
                "more_body": True,
            }
        )
        while (frame := await queue.get()) is not None:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        watcher.cancel()
        group.discard(queue)
        if topic is not None and not group:
            _streams.pop(topic, None)


async def _publish(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = await _body(receive)
    if body is None:
        return
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        await _json(send, 400, {"detail": "The body must be a JSON object.", "code": "invalid"})
        return
    collection = parse_qs(scope["query_string"].decode()).get("collection", ["bench"])[0]
    event_id, record_id = str(next(_event_ids)), str(data.get("id") or secrets.token_hex(8)[:15])
    frame = b"id: %s\nevent: record.created\ndata: %s\n\n" % (
        event_id.encode(),
        _envelope(event_id, "record.created", collection, record_id, data),
    )
    topic = data.get("topic") if isinstance(data.get("topic"), str) else None
    groups = [_streams[None]] + ([_streams[topic]] if topic in _streams else [])
    await _json(send, 201, {"id": event_id, "record_id": record_id, "delivered": _deliver(frame, groups)})


async def _heartbeat() -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        _deliver(b": ping\n\n", list(_streams.values()))


async def _lifespan(receive: Any, send: Any) -> None:
    heartbeat: asyncio.Future[None] | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            heartbeat = asyncio.ensure_future(_heartbeat())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if heartbeat is not None:
                heartbeat.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application: `/events` (GET) and `/publish` (POST); everything else is a JSON 404."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        route = (scope["method"], scope["path"])
        if route == ("GET", "/events"):
            await _events(scope, receive, send)
        elif route == ("POST", "/publish"):
            await _publish(scope, receive, send)
        else:
            await _json(send, 404, {"detail": "Not found.", "code": "not_found"})
