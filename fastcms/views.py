"""The live console at `/`: a page to watch events, live queries and presence in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from collections_app.models import Collection
from collections_app.rules import is_staff

FAVICON = Path(__file__).resolve().parent / "static" / "fastcms" / "favicon.ico"
# The page lists at most this many names; any other can still be typed.
MAX_LISTED = 500
# Everything the page loads comes from this server, and the browser enforces it.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; object-src 'none'"
)


def listable_collection_names(user: Any) -> list[str]:
    """Names of the collections `user` may list (staff: all; others: list rule not null), by name."""
    collections = Collection.objects.order_by("name")
    if not is_staff(user):
        collections = collections.filter(list_rule__isnull=False)
    return list(collections.values_list("name", flat=True)[:MAX_LISTED])


@require_safe
def console(request: HttpRequest) -> HttpResponse:
    """The live console page; its script talks only to this server's REST, SSE and presence APIs."""
    user = request.user
    context = {
        "collections": listable_collection_names(user),
        "viewer": user.get_username() if user.is_authenticated else None,
        "viewer_id": str(user.pk) if user.is_authenticated else None,
        "viewer_is_staff": is_staff(user),
    }
    response = render(request, "console.html", context)
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@require_safe
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponse:
    """The site's icon at `/favicon.ico`, where browsers look for it on every page."""
    return HttpResponse(FAVICON.read_bytes(), content_type="image/x-icon")
