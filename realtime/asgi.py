"""The ASGI application: Django for everything, with the SSE streams served so that an open
stream holds no OS thread, plus the lifespan events and a clean end of streams on SIGTERM.

Django's stock `ASGIHandler` runs every request inside asgiref's `ThreadSensitiveContext`, so
the request's sync work (the `request_started` receivers, sync middleware) gets a private thread
that lives as long as the response: one thread per open stream. `StreamHandler` serves the
stream paths without that context and without sync-only middleware, so their brief sync work runs
on asgiref's one shared thread and an idle stream is just a suspended coroutine.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import django
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.utils.module_loading import import_string

from fastcms.logging import install_redaction

logger = logging.getLogger(__name__)

STREAM_PATH = re.compile(r"^/api/v1/realtime(/[^/]+)?/?$")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _async_capable(path: str) -> bool:
    return bool(getattr(import_string(path), "async_capable", False))


class StreamHandler(ASGIHandler):
    """Django's ASGI handler for the stream paths: no per-request thread, lean middleware.

    It runs `FASTCMS_STREAM_MIDDLEWARE` (default: CORS only) instead of `MIDDLEWARE`: Django's
    `MiddlewareMixin` middleware run each hook on asgiref's thread, two thread hops per middleware
    per request, which was most of a stream's set-up time; streams authenticate themselves
    (token or session cookie) and need none of them. Compression is never applied to a stream.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        configured = settings.MIDDLEWARE
        wanted = list(settings.FASTCMS_STREAM_MIDDLEWARE)
        kept = [path for path in wanted if _async_capable(path) and "gzip" not in path.lower()]
        for path in set(wanted) - set(kept):
            logger.warning("FASTCMS_STREAM_MIDDLEWARE: %s is not async-capable or compresses; skipped", path)
        settings.MIDDLEWARE = kept
        try:
            super().load_middleware(is_async=is_async)
        finally:
            settings.MIDDLEWARE = configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send)

    async def send_response(self, response: Any, send: Send) -> None:
        # Event streams go straight to the server, one message per frame; errors as usual.
        stream_to = getattr(response, "stream_to", None)
        if stream_to is None:
            await super().send_response(response, send)
        else:
            await stream_to(send)


class Application:
    """Routes the stream paths to `StreamHandler`, the rest to Django, and handles lifespan."""

    def __init__(self) -> None:
        django.setup(set_prefix=False)
        install_redaction()
        from realtime.bus import get_bus  # needs the app registry set up above

        self.bus = get_bus
        self.django = ASGIHandler()
        self.streams = StreamHandler()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http" and STREAM_PATH.match(scope["path"]):
            await self.streams(scope, receive, send)
        else:
            await self.django(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.bus().start()
                    install_shutdown_hook(asyncio.get_running_loop())
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                bus = self.bus()
                bus.shutdown()
                await bus.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def begin_shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """End every stream now; after the shutdown timeout, abandon those stuck on slow clients."""
    from realtime.bus import get_bus

    bus = get_bus()
    bus.shutdown()
    loop.call_later(settings.FASTCMS_SSE_SHUTDOWN_TIMEOUT, bus.abandon_stuck)


def install_shutdown_hook(loop: asyncio.AbstractEventLoop) -> None:
    """Chain SIGTERM/SIGINT to the server's own handler, ending streams first.

    Without it the server waits for every open stream to end before it exits, which is never.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if getattr(previous, "fastcms_hook", False):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(begin_shutdown, loop)
            if callable(previous):
                previous(signum, frame)

        handler.fastcms_hook = True  # type: ignore[attr-defined]
        signal.signal(sig, handler)
