"""The ASGI handler of the stream paths: an open stream holds no OS thread.

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
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.urls import ResolverMatch, URLResolver, get_resolver, set_script_prefix, set_urlconf
from django.utils.module_loading import import_string

from realtime.conf import realtime_settings

# The cancel message of a stream abandoned by the bus (stuck writing to a client that does not read).
ABANDONED = "fastcms: stream abandoned"

logger = logging.getLogger(__name__)

STREAM_PATH = re.compile(r"^/api/v1/realtime(/[^/]+)?/?$")
STREAM_URLCONF = "realtime.stream_urls"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_stream_request(scope: Scope) -> bool:
    """Whether `StreamHandler` serves the request: GETs (and HEAD, OPTIONS) on the stream paths.

    A POST there goes to Django's handler: `POST /api/v1/realtime/tokens` is a REST endpoint
    (session and CSRF included), and any other POST is a 405 from the stream view.
    """
    return scope["type"] == "http" and scope.get("method") != "POST" and STREAM_PATH.match(scope["path"]) is not None


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
        wanted = list(realtime_settings.FASTCMS_STREAM_MIDDLEWARE)
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

    def resolve_request(self, request: Any) -> ResolverMatch:
        """The stream view of the request's path, remembered per path: clients open streams on a
        few paths over and over, and resolving one costs about as much as a tenth of the open."""
        set_urlconf(STREAM_URLCONF)
        resolver = get_resolver(STREAM_URLCONF)
        path = request.path_info
        match = _remembered(resolver, path) if len(path) <= REMEMBERED_PATH else resolver.resolve(path)
        request.resolver_match = match
        return match

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one stream request: build it, run the middleware and view, send the response.

        Unlike Django's handler it sends no `request_started`/`request_finished` signals: their
        receivers manage the database connections of the request's thread, and a stream request
        has no thread and uses no connection (its checks ran on the auth pool). That saves a
        thread hop per stream opened.
        """
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error = self.create_request(scope, body)
        response = error
        if request is not None:
            request.urlconf = STREAM_URLCONF
            task = asyncio.current_task()
            watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, task))
            try:
                response = await self.get_response_async(request)
                await self.send_response(response, send)
            except asyncio.CancelledError as exc:
                # The client left, or the bus abandoned a stream stuck on a client that does not read.
                if not (watcher.done() or ABANDONED in exc.args):
                    raise  # the server is cancelling us
                if task is not None:
                    task.uncancel()
            finally:
                watcher.cancel()
        else:
            await self.send_response(response, send)
        body.close()
        if response is not None:
            await sync_to_async(response.close)()

    async def send_response(self, response: Any, send: Send) -> None:
        # Event streams go straight to the server, one message per frame; errors as usual.
        stream_to = getattr(response, "stream_to", None)
        if stream_to is None:
            await super().send_response(response, send)
        else:
            await stream_to(send)


# Paths up to this long are remembered, at most 4,096 of them (a few MB at most); a path that
# does not resolve (a 404) is never remembered, and longer ones are resolved each time.
REMEMBERED_PATH = 256


@lru_cache(maxsize=4096)
def _remembered(resolver: URLResolver, path: str) -> ResolverMatch:
    # Keyed by the resolver too: after `clear_url_caches()` (a changed URLconf) paths resolve anew.
    return resolver.resolve(path)


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[Any] | None) -> None:
    """Cancel the request's task when the client goes away (a stream would otherwise live on)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return
