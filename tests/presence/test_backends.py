"""What every presence backend does alike, on the backend itself (Redis: against a real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import pytest

from presence.backends.base import PresenceBackend
from presence.backends.memory import MemoryPresence


def memory() -> PresenceBackend:
    return MemoryPresence()


def redis() -> PresenceBackend:
    from presence.backends.redis import RedisPresence

    return RedisPresence()


async def shut(backend: Any) -> None:
    maintainer = getattr(backend, "maintainer", None)
    if maintainer is not None:
        maintainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await maintainer
    if hasattr(backend, "client"):
        await backend.client.aclose()
        await backend.client.connection_pool.disconnect()


@pytest.mark.parametrize("make", [memory, pytest.param(redis, marks=pytest.mark.redis)])
def test_a_user_shows_the_name_of_its_newest_connection(make: Any) -> None:
    user_id = f"renamed-{uuid.uuid4().hex}"

    async def scenario() -> dict[str, Any]:
        backend = make()
        try:
            await backend.connect("first", user_id, "Old Name")
            await backend.connect("second", user_id, "New Name")
            return {user["user_id"]: user for user in await backend.users()}[user_id]
        finally:
            await shut(backend)

    user = asyncio.run(scenario())
    assert user["user_name"] == "New Name"
    assert user["connections"] == 2


# --- Redis: interleavings the live tests cannot time -------------------------------------------


def live_connections(backend: Any, user_id: str) -> int:
    """How many connections of `user_id` Redis holds that have not expired."""
    import redis as redis_client
    from django.conf import settings

    from presence.backends.redis import now_ms

    client = redis_client.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.zcount(backend.conns_prefix + user_id, now_ms(), "+inf"))
    finally:
        client.close()


@pytest.mark.redis
def test_a_refresh_that_reaches_redis_after_a_close_does_not_bring_the_connection_back() -> None:
    from presence.backends.redis import RedisPresence

    backend = RedisPresence()
    user_id = f"refresh-{uuid.uuid4().hex}"

    async def scenario() -> None:
        await backend.connect("kept", user_id, None)
        await backend.connect("closed", user_id, None)
        taken = list(backend.local.items())  # the upkeep's view of this worker, just before...
        await backend.disconnect("closed", user_id)  # ...a close whose removal reaches Redis first
        await backend._refresh(taken)
        await shut(backend)

    asyncio.run(scenario())
    assert live_connections(backend, user_id) == 1


@pytest.mark.redis
def test_a_refresh_keeps_open_connections() -> None:
    from presence.backends.redis import RedisPresence

    backend = RedisPresence()
    user_id = f"refresh-{uuid.uuid4().hex}"

    async def scenario() -> None:
        await backend.connect("open", user_id, None)
        await backend.client.zadd(backend.conns_prefix + user_id, {"open": 1})  # about to expire
        await backend._refresh(list(backend.local.items()))
        await shut(backend)

    asyncio.run(scenario())
    assert live_connections(backend, user_id) == 1
