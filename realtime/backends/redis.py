"""The bus backend for several workers: one Redis Stream is the cluster's event log.

- The log (`realtime.backends.redis_log`) gives every event its cluster-wide id (`<ms>-<seq>`)
  and is the replay history, trimmed atomically to its bounds (count, bytes, age).
- The event of a database write is stored in the write's own transaction (the outbox,
  `realtime.models.OutboxEvent`) and appended to the log by a relay thread
  (`realtime.backends.redis_relay`): woken by the commit on the writing worker, and sweeping for
  rows left behind on every worker. So a committed change never loses its event, whether Redis
  is away or the worker dies right after the commit: it arrives late, through any live worker.
  Neither a request nor the event loop ever waits for Redis to append.
- Each worker runs one reader (`XREAD BLOCK`) that hands every event, its own included, to the
  local bus, so all workers deliver in the log's order. When Redis does not answer, the reader
  reconnects with backoff and resumes from the last id it read; new streams are refused with
  503 meanwhile. If the log trimmed events before this worker read them, its streams are ended
  so their clients resume (and learn from `recovered` that they must refetch).
- Stream limits count the whole cluster (`realtime.backends.redis_admission`).

Chosen with `FASTCMS_EVENT_BACKEND = "realtime.backends.redis.RedisBackend"`, or by default when
`REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
from collections import OrderedDict
from typing import Any

import redis
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from realtime import outbox
from realtime.admission import Admission
from realtime.backends.base import Backend, BackendUnavailable, parse_id
from realtime.backends.redis_errors import UNREACHABLE, again_if_stale
from realtime.backends.redis_log import (
    APPEND,
    Bounds,
    Entry,
    LogKeys,
    append_args,
    id_key,
    kind_of,
    origin_key,
    parse_entry,
    text,
)
from realtime.backends.redis_relay import Relay
from realtime.conf import realtime_settings
from realtime.events import Event

logger = logging.getLogger(__name__)

READ_BLOCK_MS = 2000
MAX_BACKOFF = 5.0
TRIM_EVERY = 5.0  # seconds between trims when nothing is appended (the age bound)
CHUNK = 1000  # entries per read
LOCAL_LIMIT = 20_000  # events appended by this process, awaiting the reader
UNAVAILABLE = "Real-time delivery is unavailable (Redis does not answer); retry shortly."


def stream_key() -> str:
    return f"{realtime_settings.FASTCMS_REDIS_PREFIX}:events"


class RedisBackend(Backend):
    """The cluster's event log in one Redis Stream; `url` defaults to the REDIS_URL setting."""

    def __init__(self, url: str | None = None, *, size: int, seconds: float, max_bytes: int | None = None) -> None:
        super().__init__(size=size, seconds=seconds, max_bytes=max_bytes)
        self.url = url or realtime_settings.REDIS_URL
        if not self.url:
            raise ImproperlyConfigured("The Redis event backend needs REDIS_URL.")
        self.prefix = realtime_settings.FASTCMS_REDIS_PREFIX
        self.keys = LogKeys.for_prefix(self.prefix)
        self.key = self.keys.stream
        self.relay = Relay(self.url, self.prefix, self.keys, self.bounds)
        self.reader: aioredis.Redis | None = None
        self.client: aioredis.Redis | None = None
        self.last_read: str | None = None  # the newest id this worker has read from the log
        self.connected = False
        self.task: asyncio.Task[Any] | None = None
        # Events this process appended, by origin key: the reader delivers these objects (their
        # frames already serialised off the loop) instead of parsing the log's copy.
        self.local: dict[str, Event] = {}
        self.origin = secrets.token_hex(6)
        self.counter = itertools.count(1)
        # Parsed events with their estimated bytes, reused by replays; bounded like the history.
        self.recent: OrderedDict[str, tuple[Event, int]] = OrderedDict()
        self.recent_bytes = 0

    @property
    def available(self) -> bool:
        """Whether the log can be read now (new streams are refused with 503 otherwise)."""
        return self.connected

    def bounds(self) -> Bounds:
        return Bounds(size=self.size, seconds=self.seconds, bytes=self.max_bytes)

    def make_admission(self) -> Admission:
        from realtime.backends.redis_admission import RedisAdmission

        return RedisAdmission(self.url, self.prefix)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.reader = aioredis.Redis.from_url(
            self.url, socket_timeout=READ_BLOCK_MS / 1000 + 2, socket_connect_timeout=1
        )
        # History reads: bounded, and quick to give up (a new stream gets a 503, not a hang).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=16, timeout=1, socket_timeout=2, socket_connect_timeout=1
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.trim_script = self.reader.register_script(APPEND)
        self.task = asyncio.get_running_loop().create_task(self._read_forever(), name="fastcms-redis-reader")
        self.relay.start()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await asyncio.get_running_loop().run_in_executor(None, self.relay.stop)
        for client in (self.reader, self.client):
            if client is not None:
                await client.aclose()
        self.connected = False

    # --- writing (any thread; never waits for Redis) --------------------------------------------

    def _new_key(self) -> str:
        # Unique in the cluster, even for processes forked after this backend was made.
        return f"{os.getpid():x}-{self.origin}.{next(self.counter)}"

    def append(self, event: Event) -> None:
        """Queue an event of no database write (presence) for the relay thread."""
        key = self._new_key()
        self._keep_local(key, event)
        self.relay.enqueue(Entry(kind_of(event.type), key, event.to_wire()))

    def publish_on_commit(self, event: Event) -> None:
        """Store the event in the write's transaction; wake the relay when it commits."""
        key = self._new_key()
        outbox.stage(self.prefix, key, event.type, event.to_wire())
        transaction.on_commit(lambda: self._committed(key, event), robust=True)

    def _committed(self, key: str, event: Event) -> None:
        if self.task is not None:  # a process that reads the log (not a management command)
            self._keep_local(key, event)
        self.relay.wake()

    def _keep_local(self, key: str, event: Event) -> None:
        # Bounded: while Redis is away nothing is read back, and the reader parses what it misses.
        if len(self.local) < LOCAL_LIMIT:
            self.local[key] = event

    # --- reading (the event loop) ---------------------------------------------------------------

    async def _read_forever(self) -> None:
        delay = 0.1
        trimmed_at = time.monotonic()
        while True:
            try:
                if self.last_read is None:
                    await self._find_start()
                if not self.connected:
                    await self.reader.ping()  # answers: new streams may be served again
                    logger.info("reading events from Redis after %s", self.last_read)
                    self.connected = True
                await self._read_once()
                delay = 0.1
                if time.monotonic() - trimmed_at > TRIM_EVERY:
                    trimmed_at = time.monotonic()
                    await self.trim_script(keys=self.keys.as_list(), args=append_args([], self.bounds()))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                if self.connected:
                    logger.warning("lost Redis (%s); reconnecting", exc)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception:
                logger.exception("the event reader failed; retrying")
                await asyncio.sleep(delay)

    async def _find_start(self) -> None:
        """Start after the newest event (or the newest trimmed one, if later)."""
        async with self.reader.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self.key, count=1)
            pipe.get(self.keys.trimmed)
            newest, trimmed = await pipe.execute()
        candidates = [text(newest[0][0]) if newest else "0-0", text(trimmed) or "0-0"]
        self.last_read = max(candidates, key=lambda value: id_key(value) or (0, 0))

    async def _read_once(self) -> None:
        """Deliver what follows `last_read` (waiting up to READ_BLOCK_MS for it)."""
        before = self.last_read
        # The watermark is read after the entries: if it is past where this read started, events
        # after that point were trimmed before this worker read them.
        async with self.reader.pipeline(transaction=False) as pipe:
            pipe.xread({self.key: before}, block=READ_BLOCK_MS, count=CHUNK)
            pipe.get(self.keys.trimmed)
            reply, trimmed = await pipe.execute()
        for _, entries in reply or ():
            for raw_id, fields in entries:
                event_id = text(raw_id)
                self.last_read = event_id
                event = self._event(event_id, fields)
                if event is not None:
                    self.deliver(event)
        mark = id_key(trimmed)
        if mark is not None and mark > (id_key(before) or (0, 0)):
            self.missed()
            if mark > (id_key(self.last_read) or (0, 0)):
                self.last_read = text(trimmed)

    def _event(self, event_id: str, fields: dict[Any, Any]) -> Event | None:
        """The event of an entry: this process's own object, a recently parsed one, or parsed now
        (None for a malformed entry, which is skipped and logged)."""
        known = self.recent.get(event_id)
        if known is not None:
            return known[0]
        key = origin_key(fields)
        event = self.local.pop(key, None) if key is not None else None
        if event is not None:
            event.id = event_id
        else:
            event = parse_entry(event_id, fields)
            if event is None:
                return None
        cost = event.footprint()
        self.recent[event_id] = (event, cost)
        self.recent_bytes += cost
        while self.recent and (len(self.recent) > min(self.size, 20000) or self.recent_bytes > self.max_bytes):
            self.recent_bytes -= self.recent.popitem(last=False)[1][1]
        if len(self.local) >= LOCAL_LIMIT * 0.9:  # stale ones (relayed elsewhere before their callback ran)
            for stale in list(self.local)[: LOCAL_LIMIT // 10]:
                self.local.pop(stale, None)
        return event

    # --- queries ----------------------------------------------------------------------------------

    def last_id(self) -> str:
        """The newest id this worker has read, `0` before it has read any: at most as new as the
        log, so a snapshot taken after it and a stream resumed from it miss nothing. Never asks
        Redis (REST reads call it)."""
        if self.last_read is None or self.last_read == "0-0":
            return "0"
        return self.last_read

    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        if self.client is None or not self.connected:
            raise BackendUnavailable(UNAVAILABLE)
        key = parse_id(last_id)
        if key is None:
            return [], False  # not an id this server could have issued
        try:
            events = await again_if_stale(lambda: self._read_after("-" if key == (0, 0) else f"({last_id}"))
            trimmed, origin, newest = await again_if_stale(self._log_marks)
        except UNREACHABLE as exc:
            raise BackendUnavailable(UNAVAILABLE) from exc
        mark = id_key(trimmed)
        if key == (0, 0):
            return (events, True) if mark is None else ([], False)
        latest = max(mark or (0, 0), id_key(newest[0][0]) if newest else (0, 0))
        first = id_key(origin)
        # From another log (Redis restarted empty), from the future, or trimmed since.
        if first is None or key < first or key > latest or (mark is not None and key < mark):
            return [], False
        return events, True

    async def _log_marks(self) -> list[Any]:
        """[the trimmed mark, the log's origin, its newest entry], in one round trip."""
        if self.client is None:
            raise BackendUnavailable("Real-time delivery has not started.")
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.trimmed)
            pipe.get(self.keys.origin)
            pipe.xrevrange(self.key, count=1)
            return await pipe.execute()

    async def _read_after(self, start: str) -> list[Event]:
        if self.client is None:
            raise BackendUnavailable("Real-time delivery has not started.")
        events: list[Event] = []
        while True:
            entries = await self.client.xrange(self.key, min=start, max="+", count=CHUNK)
            for raw_id, fields in entries:
                event = self._event(text(raw_id), fields)
                if event is not None:
                    events.append(event)
            if len(entries) < CHUNK:
                return events
            start = f"({text(entries[-1][0])}"
