"""Stream tokens: short-lived tokens for `?token=` on the stream endpoints, so long-lived account
tokens stay out of URLs (and out of proxies' and browsers' logs of them).

`POST /api/v1/realtime/tokens` (authenticated by token or session) returns `{"token", "expires"}`.
A stream token is signed, not stored: it carries the user's id, its expiry and a fingerprint of
the user's credentials (password hash, active and staff flags), so it stops working when it
expires, when the user is deactivated, or when the password or staff flag changes. It is
accepted as `?token=` by the stream and presence endpoints only; every other endpoint refuses it
(an account token is looked up in the database, where no stream token is).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collections_app.values import format_datetime
from realtime.conf import realtime_settings

SALT = "fastcms.realtime.stream-token"
INVALID = "Invalid or expired stream token."


def fingerprint(user: Any) -> str:
    """A keyed digest of what a stream token must not outlive: password, active and staff flags."""
    state = f"{user.password}\x00{int(user.is_active)}\x00{int(user.is_staff)}"
    return salted_hmac(SALT, state, algorithm="sha256").hexdigest()[:32]


def is_stream_token(token: str) -> bool:
    """Whether `token` has a stream token's form (account tokens are plain hex keys)."""
    return ":" in token


def issue_stream_token(user: Any) -> tuple[str, str]:
    """(token, expires) for `user`; `expires` in ISO 8601 UTC with microseconds and `Z`."""
    expires = time.time() + realtime_settings.FASTCMS_STREAM_TOKEN_SECONDS
    token = signing.Signer(salt=SALT).sign_object({"u": str(user.pk), "f": fingerprint(user), "e": expires})
    return token, format_datetime(datetime.fromtimestamp(expires, UTC))


def user_for_stream_token(token: str) -> Any:
    """The active user a stream token was issued to; AuthenticationFailed when it is forged,
    expired, or the user's credentials changed since. Reads the database (one user row)."""
    try:
        payload = signing.Signer(salt=SALT).unsign_object(token)
        user_id, digest, expires = str(payload["u"]), str(payload["f"]), float(payload["e"])
    except (signing.BadSignature, ValueError, TypeError, KeyError):
        raise AuthenticationFailed(INVALID) from None
    if expires <= time.time():
        raise AuthenticationFailed(INVALID)
    try:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
    except (ValueError, ValidationError):  # not this user model's kind of id
        user = None
    if user is None or not user.is_active or not constant_time_compare(digest, fingerprint(user)):
        raise AuthenticationFailed(INVALID)
    return user


class StreamTokenView(APIView):
    """`POST /api/v1/realtime/tokens`: a stream token for the caller (401 when anonymous)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["realtime"],
        request=None,
        responses=inline_serializer(
            "StreamToken", {"token": serializers.CharField(), "expires": serializers.DateTimeField()}
        ),
        summary="A short-lived token for ?token= on the stream endpoints",
    )
    def post(self, request: Request) -> Response:
        token, expires = issue_stream_token(request.user)
        return Response({"token": token, "expires": expires}, headers={"Cache-Control": "no-store"})
