"""Token authentication accepting both `Authorization: Token <key>` and `Bearer <key>`."""

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token


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


def user_for_token(key: str) -> Any:
    """The active user a token belongs to; AuthenticationFailed when it is unknown or inactive."""
    return TokenAuthentication().authenticate_credentials(key)[0]
