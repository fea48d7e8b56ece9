"""Requests under /api/ that no view can serve are answered here, as JSON, before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from collections_app.inputs import InputRefused, check_request, undecodable_parameters


def too_large() -> JsonResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return JsonResponse(
        {"detail": f"The request body is larger than {limit} bytes.", "code": "request_too_large"}, status=413
    )


class ApiInputMiddleware:
    """A Host not in ALLOWED_HOSTS (400), a NUL in the path (404), query or form parameters that
    are not valid UTF-8 (400) and a body over DATA_UPLOAD_MAX_MEMORY_SIZE (413), all as JSON.

    Reading the body here bounds it for every parser: DRF's JSON parser reads the request stream
    directly, where Django's size limit does not apply.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            try:
                check_request(request)
                body = request.body  # at most DATA_UPLOAD_MAX_MEMORY_SIZE + 1 bytes are read
                if request.content_type == "application/x-www-form-urlencoded" and undecodable_parameters(body):
                    raise InputRefused(400, "invalid_parameter", "Form fields must be valid UTF-8 text.")
            except InputRefused as refused:
                return JsonResponse(refused.as_dict(), status=refused.status)
            except RequestDataTooBig:
                return too_large()
        return self.get_response(request)
