"""Presence of this process's streams (the default without Redis)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from presence.backends.base import PresenceBackend, announce
from presence.conf import presence_settings
from realtime.events import USER_JOINED, USER_LEFT, now_iso


@dataclass
class _Present:
    name: str | None
    connections: set[str] = field(default_factory=set)
    last_seen: str = field(default_factory=now_iso)
    leaving: asyncio.TimerHandle | None = None


class MemoryPresence(PresenceBackend):
    """Presence of this process's streams (runs on the event loop)."""

    def __init__(self) -> None:
        self.present: dict[str, _Present] = {}

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
        user.name = user_name  # the newest connection's name, as with Redis
        user.last_seen = now_iso()

    async def disconnect(self, connection_id: str, user_id: str) -> None:
        user = self.present.get(user_id)
        if user is None or connection_id not in user.connections:
            return
        user.connections.discard(connection_id)
        user.last_seen = now_iso()
        if not user.connections:
            loop = asyncio.get_running_loop()
            user.leaving = loop.call_later(presence_settings.FASTCMS_PRESENCE_GRACE, self._leave, user_id)

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
