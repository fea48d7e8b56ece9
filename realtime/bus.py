"""The event bus: publish from any thread, fan out on the event loop to matching subscribers.

Publishing goes through a backend, which gives each event its id and keeps the replay history:
`MemoryBackend` in this process (the default), `RedisBackend` (`realtime.redis_backend`) across
workers. Delivery is local: each process's bus matches events to its own subscribers, in memory,
with each subscriber's list rule and live query compiled once per collection version.

Subscribers of one collection are indexed by collection and, when their live query requires
`field = value`, by that value, so an event is matched only against subscribers it can concern.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from django.conf import settings

from collections_app.query import FALSE, TRUE, Auth, Condition, Node, QueryError, compile_query, read_value
from collections_app.rules import rule_condition_for
from collections_app.schema import SYSTEM_FIELDS
from realtime.events import (
    COLLECTION_DELETED,
    COLLECTION_TYPES,
    ID_ONLY,
    PRESENCE_TYPES,
    PUBLIC,
    RECORD_TYPES,
    STAFF,
    CollectionInfo,
    Event,
)

logger = logging.getLogger(__name__)

OVERFLOW, MAX_AGE, SHUTDOWN, COLLECTION_GONE = "overflow", "max_age", "shutdown", "collection_deleted"
UNDECIDED = object()
ABANDONED = "fastcms: stream abandoned"  # the cancel message the stream handler recognises


class Backend(Protocol):
    """Gives events ids, keeps the history and carries events to every process's bus."""

    def attach(self, deliver: Callable[[Event], None]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def append(self, event: Event) -> None: ...
    def last_id(self) -> str: ...
    async def history_after(self, last_id: str) -> tuple[list[Event], bool]: ...
    def id_key(self, event_id: str) -> tuple[int, int]: ...


def parse_id(event_id: str) -> tuple[int, int] | None:
    """`<ms>-<seq>` (both backends' id form) as a sortable pair; None if malformed."""
    if event_id == "0":
        return (0, 0)
    head, sep, tail = event_id.partition("-")
    # ASCII digits only (`isdigit` also takes "²"), each part within Redis's 64-bit range.
    if not sep or len(event_id) > 41 or not (head + tail).isascii() or not head.isdigit() or not tail.isdigit():
        return None
    key = (int(head), int(tail))
    return key if max(key) < 2**64 else None


class MemoryBackend:
    """Ids and history in this process: ids are `<boot ms>-<seq>`, so a restart never reuses one."""

    def __init__(self, *, size: int, seconds: float) -> None:
        self.size = size
        self.seconds = seconds
        self.boot = int(time.time() * 1000)
        self.seq = 0
        self.history: deque[tuple[float, Event]] = deque()
        self.lock = threading.Lock()
        self.deliver: Callable[[Event], None] = lambda event: None

    def attach(self, deliver: Callable[[Event], None]) -> None:
        self.deliver = deliver

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def append(self, event: Event) -> None:
        # One lock gives ids and hands events to the loop in the same order: the commit order.
        with self.lock:
            self.seq += 1
            event.id = f"{self.boot}-{self.seq}"
            now = time.monotonic()
            self.history.append((now, event))
            self._trim(now)
            self.deliver(event)

    def _trim(self, now: float) -> None:
        while self.history and (len(self.history) > self.size or now - self.history[0][0] > self.seconds):
            self.history.popleft()

    def last_id(self) -> str:
        with self.lock:
            return f"{self.boot}-{self.seq}" if self.seq else "0"

    def id_key(self, event_id: str) -> tuple[int, int]:
        return parse_id(event_id) or (0, 0)

    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        key = parse_id(last_id)
        with self.lock:
            self._trim(time.monotonic())
            first = self.seq - len(self.history) + 1  # seq of the oldest kept event
            if key is None or (key != (0, 0) and (key[0] != self.boot or key[1] > self.seq)):
                return [], False
            seq = key[1] if key != (0, 0) else 0
            if seq < first - 1:
                return [], False
            return [event for _, event in list(self.history)[seq - first + 1 :]], True


class Subscriber:
    """One open stream: who is asking, what it wants, and its bounded queue of frames."""

    __slots__ = (
        "auth",
        "backlog",
        "client_id",
        "client_key",
        "closed",
        "collection_id",
        "collection_name",
        "compiled",
        "index_key",
        "kind",
        "last_write",
        "lenient",
        "opened",
        "ping_due",
        "presence",
        "query",
        "queue",
        "sending",
        "skip_until",
        "staff",
        "task",
        "waiter",
    )

    def __init__(
        self,
        *,
        client_id: str,
        auth: Auth,
        staff: bool,
        query: Node | None,
        collection: CollectionInfo | None = None,
        client_key: str = "",
        compiled: tuple[Condition | None, Condition] | None = None,
    ) -> None:
        self.client_id = client_id
        self.auth = auth
        self.staff = staff
        self.query = query
        self.collection_id = collection.id if collection else None
        self.collection_name = collection.name if collection else None
        self.lenient = collection is None  # the all-collections stream
        self.client_key = client_key
        self.queue: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed: str | None = None
        self.opened = self.last_write = time.monotonic()
        self.ping_due = False
        self.sending = False
        self.task: asyncio.Task[Any] | None = None
        self.compiled: dict[str, tuple[str, Condition | None, Condition]] = {}
        self.index_key: tuple[str, Any] | None = None
        self.backlog: list[tuple[Event, str, CollectionInfo | None]] | None = None
        self.skip_until: tuple[int, int] | None = None  # newest replayed id: later live copies are dropped
        self.presence: Any = None
        # Subscribers of one kind see every event alike: dispatch decides once per kind. A string,
        # so its hash is computed once.
        self.kind = "\x00".join(map(str, (auth.id, auth.username, staff, self.lenient, repr(query))))
        if collection is not None:
            # A one-collection stream is compiled strictly (errors are 400 before it starts);
            # `compiled` is that work when the caller has already done it.
            if compiled is not None:
                self.compiled[collection.id] = (collection.version, *compiled)
            _, query_condition = self.conditions(collection, strict=True)
            equalities = query_condition.equalities()
            self.index_key = equalities[0] if equalities else None

    def conditions(self, info: CollectionInfo, *, strict: bool = False) -> tuple[Condition | None, Condition]:
        """(list rule or None when it denies, live query), compiled once per collection version."""
        cached = self.compiled.get(info.id)
        if cached is not None and cached[0] == info.version:
            return cached[1], cached[2]
        rule = rule_condition_for(info, "list_rule", auth=self.auth, staff=self.staff)
        try:
            query = compile_query(
                self.query, fields=info.field_map, auth=self.auth, allow_hidden=self.staff, lenient=not strict
            )
        except QueryError:
            if strict:
                raise
            query = FALSE
        self.compiled[info.id] = (info.version, rule, query)
        return rule, query

    def form_for(self, event: Event, info: CollectionInfo) -> str | None:
        """How this subscriber sees a record event, or None when it must not receive it."""
        rule, query = self.conditions(info)
        if rule is None:
            return None
        form = STAFF if self.staff else PUBLIC
        record = event.data
        if (rule is TRUE or rule.matches(record)) and query.matches(record):
            return form
        previous = event.previous
        if previous is not None and (rule is TRUE or rule.matches(previous)) and query.matches(previous):
            # It left the live query (or the rule): deliver so the client can drop it.
            return form if rule is TRUE or rule.matches(record) else ID_ONLY
        return None

    # --- the queue: producers on the loop, one consumer (the stream) ---------------------------

    def push(self, frame: bytes, limit: int) -> None:
        if self.closed:
            return
        if len(self.queue) >= limit:
            logger.info("stream %s closed: %d events queued for a client that does not read", self.client_id, limit)
            self.close(OVERFLOW)
            return
        self.queue.append(frame)
        self.wake()

    def take(self) -> bytes:
        frames = b"".join(self.queue)
        self.queue.clear()
        return frames

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def close(self, reason: str) -> None:
        """End the stream: queued frames are still sent, except after an overflow."""
        if self.closed:
            return
        self.closed = reason
        if reason == OVERFLOW:
            self.queue.clear()
        if self.sending and self.task is not None and reason == OVERFLOW:
            # Stuck writing to a client that does not read: abandon the response.
            self.task.cancel(ABANDONED)
        self.wake()


class CollectionIndex:
    """The subscribers of one collection: by required equality, or scanned."""

    __slots__ = ("eq", "scan")

    def __init__(self) -> None:
        self.scan: set[Subscriber] = set()
        self.eq: dict[str, dict[Any, set[Subscriber]]] = {}

    def add(self, sub: Subscriber) -> None:
        if sub.index_key is None:
            self.scan.add(sub)
        else:
            name, value = sub.index_key
            self.eq.setdefault(name, {}).setdefault(value, set()).add(sub)

    def discard(self, sub: Subscriber) -> None:
        self.scan.discard(sub)
        if sub.index_key is not None:
            name, value = sub.index_key
            bucket = self.eq.get(name, {}).get(value)
            if bucket is not None:
                bucket.discard(sub)
                if not bucket:
                    del self.eq[name][value]
                    if not self.eq[name]:
                        del self.eq[name]

    def unindex(self) -> None:
        """Scan everyone: after a schema change the indexed values may no longer be comparable."""
        for buckets in self.eq.values():
            for bucket in buckets.values():
                for sub in bucket:
                    sub.index_key = None
                    self.scan.add(sub)
        self.eq.clear()

    def everyone(self) -> Iterable[Subscriber]:
        yield from self.scan
        for buckets in self.eq.values():
            for bucket in buckets.values():
                yield from bucket

    def candidates(self, event: Event, info: CollectionInfo) -> Iterable[Subscriber]:
        yield from self.scan
        seen: set[Subscriber] = set()
        for name, buckets in self.eq.items():
            spec = SYSTEM_FIELDS.get(name) or info.field_map.get(name)
            if spec is None:
                continue
            for record in (event.data, event.previous):
                if record is None:
                    continue
                bucket = buckets.get(read_value(spec, record))
                if bucket:
                    for sub in bucket:
                        if sub not in seen:
                            seen.add(sub)
                            yield sub


class CollectionRegistry:
    """The collections as this process's bus knows them: kept current by collection events and
    re-read from the database every FASTCMS_COLLECTIONS_REFRESH seconds (for changes made by
    processes that do not share the bus), so opening a stream mostly needs no query."""

    def __init__(self) -> None:
        self.by_id: dict[str, CollectionInfo] = {}
        self.by_name: dict[str, CollectionInfo] = {}
        self.loaded_at: float | None = None

    def get(self, collection_id: str) -> CollectionInfo | None:
        return self.by_id.get(collection_id)

    def named(self, name: str) -> CollectionInfo | None:
        return self.by_name.get(name) if not self.stale() else None

    def stale(self) -> bool:
        return self.loaded_at is None or time.monotonic() - self.loaded_at >= settings.FASTCMS_COLLECTIONS_REFRESH

    def remember(self, info: CollectionInfo) -> bool:
        """Keep `info` unless a later version is known; True when it replaced an older one."""
        known = self.by_id.get(info.id)
        if known is not None and known.version >= info.version:
            return False
        if known is not None and self.by_name.get(known.name) is known:
            del self.by_name[known.name]
        self.by_id[info.id] = info
        self.by_name[info.name] = info
        return known is not None

    def forget(self, collection_id: str) -> None:
        known = self.by_id.pop(collection_id, None)
        if known is not None and self.by_name.get(known.name) is known:
            del self.by_name[known.name]

    def replace_all(self, infos: list[CollectionInfo], read_at: float) -> None:
        """The database's collections, read at `read_at` (events dispatched since stay newer)."""
        current = {info.id for info in infos}
        for collection_id in list(self.by_id):
            if collection_id not in current:
                self.forget(collection_id)
        for info in infos:
            self.remember(info)
        self.loaded_at = read_at


class AdmissionError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class EventBus:
    """The registry of this process's subscribers, fed by a backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[Subscriber] = set()
        self.global_subs: set[Subscriber] = set()
        self.by_collection: dict[str, CollectionIndex] = {}
        self.collections = CollectionRegistry()
        self.per_client: Counter[str] = Counter()
        self.closing = False
        self.tasks: list[asyncio.Task[Any]] = []
        self.tick = 1.0
        self.wheel: dict[int, list[Subscriber]] = {}  # tick number -> streams to look at then
        self.wheel_position = 0  # the last tick number the ticker has emptied
        self.on_close: list[Callable[[Subscriber], None]] = []
        backend.attach(self._hand_to_loop)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop (idempotent): start the backend and the heartbeat ticker."""
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        self.loop = loop
        self.closing = False
        await self.backend.start()
        self.tick = min(1.0, settings.FASTCMS_SSE_HEARTBEAT / 4)
        self.tasks.append(loop.create_task(self._tick(), name="fastcms-bus-ticker"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        await self.backend.stop()
        self.loop = None

    def shutdown(self) -> None:
        """Close every stream (each ends its response cleanly) and refuse new ones."""
        self.closing = True
        for sub in list(self.subscribers):
            sub.close(SHUTDOWN)

    def abandon_stuck(self) -> None:
        """After the shutdown timeout: cancel streams still stuck writing to their clients."""
        for sub in list(self.subscribers):
            if sub.task is not None and not sub.task.done():
                sub.task.cancel(ABANDONED)

    # --- publishing (any thread) ----------------------------------------------------------------

    def publish(self, event: Event) -> None:
        """Give the event an id, keep it in history and deliver it to every matching subscriber."""
        self.backend.append(event)

    def last_event_id(self) -> str:
        """The newest event id, `0` before the first event."""
        return self.backend.last_id()

    def _hand_to_loop(self, event: Event) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self._remember_schema(event)
            return
        try:
            loop.call_soon_threadsafe(self.dispatch, event)
        except RuntimeError:  # the loop closed between the check and the call
            logger.debug("event %s not dispatched: the event loop is closed", event.id)

    # --- delivery (loop thread) -----------------------------------------------------------------

    def _remember_schema(self, event: Event) -> CollectionInfo | None:
        """The newest known version of the event's collection (and remember the event's)."""
        info = event.schema
        if info is None:
            return None
        if event.type == COLLECTION_DELETED:
            self.collections.forget(info.id)
            return info
        if self.collections.remember(info) and info.id in self.by_collection:
            self.by_collection[info.id].unindex()
        return self.collections.get(info.id) or info

    def dispatch(self, event: Event) -> None:
        info = self._remember_schema(event)
        queue_size = settings.FASTCMS_SSE_QUEUE_SIZE
        if event.type in RECORD_TYPES and info is not None:
            index = self.by_collection.get(info.id)
            candidates = index.candidates(event, info) if index else ()
            decided: dict[str, Any] = {}
            for sub in (*candidates, *self.global_subs):
                form = decided.get(sub.kind, UNDECIDED)
                if form is UNDECIDED:
                    form = decided[sub.kind] = sub.form_for(event, info)
                if form is not None:
                    self._deliver(sub, event, form, info, queue_size)
        elif event.type in COLLECTION_TYPES and info is not None:
            index = self.by_collection.get(info.id)
            audience = [*(index.everyone() if index else ()), *self.global_subs]
            for sub in audience:
                if sub.staff or info.list_rule is not None:
                    self._deliver(sub, event, PUBLIC, info, queue_size)
            if event.type == COLLECTION_DELETED and index is not None:
                for sub in list(index.everyone()):
                    sub.close(COLLECTION_GONE)
        elif event.type in PRESENCE_TYPES:
            for sub in self.global_subs:
                self._deliver(sub, event, PUBLIC, None, queue_size)

    def _deliver(self, sub: Subscriber, event: Event, form: str, info: CollectionInfo | None, limit: int) -> None:
        if sub.backlog is not None:
            sub.backlog.append((event, form, info))
            return
        if sub.skip_until is not None:
            # Kept in history before it reached the loop: the replay already sent it.
            if self.backend.id_key(event.id) <= sub.skip_until:
                return
            sub.skip_until = None  # events arrive in id order: nothing later can be a copy
        sub.push(event.frame(form, info), limit)

    # --- subscribing (loop thread) --------------------------------------------------------------

    def admit(self, client_key: str) -> None:
        """Raise AdmissionError when this process or this client has too many streams."""
        if self.closing:
            raise AdmissionError(503, "server_busy", "The server is shutting down.")
        if not getattr(self.backend, "available", True):
            raise AdmissionError(
                503, "realtime_unavailable", "Real-time delivery is unavailable right now; retry shortly."
            )
        if len(self.subscribers) >= settings.FASTCMS_SSE_MAX_CONNECTIONS:
            raise AdmissionError(503, "server_busy", "Too many open streams on this server; retry later.")
        if self.per_client[client_key] >= settings.FASTCMS_SSE_MAX_PER_CLIENT:
            raise AdmissionError(429, "too_many_connections", "Too many open streams for this client.")

    async def subscribe(self, sub: Subscriber, last_event_id: str | None) -> tuple[list[bytes], bool | None]:
        """Register `sub`, then read what it missed: (replayed frames, recovered).

        Registration comes first, so every event dispatched from now on reaches the subscriber;
        events that the history read also returns are dropped from the live backlog by id.
        """
        self.admit(sub.client_key)
        self.subscribers.add(sub)
        self._schedule(sub, time.monotonic())
        self.per_client[sub.client_key] += 1
        if sub.collection_id is None:
            self.global_subs.add(sub)
        else:
            self.by_collection.setdefault(sub.collection_id, CollectionIndex()).add(sub)
        if last_event_id is None:
            return [], None
        sub.backlog = []
        try:
            history, recovered = await self.backend.history_after(last_event_id)
        finally:
            backlog, sub.backlog = sub.backlog, None
        frames: list[bytes] = []
        newest: tuple[int, int] | None = None
        for event in history:
            frame = self._replay_frame(sub, event)
            if frame is not None:
                frames.append(frame)
            newest = self.backend.id_key(event.id)
        for event, form, info in backlog:
            key = self.backend.id_key(event.id)
            if newest is None or key > newest:
                frames.append(event.frame(form, info))
                newest = key
        sub.skip_until = newest
        return frames, recovered

    def _replay_frame(self, sub: Subscriber, event: Event) -> bytes | None:
        """An event from history, checked against the rules and schema as they are now."""
        if event.type in PRESENCE_TYPES:
            return event.frame() if sub.collection_id is None else None
        info = event.schema
        if info is None or (sub.collection_id is not None and sub.collection_id != info.id):
            return None
        current = self.collections.get(info.id) or info
        if current.version < info.version:
            current = info
        if event.type in COLLECTION_TYPES:
            return event.frame(PUBLIC, info) if sub.staff or current.list_rule is not None else None
        if event.type in RECORD_TYPES:
            form = sub.form_for(event, current)
            return event.frame(form, current) if form is not None else None
        return None

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        self.per_client[sub.client_key] -= 1
        if self.per_client[sub.client_key] <= 0:
            del self.per_client[sub.client_key]
        if sub.collection_id is None:
            self.global_subs.discard(sub)
        else:
            index = self.by_collection.get(sub.collection_id)
            if index is not None:
                index.discard(sub)
                if not index.scan and not index.eq:
                    del self.by_collection[sub.collection_id]
        for callback in self.on_close:
            try:
                callback(sub)
            except Exception:
                logger.exception("stream close callback failed")

    # --- heartbeat and maximum age -----------------------------------------------------------------

    def _slot(self, at: float) -> int:
        return int(at / self.tick) + 1

    def _schedule(self, sub: Subscriber, now: float) -> None:
        """File `sub` under the tick when it next needs a look (heartbeat or maximum age)."""
        heartbeat, max_age = settings.FASTCMS_SSE_HEARTBEAT, settings.FASTCMS_SSE_MAX_AGE
        due = min(sub.last_write + heartbeat, sub.opened + max_age)
        # Never into a slot the ticker has passed (or is emptying): it would not be seen again.
        slot = max(self._slot(due), self.wheel_position + 1)
        self.wheel.setdefault(slot, []).append(sub)

    async def _tick(self) -> None:
        """Heartbeats and maximum ages, visiting each stream about once per heartbeat period
        (a timing wheel), not every stream every tick: idle streams cost the loop almost nothing."""
        self.wheel_position = self._slot(time.monotonic()) - 1
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            current = self._slot(now)
            heartbeat, max_age = settings.FASTCMS_SSE_HEARTBEAT, settings.FASTCMS_SSE_MAX_AGE
            while self.wheel_position < current:
                self.wheel_position += 1
                for sub in self.wheel.pop(self.wheel_position, ()):
                    if sub.closed or sub not in self.subscribers:
                        continue
                    if now - sub.opened >= max_age:
                        sub.close(MAX_AGE)
                        continue
                    if now - sub.last_write >= heartbeat and not sub.queue:
                        sub.ping_due = True
                        sub.wake()
                        sub.last_write = now  # the ping about to be written
                    self._schedule(sub, now)


_bus: EventBus | None = None
_bus_lock = threading.Lock()


def get_bus() -> EventBus:
    """The process's bus, created on first use from settings (Redis when REDIS_URL is set)."""
    global _bus
    if _bus is None:
        with _bus_lock:
            if _bus is None:
                _bus = EventBus(_make_backend())
    return _bus


def _make_backend() -> Backend:
    if settings.REDIS_URL:
        from realtime.redis_backend import RedisBackend

        return RedisBackend(
            settings.REDIS_URL, size=settings.FASTCMS_HISTORY_SIZE, seconds=settings.FASTCMS_HISTORY_SECONDS
        )
    return MemoryBackend(size=settings.FASTCMS_HISTORY_SIZE, seconds=settings.FASTCMS_HISTORY_SECONDS)


def reset_bus() -> None:
    """Forget the process's bus (tests)."""
    global _bus
    _bus = None
