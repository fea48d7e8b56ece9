"""The SSE endpoints: `GET /api/v1/realtime` (every collection) and `/api/v1/realtime/{name}`.

Everything that can fail is checked before the stream starts and answered with a plain JSON
error; once the 200 is sent the response is a stream. Authentication and the other database
reads run once, on a small shared thread pool, which releases its database connection before
the stream starts: an open stream holds neither a thread nor a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import close_old_connections
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from collections_app.inputs import InputRefused, check_request
from collections_app.models import Collection, new_id
from collections_app.query import Auth, Condition, Node, QueryError, compile_query, parse
from collections_app.rules import is_staff, rule_condition_for
from collections_app.serializers import user_summary
from realtime.auth import account_for, auth_pool, authenticate, could_be_account, has_credentials
from realtime.bus import AdmissionError, get_bus
from realtime.conf import realtime_settings
from realtime.events import PING_FRAME, CollectionInfo, connected_frame, retry_frame
from realtime.subscribers import OVERFLOW, REVOKED, Subscriber, take_chunk
from realtime.subscriptions import LabelPlan, SubscribeError, Subscription, check_subscriptions

logger = logging.getLogger(__name__)

# Sent on the event loop when a stream opens (after it is registered) and when it ends, for any
# reason. kwargs: `subscriber`, `user_id`, `user_name` (None when the stream has no user).
stream_opened = Signal()
stream_closed = Signal()

MAX_PARAMETER = 100


class StreamRefused(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def response(self) -> JsonResponse:
        headers = {"WWW-Authenticate": 'Token realm="api"'} if self.status == 401 else None
        return JsonResponse(
            {"detail": self.detail, "code": self.code, **self.extra}, status=self.status, headers=headers
        )


@dataclass(slots=True)
class StreamPlan:
    """What a stream needs, resolved from the request before it starts."""

    auth: Auth
    staff: bool
    collection: CollectionInfo | None
    query_text: str | None
    query: Node | None
    user_id: str | None
    user_name: str | None
    client_key: str
    last_event_id: str | None
    compiled: tuple[Condition | None, Condition] | None = None  # (list rule, query) of a one-collection stream
    subscriptions: list[LabelPlan] | None = None  # the labels of a multiplexed stream (`?subscribe=`)


class NeedsDatabase(Exception):
    """An inline preparation met a collection the registry does not know: prepare on the pool."""


def _refuse_anonymous_or(user: Any, code: str, detail: str) -> StreamRefused:
    if not user.is_authenticated:
        return StreamRefused(401, "not_authenticated", "Authentication credentials were not provided.")
    return StreamRefused(403, code, detail)


def inline_collection(request: HttpRequest, name: str | None) -> CollectionInfo | bool | None:
    """What an inline (no database) preparation would use, or False when the database is needed.

    Returns the collection (None for the all-collections stream) when no token or session has
    to be checked, no presence `user_id` may be an account's (which must be looked up) and the
    registry knows the collection. A multiplexed stream's collections are looked up by
    `prepare_stream`, which raises NeedsDatabase when the registry lacks one.
    """
    if has_credentials(request):
        return False
    user_id = request.GET.get("user_id")
    if user_id and realtime_settings.FASTCMS_PRESENCE_ANONYMOUS and could_be_account(user_id):
        return False
    registry = get_bus().collections
    if registry.stale():
        return False
    if name is None:
        return None
    return registry.named(name) or False


def prepare_stream(
    request: HttpRequest, name: str | None, *, on_pool: bool = True, known: CollectionInfo | None = None
) -> StreamPlan:
    """Check the request: Host and parameter encoding (400), then 401, 404, 400, 403, presence 403.

    Runs on the auth pool when it reads the database (`on_pool`), which then releases its
    connection; otherwise inline, with the collection already found in the registry (`known`).
    """
    try:
        try:
            check_request(request)  # first: a Host not in ALLOWED_HOSTS never gets a stream
        except InputRefused as refused:
            raise StreamRefused(refused.status, refused.code, refused.detail) from None
        params = request.GET
        try:
            # Inline only without a token, header or session cookie (`inline_collection`): anonymous.
            user = authenticate(request) if on_pool else AnonymousUser()
        except AuthenticationFailed as exc:
            raise StreamRefused(401, "authentication_failed", str(exc.detail)) from None
        staff = is_staff(user)
        auth = Auth.of(user)
        bus = get_bus()
        registry = bus.collections
        fresh: dict[str, CollectionInfo] | None = None
        if on_pool and registry.stale():
            read_at = time.monotonic()
            infos = [CollectionInfo.of(c) for c in Collection.objects.all()]
            if bus.loop is not None:
                bus.loop.call_soon_threadsafe(registry.replace_all, infos, read_at)
            fresh = {info.name: info for info in infos}

        def find(collection_name: str) -> CollectionInfo | None:
            if not on_pool:
                if (inline := registry.named(collection_name)) is None:
                    raise NeedsDatabase
                return inline
            if fresh is not None:
                return fresh.get(collection_name)
            found = registry.by_name.get(collection_name)
            if found is None:
                # Created an instant ago (its event may not have arrived yet), or really unknown.
                row = Collection.objects.filter(name=collection_name).first()
                found = CollectionInfo.of(row) if row is not None else None
            return found

        info = find(name) if on_pool and name is not None else known
        if name is not None and info is None:
            raise StreamRefused(404, "not_found", f"Collection '{name}' not found.")
        subscriptions = None
        if "subscribe" in params:
            if name is not None:
                raise StreamRefused(400, "invalid_parameter", "subscribe is accepted on /api/v1/realtime only.")
            if "query" in params:
                raise StreamRefused(400, "invalid_parameter", "Give either query or subscribe, not both.")
            try:
                subscriptions = check_subscriptions(params["subscribe"], user=user, auth=auth, staff=staff, find=find)
            except SubscribeError as exc:
                raise StreamRefused(exc.status, exc.code, exc.detail, **exc.extra) from None
        query_text = params.get("query")
        last_event_id = request.headers.get("Last-Event-ID") or params.get("last_event_id") or None
        # A malformed last_event_id is not an error: it is not in history (recovered: false).
        for key, value in (("user_id", params.get("user_id")), ("user_name", params.get("user_name"))):
            if value is not None and len(value) > MAX_PARAMETER:
                raise StreamRefused(400, "invalid_parameter", f"{key} is longer than {MAX_PARAMETER} characters.")
        compiled = None
        try:
            tree = parse(query_text) if query_text else None
            if info is not None:
                query = compile_query(tree, fields=info.field_map, auth=auth, allow_hidden=staff)
        except QueryError as exc:
            raise StreamRefused(400, exc.code, exc.detail, position=exc.position) from None
        if info is not None:
            rule = rule_condition_for(info, "list_rule", auth=auth, staff=staff)
            if rule is None:
                raise _refuse_anonymous_or(user, "permission_denied", "Only staff may list this collection.")
            compiled = (rule, query)
        user_id, user_name = _presence_identity(user, staff, params.get("user_id"), params.get("user_name"))
        return StreamPlan(
            auth=auth,
            staff=staff,
            collection=info,
            query_text=query_text if tree is not None else None,
            query=tree,
            user_id=user_id,
            user_name=user_name,
            client_key=f"user:{user.pk}" if user.is_authenticated else f"ip:{request.META.get('REMOTE_ADDR', '')}",
            last_event_id=last_event_id,
            compiled=compiled,
            subscriptions=subscriptions,
        )
    finally:
        if on_pool:
            close_old_connections()  # release this pool thread's connection before the stream starts


def _presence_identity(
    user: Any, staff: bool, user_id: str | None, user_name: str | None
) -> tuple[str | None, str | None]:
    """Who this stream counts as for presence: an authenticated user as itself (staff may name
    another id, shown under that account's name when it is one), an anonymous caller under the
    `user_id` it chose, if the setting allows it and no account has that id.

    Reads the database only when `user_id` may be an account's (see `inline_collection`)."""
    if user.is_authenticated:
        own = str(user.pk)
        if user_id in (None, "", own):
            return own, user_summary(user)["name"]
        if not staff:
            raise StreamRefused(403, "presence_forbidden", "user_id must be your own user id.")
        account = account_for(user_id)
        return user_id, user_summary(account if account is not None else user)["name"]
    if not user_id:
        return None, None
    if not realtime_settings.FASTCMS_PRESENCE_ANONYMOUS:
        raise StreamRefused(403, "presence_forbidden", "Presence with a user_id requires authentication.")
    if account_for(user_id) is not None:
        raise StreamRefused(
            403, "presence_forbidden", "user_id is an account's id: sign in as that user to appear under it."
        )
    return user_id, user_name or None


@csrf_exempt  # read-only (other methods are a JSON 405), and Django's CSRF page is HTML
async def stream_all(request: HttpRequest) -> HttpResponse:
    """Every event of every collection the caller may list, plus presence."""
    return await _stream(request, None)


@csrf_exempt
async def stream_collection(request: HttpRequest, name: str) -> HttpResponse:
    """The events of one collection."""
    return await _stream(request, name)


async def _stream(request: HttpRequest, name: str | None) -> HttpResponse:
    if request.method != "GET":
        return JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, status=405
        )
    bus = get_bus()
    await bus.start()
    loop = asyncio.get_running_loop()
    checked_at = time.monotonic()  # before the credentials are read (see `EventBus.subscribe`)
    try:
        known = inline_collection(request, name)
        plan = None
        if known is not False:
            with contextlib.suppress(NeedsDatabase):
                plan = prepare_stream(request, name, on_pool=False, known=known)
        if plan is None:
            plan = await loop.run_in_executor(auth_pool(), prepare_stream, request, name)
    except StreamRefused as refused:
        return refused.response()
    sub = Subscriber(
        client_id=new_id(),
        auth=plan.auth,
        staff=plan.staff,
        query=plan.query,
        collection=plan.collection,
        client_key=plan.client_key,
        compiled=plan.compiled,
    )
    if plan.subscriptions:
        sub.subscriptions = tuple(Subscription(stream=sub, plan=item) for item in plan.subscriptions)
    try:
        replay, recovered = await bus.subscribe(sub, plan.last_event_id, checked_at)
    except AdmissionError as refused:
        bus.unsubscribe(sub)
        return refused.response()
    except BaseException:
        bus.unsubscribe(sub)
        raise
    sub.presence = (plan.user_id, plan.user_name)
    stream_opened.send(sender=Subscriber, subscriber=sub, user_id=plan.user_id, user_name=plan.user_name)
    connected = {
        "client_id": sub.client_id,
        "collection": plan.collection.name if plan.collection else None,
        "query": plan.query_text,
        "user_id": plan.user_id,
        "last_event_id": plan.last_event_id,
        "recovered": recovered,
        "cursor": sub.cursor,
    }
    labels = tuple(item.label for item in plan.subscriptions) if plan.subscriptions else None
    # The replayed frames are the events' own (shared): written in chunks, never joined whole.
    opening = retry_frame(realtime_settings.FASTCMS_SSE_RETRY_MS) + connected_frame(
        connected, connected["collection"], labels
    )
    prelude = [opening, *replay]
    return EventStreamResponse(sub, prelude)


class EventStreamResponse(StreamingHttpResponse):
    """`text/event-stream`, never buffered or compressed; closing it always releases the stream.

    `realtime.handler.StreamHandler` sends it with `stream_to`, straight to the ASGI server; other
    handlers iterate it as any streaming response.
    """

    def __init__(self, sub: Subscriber, prelude: list[bytes]) -> None:
        super().__init__(_frames(sub, prelude), content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"
        self["Content-Encoding"] = "identity"  # compression middleware leaves encoded responses alone
        self.subscriber = sub
        self.prelude = prelude
        self.loop = asyncio.get_running_loop()

    async def stream_to(self, send: Any) -> None:
        """Send the headers, then every frame as its own body message, until the stream ends."""
        headers = [(name.encode("latin1"), value.encode("latin1")) for name, value in self.items()]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        frames = _frames(self.subscriber, self.prelude)
        try:
            async for chunk in frames:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await frames.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def close(self) -> None:
        # Also runs when the stream never started (the client left first); `end` is idempotent.
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(end_stream, self.subscriber)
        super().close()


def end_stream(sub: Subscriber) -> None:
    """Unregister a stream and announce it (once)."""
    bus = get_bus()
    if sub in bus.subscribers:
        bus.unsubscribe(sub)
        user_id, user_name = sub.presence or (None, None)
        stream_closed.send(sender=Subscriber, subscriber=sub, user_id=user_id, user_name=user_name)


async def _frames(sub: Subscriber, prelude: list[bytes]) -> AsyncIterator[bytes]:
    """The prelude, then the subscriber's frames and pings, until the bus closes the stream."""
    sub.task = asyncio.current_task()
    pending = deque(prelude)
    try:
        chunk = take_chunk(pending)
        while True:
            sub.sending = True
            yield chunk
            sub.sending = False
            sub.last_write = time.monotonic()
            if pending and sub.closed not in (OVERFLOW, REVOKED):
                chunk = take_chunk(pending)
                continue
            while not sub.queue and not sub.closed and not sub.ping_due:
                await sub.wait()
            if sub.queue:
                chunk = sub.take()
            elif sub.closed:
                return
            else:
                sub.ping_due = False
                chunk = PING_FRAME
    finally:
        sub.sending = False
        end_stream(sub)
