"""The Redis presence backend on its own, against a real Redis: interleavings the live tests cannot time."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
import redis

from presence.backends.redis import RedisPresence

pytestmark = pytest.mark.redis


def live_connections(backend: RedisPresence, user_id: str) -> int:
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return int(client.zcard(backend.conns_prefix + user_id))
    finally:
        client.close()


async def shut(backend: RedisPresence) -> None:
    if backend.maintainer is not None:
        backend.maintainer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await backend.maintainer
    await backend.client.aclose()
    await backend.client.connection_pool.disconnect()


def test_a_refresh_that_reaches_redis_after_a_close_does_not_bring_the_connection_back() -> None:
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


def test_a_refresh_keeps_open_connections() -> None:
    backend = RedisPresence()
    user_id = f"refresh-{uuid.uuid4().hex}"

    async def scenario() -> None:
        await backend.connect("open", user_id, None)
        await backend.client.zadd(backend.conns_prefix + user_id, {"open": 1})  # about to expire
        await backend._refresh(list(backend.local.items()))
        await shut(backend)

    asyncio.run(scenario())
    assert live_connections(backend, user_id) == 1
