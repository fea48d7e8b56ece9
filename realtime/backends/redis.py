"""The bus backend for several workers: one Redis Stream is the cluster's event log.

- `XADD` gives every event its cluster-wide id (`<ms>-<seq>`), in the order the writes committed
  on each worker; the stream, trimmed to the history bound (count and age), is the replay history.
- Each worker runs one reader (`XREAD BLOCK`) that hands every event, its own included, to the
  local bus, so all workers deliver in the log's order. Never one connection per subscriber.
- Redis unavailable: writes keep working; their events wait in a local outbox and are appended,
  in order, when Redis answers again (events of a worker that dies meanwhile are lost). The
  reader reconnects with backoff and resumes from the last id it read, so open streams receive
  what was logged meanwhile. New streams are refused with 503 until the history can be read.

Chosen with `FASTCMS_EVENT_BACKEND = "realtime.backends.redis.RedisBackend"`, or by default when
`REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Any

import redis
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured

from realtime.backends.base import Backend, BackendUnavailable, parse_id
from realtime.conf import realtime_settings
from realtime.events import Event

logger = logging.getLogger(__name__)

READ_BLOCK_MS = 5000
MAX_BACKOFF = 5.0


def stream_key() -> str:
    return f"{realtime_settings.FASTCMS_REDIS_PREFIX}:events"


class RedisBackend(Backend):
    """The cluster's event log in one Redis Stream; `url` defaults to the REDIS_URL setting."""

    def __init__(self, url: str | None = None, *, size: int, seconds: float, max_bytes: int | None = None) -> None:
        super().__init__(size=size, seconds=seconds, max_bytes=max_bytes)
        self.url = url or realtime_settings.REDIS_URL
        if not self.url:
            raise ImproperlyConfigured("The Redis event backend needs REDIS_URL.")
        self.key = stream_key()
        self.sync = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)
        self.reader: aioredis.Redis | None = None
        self.client: aioredis.Redis | None = None
        self.last_read: str | None = None  # the newest id this worker has read from the log
        self.connected = False
        self.task: asyncio.Task[Any] | None = None
        self.outbox: deque[Event] = deque()
        self.outbox_lock = threading.Lock()
        self.flusher: threading.Thread | None = None
        # Parsed events with their estimated bytes, reused by replays; bounded like the history.
        self.recent: OrderedDict[str, tuple[Event, int]] = OrderedDict()
        self.recent_bytes = 0
        self.recent_lock = threading.Lock()  # writers' threads and the loop both remember events
        self.loop_thread: int | None = None

    @property
    def available(self) -> bool:
        """Whether the log can be read now (new streams are refused with 503 otherwise)."""
        return self.connected

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop_thread = threading.get_ident()
        self.reader = aioredis.Redis.from_url(
            self.url, socket_timeout=READ_BLOCK_MS / 1000 + 5, socket_connect_timeout=2
        )
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=16, timeout=10, socket_timeout=5, socket_connect_timeout=2
        )
        self.client = aioredis.Redis(connection_pool=pool)  # history reads: bounded, callers wait
        self.task = asyncio.get_running_loop().create_task(self._read_forever(), name="fastcms-redis-reader")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for client in (self.reader, self.client):
            if client is not None:
                await client.aclose()
        self.connected = False

    # --- writing (any thread) -------------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Log the event (its id comes back with it); queue it locally if Redis does not answer."""
        cost = event.footprint()  # before the lock: it may serialise
        with self.outbox_lock:
            # Never wait for Redis on the event loop (presence events): the outbox thread logs them.
            if not self.outbox and threading.get_ident() != self.loop_thread:
                try:
                    event.id = self._xadd(event)
                    self._remember(event, cost)
                    return
                except redis.RedisError as exc:
                    logger.warning("Redis unavailable, keeping events until it returns: %s", exc)
            self.outbox.append(event)
            if self.flusher is None or not self.flusher.is_alive():
                self.flusher = threading.Thread(target=self._flush_outbox, name="fastcms-redis-outbox", daemon=True)
                self.flusher.start()

    def _xadd(self, event: Event) -> str:
        event_id = self.sync.xadd(self.key, {"e": event.to_wire()}, maxlen=self.size, approximate=True)
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def _flush_outbox(self) -> None:
        delay = 0.1
        while True:
            with self.outbox_lock:
                if not self.outbox:
                    return
                try:
                    while self.outbox:
                        event = self.outbox[0]
                        event.id = self._xadd(event)
                        self._remember(event)
                        self.outbox.popleft()
                    if delay > 0.1:
                        logger.info("Redis is back: the events kept meanwhile are logged")
                    return
                except redis.RedisError:
                    pass
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _remember(self, event: Event, cost: int | None = None) -> None:
        """Keep recent events parsed, so the reader and replays reuse their serialised frames;
        as many as the history may hold (count, bytes), the oldest forgotten first."""
        cost = event.footprint() if cost is None else cost
        with self.recent_lock:
            replaced = self.recent.pop(event.id, None)
            if replaced is not None:
                self.recent_bytes -= replaced[1]
            self.recent[event.id] = (event, cost)
            self.recent_bytes += cost
            while self.recent and (len(self.recent) > min(self.size, 20000) or self.recent_bytes > self.max_bytes):
                self.recent_bytes -= self.recent.popitem(last=False)[1][1]

    # --- reading (the event loop) ---------------------------------------------------------------

    async def _read_forever(self) -> None:
        delay = 0.1
        trimmed_at = 0.0
        while True:
            try:
                if self.last_read is None:
                    newest = await self.reader.xrevrange(self.key, count=1)
                    self.last_read = newest[0][0].decode() if newest else "0-0"
                if not self.connected:
                    logger.info("reading events from Redis after %s", self.last_read)
                self.connected = True
                reply = await self.reader.xread({self.key: self.last_read}, block=READ_BLOCK_MS, count=1000)
                for _, entries in reply or ():
                    for raw_id, fields in entries:
                        event_id = raw_id.decode()
                        self.last_read = event_id
                        self.deliver(self._event(event_id, fields))
                delay = 0.1
                if time.monotonic() - trimmed_at > 5:
                    trimmed_at = time.monotonic()
                    oldest = f"{int((time.time() - self.seconds) * 1000)}-0"
                    await self.reader.xtrim(self.key, minid=oldest, approximate=True)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                if self.connected:
                    logger.warning("lost Redis (%s); reconnecting", exc)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception:
                logger.exception("could not handle an event from Redis; skipping it")

    def _event(self, event_id: str, fields: dict[bytes, bytes]) -> Event:
        known = self.recent.get(event_id)
        if known is not None:
            return known[0]
        wire = fields[b"e"]
        event = Event.from_wire(event_id, wire)
        self._remember(event, event.footprint(wire))
        return event

    # --- queries ----------------------------------------------------------------------------------

    def last_id(self) -> str:
        """The newest id this worker has read (at most as new as the log, so a snapshot taken after
        it and a stream resumed from it miss nothing); `0` before the first event."""
        if self.last_read is not None:
            return "0" if self.last_read == "0-0" else self.last_read
        try:
            newest = self.sync.xrevrange(self.key, count=1)
        except redis.RedisError:
            return "0"
        return newest[0][0].decode() if newest else "0"

    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        if self.client is None or not self.connected:
            raise BackendUnavailable("Real-time delivery is unavailable (Redis does not answer); retry shortly.")
        key = parse_id(last_id)
        if key is None:
            return [], False
        try:
            if key == (0, 0):
                info = await self.client.xinfo_stream(self.key)
                if info.get("max-deleted-entry-id", b"0-0") not in (b"0-0", "0-0"):
                    return [], False
                start = "-"
            else:
                if not await self.client.xrange(self.key, min=last_id, max=last_id, count=1):
                    return [], False  # trimmed, or from before a Redis restart: the client refetches
                start = f"({last_id}"
            entries = await self.client.xrange(self.key, min=start, max="+")
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return [], key == (0, 0)
            raise BackendUnavailable("Real-time history is unavailable; retry shortly.") from exc
        except redis.RedisError as exc:
            raise BackendUnavailable(
                "Real-time delivery is unavailable (Redis does not answer); retry shortly."
            ) from exc
        return [self._event(raw_id.decode(), fields) for raw_id, fields in entries], True
