"""JSON errors: DRF's exception handler extended to the product's error contract.

- query errors: 400 `{"detail", "code": "invalid_query", "position"}`;
- Django ValidationErrors raised by services: 400 in DRF's `{"field": ["message"]}` shape;
- a 403 for an anonymous caller becomes 401 (SPEC section 4);
- every `{"detail": ...}` body also carries a `code`;
- Django's own 404/500 pages are JSON under /api/.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, JsonResponse
from django.views import defaults
from rest_framework import exceptions, serializers
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from collections_app.query import QueryError

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
    csrf = isinstance(exc, exceptions.PermissionDenied) and str(exc.detail).startswith("CSRF Failed")
    if isinstance(exc, DjangoPermissionDenied | exceptions.PermissionDenied) and _is_anonymous(request) and not csrf:
        exc = exceptions.NotAuthenticated()
        exc.auth_header = 'Token realm="api"'
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        response.data["code"] = codes if isinstance(codes, str) else _default_code(response.status_code)
    return response


def _default_code(status: int) -> str:
    return {400: "invalid", 401: "not_authenticated", 403: "permission_denied", 404: "not_found"}.get(status, "error")


def json_or_html_404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def json_or_html_500(request: HttpRequest) -> Any:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Internal server error.", "code": "server_error"}, status=500)
    return defaults.server_error(request)
