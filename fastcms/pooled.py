"""The ASGI handler of every non-stream request: one thread hop per request, on a bounded pool.

Django's stock `ASGIHandler` runs each request inside asgiref's `ThreadSensitiveContext` with the
middleware in async mode: the `request_started` receivers, each run of sync middleware and the
view hop between the event loop and a thread made for that request (measured: a thread started
and joined per request, five hops, and a new database connection per request because database
connections belong to threads). About half of a REST create's CPU went there.

`PooledRequestHandler` reads the body on the event loop, then does all of the request's
synchronous work (the signals, the middleware in sync mode, the view, rendering) in one call on a
pool of `FASTCMS_REQUEST_THREADS` long-lived threads, then sends the response from the loop. The
threads keep their database connections between requests (`CONN_MAX_AGE`), so at most
`FASTCMS_REQUEST_THREADS` connections per worker, and more concurrent requests wait for a free
thread instead of starting threads without bound. Async views (presence) are served by Django's
own handler on the loop. Each request runs in a copy of the calling
task's context, so context-local state (asgiref `Local`) never leaks from one request to the next.

Memory: a Django request lives in reference cycles, so its body, parsed data and response are
freed by the cyclic collector, not when it ends; and what lived through a young collection waits
for a full one, which the tuned collector (`fastcms.asgi.tune_garbage_collector`) makes rare.
Measured: 2 MB writes added about 6 MB each to a worker, without end. So after every
`GARBAGE_BYTES` of bodies read or sent, a full collection runs once the request is done.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import io
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import IO, Any

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.db import connections
from django.http import HttpResponse, HttpResponseServerError, JsonResponse
from django.urls import Resolver404, resolve, set_script_prefix
from django.utils.functional import cached_property

from realtime.handler import Receive, Scope, Send

logger = logging.getLogger(__name__)

# Bytes of request and response bodies after which a full garbage collection runs.
GARBAGE_BYTES = 16 * 1024 * 1024


class PooledRequestHandler(ASGIHandler):
    """Django's request handling for ASGI with the sync work of each request in one pool call."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        count = threads or getattr(settings, "FASTCMS_REQUEST_THREADS", 16)
        self.pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix="fastcms-request")
        self.handled_bytes = 0

    def close(self, timeout: float = 5.0) -> None:
        """Close every request thread's database connection, then stop the threads (shutdown).

        One task per thread, held at a barrier until each thread has one, so every thread runs
        one; a thread still busy after `timeout` keeps its connection until the process exits,
        and shutdown does not wait for it.
        """
        count = self.pool._max_workers
        barrier = threading.Barrier(count)

        def close_connections() -> None:
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                logger.warning("request threads still busy at shutdown; their connections close with the process")
            connections.close_all()

        closing = [self.pool.submit(close_connections) for _ in range(count)]
        concurrent.futures.wait(closing, timeout + 1)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def load_middleware(self, is_async: bool = False) -> None:
        """The middleware chain in sync mode: the whole request runs in one pool thread."""
        super().load_middleware(is_async=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.has_async_view(scope):
            await self.async_views(scope, receive, send)
        else:
            await self.handle(scope, receive, send)

    @cached_property
    def async_views(self) -> ASGIHandler:
        """Django's own handler, for the few async views (they must run on the server's loop)."""
        return ASGIHandler()

    @staticmethod
    def has_async_view(scope: Scope) -> bool:
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return _async_view_at(path)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await self.read_body(receive)
        except RequestAborted:
            return
        self.handled_bytes += body.seek(0, os.SEEK_END)
        body.seek(0)
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        response = await loop.run_in_executor(self.pool, context.run, self.respond, scope, body)
        try:
            await self.send_response(response, send)
        finally:
            if response.streaming:  # its iterator may hold files or connections until sent
                await loop.run_in_executor(self.pool, context.run, self.finish, response, body)
            if self.handled_bytes >= GARBAGE_BYTES:
                self.handled_bytes = 0
                gc.collect()

    async def read_body(self, receive: Receive) -> IO[bytes]:
        """The request body: in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, spooled to disk beyond
        (as Django's handler does, without making a spooled file for the small bodies of almost
        every request)."""
        chunks: list[bytes] = []
        size = 0
        limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        spooled: IO[bytes] | None = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if spooled is not None:
                    spooled.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            if spooled is not None:
                spooled.write(chunk)
            elif chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    spooled = tempfile.SpooledTemporaryFile(max_size=limit, mode="w+b")
                    spooled.write(b"".join(chunks))
                    chunks.clear()
            if not message.get("more_body", False):
                break
        if spooled is not None:
            spooled.seek(0)
            return spooled
        return io.BytesIO(b"".join(chunks))

    def respond(self, scope: Scope, body: IO[bytes]) -> HttpResponse:
        """The request's sync work, in a pool thread: signals, middleware, view, rendering.

        A complete (non-streaming) response is closed here, so `request_finished` runs in the
        thread that used the database; a streaming one is closed once it has been sent.
        """
        try:
            set_script_prefix(get_script_prefix(scope))
            signals.request_started.send(sender=self.__class__, scope=scope)
            request, response = self.create_request(scope, body)
            if request is not None:
                response = self.get_response(request)
                response._handler_class = self.__class__
            if not response.streaming:
                self.finish(response, body)
            return response
        except Exception:
            # get_response turns a view's errors into responses; this is a fault of the handling
            # itself (a signal receiver, a broken body), answered like Django's last resort.
            logger.exception("request handling failed: %s %s", scope.get("method"), scope.get("path"))
            body.close()
            if scope.get("path", "").startswith("/api/"):
                return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
            return HttpResponseServerError(b"Internal Server Error", content_type="text/plain")

    def finish(self, response: HttpResponse, body: IO[bytes]) -> None:
        try:
            response.close()  # sends request_finished: releases obsolete database connections
        finally:
            body.close()

    async def send_response(self, response: Any, send: Send) -> None:
        async def counted(message: dict[str, Any]) -> None:
            self.handled_bytes += len(message.get("body", b""))
            await send(message)

        await super().send_response(response, counted)


# Paths up to this long are remembered (at most 4,096 of them: about 1 MB); longer ones, which no
# real client sends, are resolved each time, so hostile paths cannot grow the memory.
REMEMBERED_PATH = 256


def _async_view_at(path: str) -> bool:
    """Whether `path` resolves to an async view (remembered: resolving costs 20-40 us)."""
    return _remembered_async_view_at(path) if len(path) <= REMEMBERED_PATH else _resolves_to_async_view(path)


def _resolves_to_async_view(path: str) -> bool:
    try:
        match = resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


_remembered_async_view_at = lru_cache(maxsize=4096)(_resolves_to_async_view)
