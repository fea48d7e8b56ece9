"""Token authentication accepting both `Authorization: Token <key>` and `Bearer <key>`, and the
Django session (whose CSRF failures are a 403 of their own)."""

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from collections_app.prepared import PreparedLookup

# Every authenticated request runs it: compiled once (the same query as DRF's).
token_with_user = PreparedLookup(lambda key: Token.objects.select_related("user").filter(key=key))


class TokenAuthentication(authentication.TokenAuthentication):
    keywords = ("token", "bearer")

    def authenticate(self, request: Any) -> tuple[Any, Token] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].decode(errors="replace").lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: expected '<Token|Bearer> <key>'.")
        try:
            key = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("Invalid token header: the token has invalid characters.") from None
        return self.authenticate_credentials(key)

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        # No stored key is longer or holds NUL (which PostgreSQL cannot even compare): no query.
        if len(key) > Token._meta.get_field("key").max_length or "\x00" in key:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = token_with_user(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


def user_for_token(key: str) -> Any:
    """The active user a token belongs to; AuthenticationFailed when it is unknown or inactive."""
    return TokenAuthentication().authenticate_credentials(key)[0]


class CsrfFailed(exceptions.PermissionDenied):
    """A session write without its CSRF token: 403 `csrf_failed` (never taken for a missing login)."""

    default_code = "csrf_failed"


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication, whose CSRF failure is told apart from other refusals."""

    def enforce_csrf(self, request: Any) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as exc:
            raise CsrfFailed(str(exc.detail)) from None
