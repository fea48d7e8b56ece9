"""What an asyncio Redis call raises when Redis is away, for the handlers that answer "unavailable".

redis-py's own errors, the socket's, a timeout, and `RuntimeError`: under uvloop, redis-py
writing to a connection the server (or a proxy) already closed gets "unable to perform operation
on <TCPTransport closed=True>" from the transport instead of a connection error. redis-py drops
that connection before the error reaches us, so the next call connects afresh; until then the
caller must answer as for any outage (a 503), never with a 500.
"""

from __future__ import annotations

import redis

UNREACHABLE: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError, RuntimeError)
