"""Who is asking: the one way stream and presence requests are authenticated.

A request carries a token (`?token=`: an account token or a stream token from
`realtime.tokens`; or `Authorization: Token|Bearer <key>`, read as the REST API reads it), a
Django session cookie, or nothing (anonymous). Reading a token or a session
needs the database, so it runs on a small bounded pool whose threads release their database
connection when done; an anonymous request needs no database and is answered inline.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import close_old_connections
from django.http import HttpRequest

from collections_app.authentication import TokenAuthentication, user_for_token
from realtime.tokens import is_stream_token, user_for_stream_token

_pool: ThreadPoolExecutor | None = None


def auth_pool() -> ThreadPoolExecutor:
    """The shared, bounded pool where streams authenticate (a few threads, a few DB connections)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fastcms-stream-auth")
    return _pool


def has_credentials(request: HttpRequest) -> bool:
    """Whether the request carries a token or a session (False: anonymous, no database needed)."""
    return bool(
        "token" in request.GET
        or request.META.get("HTTP_AUTHORIZATION")  # not `request.headers`: it copies every header
        or settings.SESSION_COOKIE_NAME in request.COOKIES
    )


def authenticate(request: HttpRequest) -> Any:
    """The request's user, or AnonymousUser; AuthenticationFailed for a bad token or header.

    Reads the database when the request has credentials: call it on `auth_pool()` (and release
    the connection after, as `authenticate_on_pool` does) unless `has_credentials` is False.
    """
    token = request.GET.get("token")
    if token is not None:
        return user_for_stream_token(token) if is_stream_token(token) else user_for_token(token)
    found = TokenAuthentication().authenticate(request)
    if found is not None:
        return found[0]
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return AnonymousUser()
    # The Django session (the stream paths run no session middleware).
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return get_user(request)


def _authenticate_and_release(request: HttpRequest) -> Any:
    try:
        return authenticate(request)
    finally:
        close_old_connections()  # release this pool thread's connection


async def authenticate_on_pool(request: HttpRequest) -> Any:
    """`authenticate` from the event loop: inline when anonymous, else on the bounded pool."""
    if not has_credentials(request):
        return AnonymousUser()
    return await asyncio.get_running_loop().run_in_executor(auth_pool(), _authenticate_and_release, request)


def could_be_account(user_id: str) -> bool:
    """Whether `user_id` reads as an account id (`" 2"` and `"+2"` as 2 too); False means no
    account can have it, so no database read is needed."""
    try:
        get_user_model()._meta.pk.to_python(user_id)
    except (ValidationError, ValueError, TypeError):
        return False
    return True


def account_for(user_id: str) -> Any:
    """The account whose id `user_id` reads as, or None. Reads the database when
    `could_be_account` is true: call it on `auth_pool()`."""
    if not could_be_account(user_id):
        return None
    model = get_user_model()
    return model._default_manager.filter(pk=model._meta.pk.to_python(user_id)).first()
