"""`GET /api/v1/presence`: who is connected now."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import AuthenticationFailed

from presence.backends.base import PresenceUnavailable
from presence.tracker import get_tracker
from realtime.auth import authenticate_on_pool
from realtime.bus import get_bus


async def presence(request: HttpRequest) -> JsonResponse:
    """`{"users": [{"user_id", "user_name", "connections", "last_seen"}], "count"}`, by user_id.

    Open to everyone; a bad token is still a 401; 503 `realtime_unavailable` (within about a
    second) when presence cannot be known now (Redis does not answer). `X-Last-Event-ID` is read
    before the users, so a client can load this and then open a stream with `last_event_id` set to
    it without missing a join or leave.
    """
    if request.method not in ("GET", "HEAD"):
        return JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, status=405
        )
    try:
        await authenticate_on_pool(request)
    except AuthenticationFailed as exc:
        return JsonResponse({"detail": str(exc.detail), "code": "authentication_failed"}, status=401)
    bus = get_bus()
    await bus.start()
    last_event_id = bus.last_event_id()
    try:
        users = await get_tracker().users()
    except PresenceUnavailable:
        return JsonResponse(
            {"detail": "Presence is unavailable right now; retry shortly.", "code": "realtime_unavailable"},
            status=503,
        )
    return JsonResponse({"users": users, "count": len(users)}, headers={"X-Last-Event-ID": last_event_id})
