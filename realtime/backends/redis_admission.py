"""Stream limits for the whole cluster, kept in Redis.

Keys (prefix `FASTCMS_REDIS_PREFIX`): `<p>:streams:<client>`, a sorted set of the client's open
streams scored by an expiry that the worker holding each stream pushes forward (like presence
connections), so a dead worker's streams stop counting within `FASTCMS_PRESENCE_TTL`; and
`<p>:opens:<client>`, the client's stream opens of the last minute. One Lua script checks both
limits and holds the place, so opens racing on several workers never overshoot. Redis time is
used throughout, so workers' clocks do not matter.

Every call runs on the event loop with a short timeout: when Redis does not answer, a new stream
is refused with 503 `realtime_unavailable` within about a second; releases and refreshes are
retried in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis

from realtime.admission import WINDOW, Admission, too_many_open, too_many_opens, unavailable
from realtime.backends.redis_errors import UNREACHABLE, again_if_stale
from realtime.conf import realtime_settings

logger = logging.getLogger(__name__)

ADMIT_TIMEOUT = 1.0  # seconds; the whole admission answers well within a new stream's 3 s
MAINTAIN_TIMEOUT = 2.0
REFRESH_CHUNK = 500

REDIS_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: open streams, recent opens. ARGV: stream id, ttl ms, max open, max opens, window ms.
# Returns {0, 0} when admitted, {1, 0} when too many are open, {2, ms to wait} when too many opened.
ADMIT = (
    REDIS_NOW
    + """
local ttl, window = tonumber(ARGV[2]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return {1, 0} end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {2, math.max(1, math.floor(tonumber(oldest[2]) + window - now))}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[2], window)
return {0, 0}
"""
)

# KEYS: open-stream sets; ARGV: ttl ms, then the stream id for each key.
REFRESH = (
    REDIS_NOW
    + """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return #KEYS
"""
)


class RedisAdmission(Admission):
    """The per-client limits counted across every worker sharing the Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=8, timeout=ADMIT_TIMEOUT / 2, socket_timeout=ADMIT_TIMEOUT, socket_connect_timeout=0.5
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self.admit_script = self.client.register_script(ADMIT)
        self.refresh_script = self.client.register_script(REFRESH)
        self.streams_prefix = f"{prefix}:streams:"
        self.opens_prefix = f"{prefix}:opens:"
        self.local: dict[str, str] = {}  # this worker's admitted streams: stream id -> client key
        self.releases: list[tuple[str, str]] = []  # (client key, stream id) still to remove
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None
        self.failing = False  # warn once per outage, not once per refused stream

    @property
    def ttl_ms(self) -> int:
        return int(realtime_settings.FASTCMS_PRESENCE_TTL * 1000)

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._maintain(), name="fastcms-admission")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        # Give back this worker's places now rather than at their expiry (best effort).
        self.releases += [(client_key, stream_id) for stream_id, client_key in self.local.items()]
        self.local.clear()
        with contextlib.suppress(*UNREACHABLE):
            await asyncio.wait_for(self._send_releases(), ADMIT_TIMEOUT)
        await self.client.aclose()

    async def admit(self, client_key: str, stream_id: str) -> None:
        args = [
            stream_id,
            self.ttl_ms,
            realtime_settings.FASTCMS_SSE_MAX_PER_CLIENT,
            realtime_settings.FASTCMS_SSE_OPENS_PER_MINUTE,
            int(WINDOW * 1000),
        ]
        keys = [self.streams_prefix + client_key, self.opens_prefix + client_key]
        try:
            verdict, wait_ms = await asyncio.wait_for(
                again_if_stale(lambda: self.admit_script(keys=keys, args=args)), ADMIT_TIMEOUT
            )
        except UNREACHABLE as exc:
            if not self.failing:
                logger.warning("stream limits unavailable (Redis: %r); new streams get 503 meanwhile", exc)
            self.failing = True
            self.releases.append((client_key, stream_id))  # in case it was held before the answer was lost
            self.wakeup.set()
            raise unavailable() from exc
        if self.failing:
            logger.info("stream limits available again")
            self.failing = False
        if verdict == 1:
            raise too_many_open()
        if verdict == 2:
            raise too_many_opens(int(wait_ms) / 1000)
        self.local[stream_id] = client_key

    def release(self, client_key: str, stream_id: str) -> None:
        if self.local.pop(stream_id, None) is not None:
            self.releases.append((client_key, stream_id))
            self.wakeup.set()

    async def _maintain(self) -> None:
        """Send releases as they come, and push this worker's streams' expiry forward."""
        interval = max(0.2, realtime_settings.FASTCMS_PRESENCE_TTL / 6)
        refreshed = 0.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), interval)
            self.wakeup.clear()
            try:
                # In this order, one task: a refresh never brings back a stream already released.
                await asyncio.wait_for(self._send_releases(), MAINTAIN_TIMEOUT)
                if loop.time() - refreshed >= interval:
                    refreshed = loop.time()
                    await self._refresh()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as exc:
                logger.warning("stream limits: Redis does not answer (%r); retrying", exc)
                await asyncio.sleep(interval)
            except Exception:
                logger.exception("stream limits upkeep failed; retrying")
                await asyncio.sleep(interval)

    async def _send_releases(self) -> None:
        while self.releases:
            batch = self.releases[:1000]
            async with self.client.pipeline(transaction=False) as pipe:
                for client_key, stream_id in batch:
                    pipe.zrem(self.streams_prefix + client_key, stream_id)
                await pipe.execute()
            del self.releases[: len(batch)]

    async def _refresh(self) -> None:
        held = list(self.local.items())
        for start in range(0, len(held), REFRESH_CHUNK):
            chunk = held[start : start + REFRESH_CHUNK]
            keys = [self.streams_prefix + client_key for _, client_key in chunk]
            args = [self.ttl_ms, *(stream_id for stream_id, _ in chunk)]
            await asyncio.wait_for(self.refresh_script(keys=keys, args=args), MAINTAIN_TIMEOUT)
