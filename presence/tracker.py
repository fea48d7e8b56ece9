"""Who is connected: connections counted per user, announced as `user.joined` / `user.left`.

A user joins with its first stream and leaves when its last stream has been closed for the
grace period (so a quick reconnect does not flap). `MemoryPresence` counts this process's
streams; `RedisPresence` (`presence.redis_tracker`) counts the cluster's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

from realtime.bus import get_bus
from realtime.events import USER_JOINED, USER_LEFT, Event, now_iso

logger = logging.getLogger(__name__)


class PresenceTracker(Protocol):
    def start(self) -> None: ...
    async def connect(self, connection_id: str, user_id: str, user_name: str | None) -> None: ...
    async def disconnect(self, connection_id: str, user_id: str) -> None: ...
    async def users(self) -> list[dict[str, Any]]: ...


def announce(event_type: str, user_id: str, user_name: str | None, connections: int, last_seen: str) -> None:
    data = {"user_id": user_id, "user_name": user_name, "connections": connections, "last_seen": last_seen}
    get_bus().publish(Event(type=event_type, collection=None, record_id=None, data=data))


@dataclass
class _Present:
    name: str | None
    connections: set[str] = field(default_factory=set)
    last_seen: str = field(default_factory=now_iso)
    leaving: asyncio.TimerHandle | None = None


class MemoryPresence:
    """Presence of this process's streams (runs on the event loop)."""

    def __init__(self) -> None:
        self.present: dict[str, _Present] = {}

    def start(self) -> None:
        return None

    async def connect(self, connection_id: str, user_id: str, user_name: str | None) -> None:
        user = self.present.get(user_id)
        if user is None:
            user = self.present[user_id] = _Present(name=user_name)
            user.connections.add(connection_id)
            announce(USER_JOINED, user_id, user.name, 1, user.last_seen)
            return
        if user.leaving is not None:  # back within the grace period: no leave, no join
            user.leaving.cancel()
            user.leaving = None
        user.connections.add(connection_id)
        user.last_seen = now_iso()

    async def disconnect(self, connection_id: str, user_id: str) -> None:
        user = self.present.get(user_id)
        if user is None or connection_id not in user.connections:
            return
        user.connections.discard(connection_id)
        user.last_seen = now_iso()
        if not user.connections:
            loop = asyncio.get_running_loop()
            user.leaving = loop.call_later(settings.FASTCMS_PRESENCE_GRACE, self._leave, user_id)

    def _leave(self, user_id: str) -> None:
        user = self.present.get(user_id)
        if user is None or user.connections:
            return
        del self.present[user_id]
        announce(USER_LEFT, user_id, user.name, 0, now_iso())

    async def users(self) -> list[dict[str, Any]]:
        return [
            {
                "user_id": user_id,
                "user_name": user.name,
                "connections": len(user.connections),
                "last_seen": user.last_seen,
            }
            for user_id, user in sorted(self.present.items())
        ]


_tracker: PresenceTracker | None = None


def get_tracker() -> PresenceTracker:
    """The process's tracker: cluster-wide on Redis when REDIS_URL is set."""
    global _tracker
    if _tracker is None:
        if settings.REDIS_URL:
            from presence.redis_tracker import RedisPresence

            _tracker = RedisPresence(settings.REDIS_URL)
        else:
            _tracker = MemoryPresence()
    return _tracker


def _run(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _pending.add(task)
    task.add_done_callback(_finished)


_pending: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("presence update failed", exc_info=task.exception())


def stream_opened(sender: Any, subscriber: Any, user_id: str | None, user_name: str | None, **kwargs: Any) -> None:
    get_tracker().start()
    if user_id is not None:
        _run(get_tracker().connect(subscriber.client_id, user_id, user_name))


def stream_closed(sender: Any, subscriber: Any, user_id: str | None, user_name: str | None, **kwargs: Any) -> None:
    if user_id is not None:
        _run(get_tracker().disconnect(subscriber.client_id, user_id))
