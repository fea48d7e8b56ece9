"""Middleware of the servers the tests start (tests/server_settings.py)."""

from collections.abc import Callable

from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest, HttpResponse


class ForgetContentTypes:
    """Read content types afresh on every request.

    The tests empty the database between tests while a server keeps running, and content types
    come back with new ids; the server's cached ids would then break the admin's history entries.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ContentType.objects.clear_cache()
        return self.get_response(request)
