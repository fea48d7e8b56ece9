"""JSON errors: DRF's exception handler extended to the product's error contract.

- query errors: 400 `{"detail", "code": "invalid_query", "position"}`;
- Django ValidationErrors raised by services: 400 in DRF's `{"field": ["message"]}` shape;
- a 403 for an anonymous caller becomes 401 (a CSRF failure stays a 403 `csrf_failed`);
- every `{"detail": ...}` body also carries a `code`;
- Django's own 400/403/404/500 pages and its CSRF failure page are JSON under /api/ (a Host not
  in ALLOWED_HOSTS is 400 `invalid_host`, a body over DATA_UPLOAD_MAX_MEMORY_SIZE 413).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import DisallowedHost, RequestDataTooBig, TooManyFieldsSent
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, JsonResponse
from django.views import csrf, defaults
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from collections_app.authentication import CsrfFailed
from collections_app.query import QueryError
from fastcms.middleware import too_large

logger = logging.getLogger(__name__)


def _is_anonymous(request: Any) -> bool:
    user = getattr(request, "_user", None)  # set once DRF has authenticated the request
    return user is None or not user.is_authenticated


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    if isinstance(exc, QueryError):
        return Response(exc.as_dict(), status=400)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=serializers.as_serializer_error(exc))
    refused = isinstance(exc, DjangoPermissionDenied | exceptions.PermissionDenied)
    if refused and not isinstance(exc, CsrfFailed) and _is_anonymous(request):
        exc = exceptions.NotAuthenticated()
        exc.auth_header = 'Token realm="api"'
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else _default_code(response.status_code)
    return response


def _default_code(status: int) -> str:
    return {400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found"}.get(status, "error")


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def json_or_html_400(request: HttpRequest, exception: Exception | None = None) -> Any:
    """Django's 400 (raised before or outside DRF views: SuspiciousOperation and its kinds)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return too_large()
    if isinstance(exception, DisallowedHost):
        return JsonResponse(
            {"detail": "The Host header is not one this server answers to.", "code": "invalid_host"}, status=400
        )
    if isinstance(exception, TooManyFieldsSent):
        return JsonResponse({"detail": "Too many parameters or form fields.", "code": "too_many_fields"}, status=400)
    return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)


def json_or_html_403(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api(request):
        return JsonResponse({"detail": "Permission denied.", "code": "permission_denied"}, status=403)
    return defaults.permission_denied(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> Any:
    """CSRF_FAILURE_VIEW: JSON under /api/, Django's page elsewhere."""
    if _is_api(request):
        return JsonResponse({"detail": f"CSRF Failed: {reason}", "code": "csrf_failed"}, status=403)
    return csrf.csrf_failure(request, reason)


def json_or_html_404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _is_api(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def json_or_html_500(request: HttpRequest) -> Any:
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
