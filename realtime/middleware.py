"""`X-Last-Event-ID` on record reads: the newest event id, read before the query runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from realtime.bus import get_bus

SNAPSHOT_VIEWS = frozenset({"record-list", "record-detail"})


class LastEventIdMiddleware:
    """Lets a client load a snapshot, then stream from `last_event_id` without a gap."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        last_event_id = get_bus().last_event_id() if request.method in ("GET", "HEAD") else None
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if last_event_id is not None and match is not None and match.url_name in SNAPSHOT_VIEWS:
            response["X-Last-Event-ID"] = last_event_id
        return response
