"""What an asyncio Redis call raises when Redis is away, for the handlers that answer "unavailable".

redis-py's own errors, the socket's, a timeout, and `RuntimeError`: under uvloop, redis-py
writing to a connection the server (or a proxy) already closed gets "unable to perform operation
on <TCPTransport closed=True>" from the transport instead of a connection error. redis-py drops
that connection before the error reaches us, so the next call connects afresh; until then the
caller must answer as for any outage (a 503), never with a 500.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis

UNREACHABLE: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError, RuntimeError)

T = TypeVar("T")


async def again_if_stale(call: Callable[[], Awaitable[T]]) -> T:
    """`call()`, made once more when the first found its pooled connection closed under it (the
    RuntimeError above; the connection is gone by then, so the second call connects afresh). A
    connection that died while idle costs nobody a 503 while Redis answers; other errors pass."""
    try:
        return await call()
    except RuntimeError:
        return await call()
