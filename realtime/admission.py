"""Stream admission: the per-client limits a new stream must pass, and the place it holds.

A client is a user, or an IP address for anonymous callers (the stream's `client_key`). It may
hold `FASTCMS_SSE_MAX_PER_CLIENT` open streams at once and open `FASTCMS_SSE_OPENS_PER_MINUTE`
new ones in any minute; beyond either, the stream is refused with 429 `too_many_connections`
(with `Retry-After` for the opening rate). The event backend supplies the implementation:
`LocalAdmission` counts this process's streams, the Redis backend's counts the whole cluster's.
The per-process limit (503 `server_busy`) is the bus's, not the admission's.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import Counter, deque

from django.http import JsonResponse

from realtime.conf import realtime_settings

WINDOW = 60.0  # seconds of the opening rate


class AdmissionError(Exception):
    """A stream refused before it starts: a JSON error with its status (and `Retry-After`)."""

    def __init__(self, status: int, code: str, detail: str, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after

    def response(self) -> JsonResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
        return JsonResponse({"detail": self.detail, "code": self.code}, status=self.status, headers=headers)


def too_many_open() -> AdmissionError:
    return AdmissionError(429, "too_many_connections", "Too many open streams for this client.")


def too_many_opens(retry_after: float) -> AdmissionError:
    return AdmissionError(
        429,
        "too_many_connections",
        "Too many new streams for this client in the last minute; retry later.",
        retry_after=max(1, math.ceil(retry_after)),
    )


def unavailable() -> AdmissionError:
    return AdmissionError(503, "realtime_unavailable", "Real-time delivery is unavailable right now; retry shortly.")


class Admission(ABC):
    """Counts each client's open streams and recent opens. `admit` and `release` run on the loop."""

    def start(self) -> None:
        """Begin any upkeep on the running loop (idempotent)."""
        return None

    async def stop(self) -> None:
        """End the upkeep (the loop is about to end)."""
        return None

    @abstractmethod
    async def admit(self, client_key: str, stream_id: str) -> None:
        """Hold a place for the stream, or raise AdmissionError (429, or 503 when the limits
        cannot be checked now). Answers within about a second whatever its store does."""

    @abstractmethod
    def release(self, client_key: str, stream_id: str) -> None:
        """Give back the place of an admitted stream (never waits)."""


class LocalAdmission(Admission):
    """The limits counted in this process (one worker)."""

    def __init__(self) -> None:
        self.open: Counter[str] = Counter()
        self.opens: dict[str, deque[float]] = {}  # client -> monotonic times of its recent opens
        self.swept = time.monotonic()

    async def admit(self, client_key: str, stream_id: str) -> None:
        if self.open[client_key] >= realtime_settings.FASTCMS_SSE_MAX_PER_CLIENT:
            raise too_many_open()
        now = time.monotonic()
        recent = self.opens.setdefault(client_key, deque())
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        if len(recent) >= realtime_settings.FASTCMS_SSE_OPENS_PER_MINUTE:
            raise too_many_opens(recent[0] + WINDOW - now)
        recent.append(now)
        self.open[client_key] += 1
        if now - self.swept > WINDOW:
            self._sweep(now)

    def release(self, client_key: str, stream_id: str) -> None:
        self.open[client_key] -= 1
        if self.open[client_key] <= 0:
            del self.open[client_key]

    def _sweep(self, now: float) -> None:
        """Forget clients that opened nothing for a minute (memory stays bounded)."""
        self.swept = now
        for client_key in [key for key, recent in self.opens.items() if not recent or recent[-1] <= now - WINDOW]:
            del self.opens[client_key]
