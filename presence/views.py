"""`GET /api/v1/presence`: who is connected now."""

from __future__ import annotations

import asyncio

from django.http import HttpRequest, JsonResponse
from rest_framework.exceptions import AuthenticationFailed

from collections_app.authentication import user_for_token
from presence.tracker import get_tracker
from realtime.bus import get_bus


async def presence(request: HttpRequest) -> JsonResponse:
    """`{"users": [{"user_id", "user_name", "connections", "last_seen"}], "count"}`, by user_id.

    `X-Last-Event-ID` is read before the users, so a client can load this and then open a stream
    with `last_event_id` set to it without missing a join or leave.
    """
    if request.method not in ("GET", "HEAD"):
        return JsonResponse(
            {"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"}, status=405
        )
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    token = request.GET.get("token") or (key.strip() if scheme.lower() in ("token", "bearer") else None)
    if token is not None or scheme.lower() in ("token", "bearer"):
        try:
            await asyncio.get_running_loop().run_in_executor(None, user_for_token, token or "")
        except AuthenticationFailed as exc:
            return JsonResponse({"detail": str(exc.detail), "code": "authentication_failed"}, status=401)
    bus = get_bus()
    await bus.start()
    last_event_id = bus.last_event_id()
    users = await get_tracker().users()
    return JsonResponse({"users": users, "count": len(users)}, headers={"X-Last-Event-ID": last_event_id})
