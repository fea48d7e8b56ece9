"""A subscriber (one open stream) and the index of one collection's subscribers.

A subscriber's list rule and live query are compiled once per collection version. Subscribers of
one collection are indexed by collection and, when their live query requires `field = value`, by
that value, so an event is matched only against subscribers it can concern.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from collections_app.query import FALSE, TRUE, Auth, Condition, Node, QueryError, compile_query, read_value
from collections_app.rules import rule_condition_for
from collections_app.schema import SYSTEM_FIELDS
from realtime.events import ID_ONLY, PUBLIC, STAFF, CollectionInfo, Event
from realtime.handler import ABANDONED

logger = logging.getLogger(__name__)

# Why a stream ended.
OVERFLOW, MAX_AGE, SHUTDOWN, COLLECTION_GONE = "overflow", "max_age", "shutdown", "collection_deleted"
REVOKED = "revoked"  # the user's credentials changed: the client reconnects and is judged anew

# Queued frames are written in chunks of about this size, so a large backlog is never copied whole.
CHUNK = 64 * 1024


def take_chunk(frames: deque[bytes]) -> bytes:
    """Remove and return the oldest frames, joined, up to CHUNK bytes (at least one frame, never
    copied when alone)."""
    first = frames.popleft()
    if not frames or len(first) + len(frames[0]) > CHUNK:
        return first
    taken, size = [first], len(first)
    while frames and size + len(frames[0]) <= CHUNK:
        size += len(frames[0])
        taken.append(frames.popleft())
    return b"".join(taken)


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
        "cursor",
        "index_key",
        "kind",
        "last_write",
        "lenient",
        "opened",
        "ping_due",
        "presence",
        "query",
        "queue",
        "queued_bytes",
        "sending",
        "skip_until",
        "staff",
        "subscriptions",
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
        self.queued_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.closed: str | None = None
        self.opened = self.last_write = time.monotonic()
        self.ping_due = False
        self.sending = False
        self.task: asyncio.Task[Any] | None = None
        self.compiled: dict[str, tuple[str, Condition | None, Condition]] = {}
        self.index_key: tuple[str, Any] | None = None
        self.backlog: list[tuple[Event, bytes]] | None = None  # (event, frame) dispatched during a replay
        self.skip_until: tuple[int, int] | None = None  # newest replayed id: later live copies are dropped
        self.presence: Any = None
        self.subscriptions: tuple[Any, ...] = ()  # a multiplexed stream's labelled subscriptions
        self.cursor = "0"  # the newest event id when the bus registered it: it receives every later one
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

    def push(self, frame: bytes, limit: int, max_bytes: int) -> None:
        """Queue a frame and wake the stream to write it (see `enqueue`)."""
        if self.enqueue(frame, limit, max_bytes):
            self.wake()

    def offer(self, frame: bytes, limit: int, max_bytes: int) -> bool:
        """Queue a frame (see `enqueue`); True when the stream must be woken for it: its queue was
        empty. Frames already waiting mean a wake is already due, or the stream is writing and
        takes the new ones when done."""
        idle = not self.queue
        return self.enqueue(frame, limit, max_bytes) and idle

    def enqueue(self, frame: bytes, limit: int, max_bytes: int) -> bool:
        """Queue a frame (True), without waking the stream; close the stream instead (False) when
        `max_bytes` bytes already wait, or `limit` frames wait while the stream is stuck writing to
        a client that does not read. A stream that is not stuck writes all it has at its next turn,
        so a burst (a worker reading a thousand events from Redis in one step) never closes it."""
        if self.closed:
            return False
        if (self.sending and len(self.queue) >= limit) or (self.queue and self.queued_bytes + len(frame) > max_bytes):
            logger.info(
                "stream %s closed: %d events (%d bytes) queued for a client that does not read",
                self.client_id,
                len(self.queue),
                self.queued_bytes,
            )
            self.close(OVERFLOW)
            return False
        self.queue.append(frame)
        self.queued_bytes += len(frame)
        return True

    def take(self) -> bytes:
        """The queued frames to write next: all of them, or CHUNK bytes' worth when more wait."""
        if self.queued_bytes <= CHUNK:
            frames = b"".join(self.queue)
            self.queue.clear()
            self.queued_bytes = 0
            return frames
        chunk = take_chunk(self.queue)
        self.queued_bytes -= len(chunk)
        return chunk

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
        if reason in (OVERFLOW, REVOKED):
            # Overflow: the client resumes anyway. Revoked: frames chosen on the old credentials.
            self.queue.clear()
            self.queued_bytes = 0
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
