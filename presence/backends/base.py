"""The interface of a presence backend, and how a join or leave is announced."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from realtime.bus import get_bus
from realtime.events import Event


class PresenceUnavailable(Exception):
    """Who is present cannot be known now (the backend's store does not answer)."""


def announce(event_type: str, user_id: str, user_name: str | None, connections: int, last_seen: str) -> None:
    """Publish `user.joined` / `user.left` to every stream on the all-collections endpoint."""
    data = {"user_id": user_id, "user_name": user_name, "connections": connections, "last_seen": last_seen}
    get_bus().publish(Event(type=event_type, collection=None, record_id=None, data=data))


class PresenceBackend(ABC):
    """Counts connections per user; announces a user's first connection and, after the grace
    period, the close of its last one. Runs on the event loop."""

    def start(self) -> None:
        """Begin any upkeep on the running loop (idempotent)."""
        return None

    @abstractmethod
    async def connect(self, connection_id: str, user_id: str, user_name: str | None) -> None:
        """A stream of `user_id` opened."""

    @abstractmethod
    async def disconnect(self, connection_id: str, user_id: str) -> None:
        """A stream of `user_id` closed."""

    @abstractmethod
    async def users(self) -> list[dict[str, Any]]:
        """`[{"user_id", "user_name", "connections", "last_seen"}]`, by user_id; raises
        PresenceUnavailable (within seconds) when that cannot be known now."""
