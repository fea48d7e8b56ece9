"""The event bus: publish from any thread, fan out on the event loop to matching subscribers.

Publishing goes through the backend (`realtime.backends`, chosen by `FASTCMS_EVENT_BACKEND`),
which gives each event its id and keeps the replay history. Delivery is local: each process's
bus matches events to its own subscribers (`realtime.subscribers`), in memory. New streams are
admitted by the backend's `realtime.admission` (per-client limits, cluster-wide with Redis).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

from realtime.admission import AdmissionError, unavailable
from realtime.backends.base import Backend, BackendUnavailable
from realtime.conf import event_backend_path, realtime_settings
from realtime.events import (
    AUTH_REVOKED,
    COLLECTION_DELETED,
    COLLECTION_TYPES,
    PRESENCE_TYPES,
    PUBLIC,
    RECORD_TYPES,
    CollectionInfo,
    Event,
)
from realtime.flushing import FlushGate
from realtime.handler import ABANDONED
from realtime.heartbeat import HeartbeatWheel
from realtime.registry import CollectionRegistry
from realtime.subscribers import COLLECTION_GONE, REVOKED, SHUTDOWN, CollectionIndex, Subscriber
from realtime.subscriptions import LabelIndex, labelled_frame, replay_frame

logger = logging.getLogger(__name__)

UNDECIDED = object()
# How long a revocation is remembered for streams whose credentials were read before it arrived.
REVOCATION_MEMORY = 300.0

# Why a stream ended: this process missed events (they left the history before it read them).
MISSED = "missed_events"

__all__ = ["AdmissionError", "EventBus", "get_bus", "reset_bus"]


class EventBus:
    """The registry of this process's subscribers, fed by a backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.loop: asyncio.AbstractEventLoop | None = None
        self.subscribers: set[Subscriber] = set()
        self.global_subs: set[Subscriber] = set()
        self.by_collection: dict[str, CollectionIndex] = {}
        self.labels = LabelIndex()  # multiplexed streams' labels, apart: ordinary streams pay nothing for them
        # The newest event id dispatched here (or passed by, with no loop to dispatch on): a new
        # subscriber receives every later event, so this is its `cursor`. None: none yet.
        self.cursor: str | None = None
        self.by_user: dict[str, set[Subscriber]] = {}  # authenticated streams, by user id
        # user id -> when its last revocation arrived here, oldest first (forgotten after a while)
        self.revoked_at: OrderedDict[str, float] = OrderedDict()
        self.collections = CollectionRegistry()
        self.admission = backend.make_admission()
        self.admitting = 0  # streams between admission and registration
        self.closing = False
        self.tasks: list[asyncio.Task[Any]] = []
        self.heartbeats = HeartbeatWheel(self.subscribers)
        self.flushes = FlushGate()  # streams with new frames, woken in rounds
        self.on_close: list[Callable[[Subscriber], None]] = []
        backend.attach(self._hand_to_loop, self._missed)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop (idempotent): start the backend and the heartbeat ticker."""
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        self.loop = loop
        self.closing = False
        await self.backend.start()
        self.admission.start()
        self.heartbeats.configure()
        self.tasks.append(loop.create_task(self.heartbeats.run(), name="fastcms-bus-ticker"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        await self.admission.stop()
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
        """Give the event an id, keep it in history and deliver it to every matching subscriber.

        For events of no database write (presence); never waits for anything remote.
        """
        self.backend.append(event)

    def publish_on_commit(self, event: Event) -> None:
        """Publish the event of a database write once the surrounding transaction commits.

        Call it inside the write's transaction: with Redis the event is stored in the same
        transaction (the outbox), so a committed change never loses its event, whatever happens
        to this process or to Redis afterwards. A rolled-back write publishes nothing.
        """
        self.backend.publish_on_commit(event)

    def last_event_id(self) -> str:
        """The newest event id, `0` before the first event."""
        return self.backend.last_id()

    def _missed(self) -> None:
        """End every stream: each client resumes with its last event id and learns (from
        `recovered`) whether it must refetch."""
        logger.warning("this process missed events (history trimmed before it read them); closing streams")
        for sub in list(self.subscribers):
            sub.close(MISSED)

    def _hand_to_loop(self, event: Event) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            self._remember_schema(event)
            self.cursor = event.id
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
        if self.collections.remember(info):
            if info.id in self.by_collection:
                self.by_collection[info.id].unindex()
            self.labels.unindex(info.id)
        return self.collections.get(info.id) or info

    def dispatch(self, event: Event) -> None:
        self._dispatch(event)
        loop = self.loop
        if loop is None or loop.is_closed():
            self.flushes.wake_now()
        else:
            self.flushes.schedule(loop)

    def _dispatch(self, event: Event) -> None:
        if event.type != AUTH_REVOKED:  # internal: never a client's resume point
            self.cursor = event.id
        info = self._remember_schema(event)
        queue_size = realtime_settings.FASTCMS_SSE_QUEUE_SIZE
        queue_bytes = self.backend.max_bytes  # a client further behind could not resume anyway
        if event.type in RECORD_TYPES and info is not None:
            index = self.by_collection.get(info.id)
            candidates = index.candidates(event, info) if index else ()
            decided: dict[str, Any] = {}
            frames: dict[str, bytes] = {}
            woken = self.flushes.pending
            # Per matching stream, the common case inline (at 1,000 streams this loop runs 1,000
            # times per event): the frame of its form, made once, offered; woken in the next round
            # when it had nothing queued.
            for sub in (*candidates, *self.global_subs):
                form = decided.get(sub.kind, UNDECIDED)
                if form is UNDECIDED:
                    form = decided[sub.kind] = sub.form_for(event, info)
                if form is None:
                    continue
                if sub.backlog is not None or sub.skip_until is not None:
                    self._deliver(sub, event, form, info, queue_size, queue_bytes)
                    continue
                frame = frames.get(form)
                if frame is None:
                    frame = frames[form] = event.frame(form, info)
                if sub.offer(frame, queue_size, queue_bytes):
                    woken.append(sub)
        elif event.type in COLLECTION_TYPES and info is not None:
            index = self.by_collection.get(info.id)
            audience = [*(index.everyone() if index else ()), *self.global_subs]
            for sub in audience:
                if sub.staff or info.list_rule is not None:
                    self._deliver(sub, event, PUBLIC, info, queue_size, queue_bytes)
            if event.type == COLLECTION_DELETED and index is not None:
                for sub in list(index.everyone()):
                    sub.close(COLLECTION_GONE)
        elif event.type in PRESENCE_TYPES:
            for sub in self.global_subs:
                self._deliver(sub, event, PUBLIC, None, queue_size, queue_bytes)
        elif event.type == AUTH_REVOKED:
            self._revoke(event)
            return
        if self.labels:
            self._dispatch_labelled(event, info, queue_size, queue_bytes)

    def _revoke(self, event: Event) -> None:
        """End every open stream of the user whose credentials changed (never sent to a client)."""
        user_id = event.data.get("user_id") if isinstance(event.data, dict) else None
        if not isinstance(user_id, str):
            logger.warning("ignored a malformed %s event: %r", AUTH_REVOKED, event.data)
            return
        now = time.monotonic()
        self.revoked_at.pop(user_id, None)
        self.revoked_at[user_id] = now
        while now - next(iter(self.revoked_at.values())) > REVOCATION_MEMORY:
            self.revoked_at.popitem(last=False)
        streams = list(self.by_user.get(user_id, ()))
        for sub in streams:
            sub.close(REVOKED)
        if streams:
            logger.info("credentials of user %s changed: %d open streams closed", user_id, len(streams))

    def _deliver(
        self, sub: Subscriber, event: Event, form: str, info: CollectionInfo | None, limit: int, max_bytes: int
    ) -> None:
        if sub.backlog is not None:
            sub.backlog.append((event, event.frame(form, info)))
            return
        if sub.skip_until is not None:
            # Kept in history before it reached the loop: the replay already sent it.
            if self.backend.id_key(event.id) <= sub.skip_until:
                return
            sub.skip_until = None  # events arrive in id order: nothing later can be a copy
        if sub.offer(event.frame(form, info), limit, max_bytes):
            self.flushes.add(sub)

    def _dispatch_labelled(self, event: Event, info: CollectionInfo | None, limit: int, max_bytes: int) -> None:
        """Multiplexed streams: each gets the event once, naming every label it matched."""
        shared: dict[Any, bytes] = {}
        for stream, (form, labels, left) in self.labels.hits(event, info).items():
            frame = labelled_frame(event, form, info, labels, left, shared)
            if stream.backlog is not None:
                stream.backlog.append((event, frame))
            elif stream.skip_until is None or self.backend.id_key(event.id) > stream.skip_until:
                stream.skip_until = None
                if stream.offer(frame, limit, max_bytes):
                    self.flushes.add(stream)
        if event.type == COLLECTION_DELETED and info is not None:
            # The deleted collection's labels end; a stream left with no label ends too.
            for label in self.labels.of_collection(info.id):
                self.labels.drop(label)
                if not label.stream.subscriptions:
                    label.stream.close(COLLECTION_GONE)

    # --- subscribing (loop thread) --------------------------------------------------------------

    async def admit(self, sub: Subscriber) -> None:
        """Hold a place for `sub` or raise AdmissionError: 503 when this process is closing, full
        or cannot deliver now; 429 when its client has too many streams, or opened too many in the
        last minute (the backend's admission: cluster-wide with Redis). Answers within seconds
        whatever Redis does. `release` gives the place back (`unsubscribe` calls it)."""
        if self.closing:
            raise AdmissionError(503, "server_busy", "The server is shutting down.")
        if not self.backend.available:
            raise unavailable()
        if len(self.subscribers) + self.admitting >= realtime_settings.FASTCMS_SSE_MAX_CONNECTIONS:
            raise AdmissionError(503, "server_busy", "Too many open streams on this server; retry later.")
        self.admitting += 1
        try:
            await self.admission.admit(sub.client_key, sub.client_id)
        finally:
            self.admitting -= 1

    def release(self, sub: Subscriber) -> None:
        """Give back the place `admit` held for `sub`."""
        self.admission.release(sub.client_key, sub.client_id)

    async def subscribe(
        self, sub: Subscriber, last_event_id: str | None, checked_at: float | None = None
    ) -> tuple[list[bytes], bool | None]:
        """Register `sub`, then read what it missed: (replayed frames, recovered).

        Registration comes first, so every event dispatched from now on reaches the subscriber;
        events that the history read also returns are dropped from the live backlog by id.
        `checked_at` (monotonic) is when the stream's credentials were read: a revocation of its
        user that arrived since closes it at once (the client reconnects and is judged anew).
        """
        await self.admit(sub)
        self.subscribers.add(sub)
        self.heartbeats.schedule(sub, time.monotonic())
        if sub.subscriptions:
            self.labels.add(sub)
        elif sub.collection_id is None:
            self.global_subs.add(sub)
        else:
            self.by_collection.setdefault(sub.collection_id, CollectionIndex()).add(sub)
        sub.cursor = self.cursor if self.cursor is not None else self.backend.last_id()
        user_id = sub.auth.id
        if user_id is not None:
            self.by_user.setdefault(user_id, set()).add(sub)
            revoked = self.revoked_at.get(user_id)
            if revoked is not None and checked_at is not None and revoked >= checked_at:
                sub.close(REVOKED)
        if last_event_id is None:
            return [], None
        sub.backlog = []
        try:
            history, recovered = await self.backend.history_after(last_event_id)
        except BackendUnavailable as exc:
            raise AdmissionError(503, "realtime_unavailable", str(exc)) from exc
        finally:
            backlog, sub.backlog = sub.backlog, None
        frames: list[bytes] = []
        newest: tuple[int, int] | None = None
        for event in history:
            frame = self._replay_frame(sub, event)
            if frame is not None:
                frames.append(frame)
            newest = self.backend.id_key(event.id)
        for event, frame in backlog:
            key = self.backend.id_key(event.id)
            if newest is None or key > newest:
                frames.append(frame)
                newest = key
        sub.skip_until = newest
        return frames, recovered

    def _replay_frame(self, sub: Subscriber, event: Event) -> bytes | None:
        """An event from history, checked against the rules and schema as they are now."""
        if sub.subscriptions:
            return replay_frame(sub, event, self._current(event.schema))
        if event.type in PRESENCE_TYPES:
            return event.frame() if sub.collection_id is None else None
        info = event.schema
        if info is None or (sub.collection_id is not None and sub.collection_id != info.id):
            return None
        current = self._current(info)
        if event.type in COLLECTION_TYPES:
            return event.frame(PUBLIC, info) if sub.staff or current.list_rule is not None else None
        if event.type in RECORD_TYPES:
            form = sub.form_for(event, current)
            return event.frame(form, current) if form is not None else None
        return None

    def _current(self, info: CollectionInfo | None) -> CollectionInfo | None:
        """The newest known version of a collection (the event's own, if it is newer)."""
        if info is None:
            return None
        current = self.collections.get(info.id) or info
        return info if current.version < info.version else current

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub not in self.subscribers:
            return
        self.subscribers.discard(sub)
        self.release(sub)
        user_subs = self.by_user.get(sub.auth.id) if sub.auth.id is not None else None
        if user_subs is not None:
            user_subs.discard(sub)
            if not user_subs:
                del self.by_user[sub.auth.id]
        if sub.subscriptions:
            self.labels.remove(sub)
        elif sub.collection_id is None:
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


_bus: EventBus | None = None
_bus_lock = threading.Lock()


def get_bus() -> EventBus:
    """The process's bus, created on first use with the backend that `FASTCMS_EVENT_BACKEND` names."""
    global _bus
    if _bus is None:
        with _bus_lock:
            if _bus is None:
                _bus = EventBus(_make_backend())
    return _bus


def _make_backend() -> Backend:
    backend_class = import_string(event_backend_path())
    return backend_class(
        size=realtime_settings.FASTCMS_HISTORY_SIZE,
        seconds=realtime_settings.FASTCMS_HISTORY_SECONDS,
        max_bytes=realtime_settings.FASTCMS_HISTORY_BYTES,
    )


def reset_bus() -> None:
    """Forget the process's bus (tests)."""
    global _bus
    _bus = None
