"""Cluster-wide presence in Redis.

Each connection is an entry in its user's sorted set, scored by an expiry that its worker keeps
pushing forward; a worker that dies stops doing so, and its connections expire within the TTL.
Joins and leaves are decided by Lua scripts, atomically, so exactly one worker announces each.

Keys (prefix `FASTCMS_REDIS_PREFIX`): `<p>:presence:users` (set of present user ids),
`<p>:presence:conns:<user id>` (sorted set: connection id -> expiry ms), `<p>:presence:meta`
(hash: user id -> {"name", "last_seen"}), `<p>:presence:quiet` (hash: user id -> ms when its last
connection closed, for the grace period).

Every call runs on the event loop and gives up within seconds when Redis does not answer:
`users()` then raises PresenceUnavailable (a 503); the upkeep restores this worker's connections
once Redis answers, and connections closed meanwhile expire into `user.left`.

Chosen with `FASTCMS_PRESENCE_BACKEND = "presence.backends.redis.RedisPresence"`, or by default
when `REDIS_URL` is set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured

from presence.backends.base import PresenceBackend, PresenceUnavailable, announce
from presence.conf import presence_settings
from realtime.backends.redis_errors import UNREACHABLE, again_if_stale
from realtime.conf import realtime_settings
from realtime.events import USER_JOINED, USER_LEFT, now_iso

logger = logging.getLogger(__name__)

USERS_TIMEOUT = 1.0  # seconds; GET /api/v1/presence answers within its 3 s either way

CONNECT = """
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[1])
return redis.call('SADD', KEYS[1], ARGV[1])
"""

DISCONNECT = """
redis.call('ZREM', KEYS[1], ARGV[1])
local meta = redis.call('HGET', KEYS[2], ARGV[2])
if meta then
  local decoded = cjson.decode(meta)
  decoded['last_seen'] = ARGV[3]
  redis.call('HSET', KEYS[2], ARGV[2], cjson.encode(decoded))
end
local live = redis.call('ZCOUNT', KEYS[1], ARGV[4], '+inf')
if live == 0 then redis.call('HSET', KEYS[3], ARGV[2], ARGV[4]) end
return live
"""

# Leaves the user when no live connection is left and the grace period is over; returns the
# user's metadata to the one caller that removed it, nil to everyone else.
LEAVE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[2]) > 0 then return false end
local quiet = redis.call('HGET', KEYS[4], ARGV[1])
if quiet and tonumber(quiet) + tonumber(ARGV[3]) > tonumber(ARGV[2]) then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
local meta = redis.call('HGET', KEYS[3], ARGV[1]) or '{}'
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[2])
return meta
"""


def now_ms() -> int:
    return int(time.time() * 1000)


class RedisPresence(PresenceBackend):
    """Presence of every worker's streams (runs on each worker's event loop)."""

    def __init__(self, url: str | None = None) -> None:
        url = url or realtime_settings.REDIS_URL
        if not url:
            raise ImproperlyConfigured("The Redis presence backend needs REDIS_URL.")
        prefix = f"{realtime_settings.FASTCMS_REDIS_PREFIX}:presence"
        self.users_key = f"{prefix}:users"
        self.meta_key = f"{prefix}:meta"
        self.quiet_key = f"{prefix}:quiet"
        self.conns_prefix = f"{prefix}:conns:"
        # Bounded: bursts of joins and leaves wait for a connection instead of failing. They are
        # background tasks (the loop never waits for them); `users()` has its own short deadline.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=16, timeout=10, socket_timeout=5, socket_connect_timeout=1
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.connect_script = self.client.register_script(CONNECT)
        self.disconnect_script = self.client.register_script(DISCONNECT)
        self.leave_script = self.client.register_script(LEAVE)
        self.local: dict[str, tuple[str, str | None]] = {}  # this worker's connections
        self.maintainer: asyncio.Task[Any] | None = None

    @property
    def ttl_ms(self) -> int:
        return int(presence_settings.FASTCMS_PRESENCE_TTL * 1000)

    def start(self) -> None:
        """Begin the upkeep on this worker (idempotent): any worker may retire a dead one's users."""
        if self.maintainer is None or self.maintainer.done():
            self.maintainer = asyncio.get_running_loop().create_task(self._maintain(), name="fastcms-presence")

    async def connect(self, connection_id: str, user_id: str, user_name: str | None) -> None:
        self.start()
        self.local[connection_id] = (user_id, user_name)
        seen = now_iso()
        meta = json.dumps({"name": user_name, "last_seen": seen})
        keys = [self.users_key, self.conns_prefix + user_id, self.meta_key, self.quiet_key]
        joined = await self.connect_script(keys=keys, args=[user_id, connection_id, now_ms() + self.ttl_ms, meta])
        if joined:
            announce(USER_JOINED, user_id, user_name, 1, seen)

    async def disconnect(self, connection_id: str, user_id: str) -> None:
        if self.local.pop(connection_id, None) is None:
            return
        keys = [self.conns_prefix + user_id, self.meta_key, self.quiet_key]
        live = await self.disconnect_script(keys=keys, args=[connection_id, user_id, now_iso(), now_ms()])
        if live == 0:
            await asyncio.sleep(presence_settings.FASTCMS_PRESENCE_GRACE)
            await self._leave_if_gone(user_id)

    async def _leave_if_gone(self, user_id: str) -> None:
        keys = [self.users_key, self.conns_prefix + user_id, self.meta_key, self.quiet_key]
        meta = await self.leave_script(
            keys=keys, args=[user_id, now_ms(), int(presence_settings.FASTCMS_PRESENCE_GRACE * 1000)]
        )
        if meta is not None:
            name = json.loads(meta).get("name")
            announce(USER_LEFT, user_id, name, 0, now_iso())

    async def users(self) -> list[dict[str, Any]]:
        self.start()
        try:
            return await asyncio.wait_for(again_if_stale(self._users), USERS_TIMEOUT)
        except UNREACHABLE as exc:
            raise PresenceUnavailable(f"Redis does not answer: {exc!r}") from exc

    async def _users(self) -> list[dict[str, Any]]:
        user_ids = sorted(member.decode() for member in await self.client.smembers(self.users_key))
        now = now_ms()
        async with self.client.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zcount(self.conns_prefix + user_id, now, "+inf")
                pipe.hget(self.meta_key, user_id)
            replies = await pipe.execute()
        present = []
        for index, user_id in enumerate(user_ids):
            count, meta = replies[2 * index], replies[2 * index + 1]
            info = json.loads(meta) if meta else {}
            present.append(
                {
                    "user_id": user_id,
                    "user_name": info.get("name"),
                    "connections": count,
                    "last_seen": info.get("last_seen"),
                }
            )
        return present

    async def _refresh(self, connections: list[tuple[str, tuple[str, str | None]]]) -> None:
        """Push the expiry of `connections` (this worker's, as they were a moment ago) forward.

        A connection may close while the refresh waits for Redis; if its removal reached Redis
        first, the refresh has just put it back, so it is removed again here. Otherwise it would
        count as connected until its expiry, the TTL later.
        """
        expiry = now_ms() + self.ttl_ms
        async with self.client.pipeline(transaction=False) as pipe:
            for connection_id, (user_id, _name) in connections:
                pipe.zadd(self.conns_prefix + user_id, {connection_id: expiry})
                pipe.sadd(self.users_key, user_id)  # back after a Redis restart
            await pipe.execute()
        closed = [(cid, user_id) for cid, (user_id, _name) in connections if cid not in self.local]
        if closed:
            async with self.client.pipeline(transaction=False) as pipe:
                for connection_id, user_id in closed:
                    pipe.zrem(self.conns_prefix + user_id, connection_id)
                await pipe.execute()

    async def _maintain(self) -> None:
        """Keep this worker's connections alive, and retire those of workers that died."""
        while True:
            await asyncio.sleep(max(0.2, presence_settings.FASTCMS_PRESENCE_TTL / 6))
            try:
                await self._refresh(list(self.local.items()))
                for member in await self.client.smembers(self.users_key):
                    await self._leave_if_gone(member.decode())
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                logger.warning("presence upkeep failed (Redis: %s); retrying", exc)
