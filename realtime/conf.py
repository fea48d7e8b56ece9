"""The real-time settings and their defaults, read in one place.

`realtime_settings.FASTCMS_SSE_HEARTBEAT` is `settings.FASTCMS_SSE_HEARTBEAT` when the project
sets it, else the default below. Values are read at first use (never at import) and kept until
a setting changes (`override_settings` in tests), so a read on a hot path costs an attribute
lookup, as `django.conf.settings` does.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

MEMORY_BACKEND = "realtime.backends.memory.MemoryBackend"
REDIS_BACKEND = "realtime.backends.redis.RedisBackend"

DEFAULTS: dict[str, Any] = {
    # Dotted path of the event backend; None: Redis when REDIS_URL is set, else in-process.
    "FASTCMS_EVENT_BACKEND": None,
    "REDIS_URL": None,
    "FASTCMS_REDIS_PREFIX": "fastcms",  # Redis keys: <prefix>:events, <prefix>:presence:...
    "FASTCMS_SSE_HEARTBEAT": 15.0,
    "FASTCMS_SSE_RETRY_MS": 3000,
    "FASTCMS_SSE_QUEUE_SIZE": 1000,
    "FASTCMS_SSE_MAX_AGE": 1800.0,
    "FASTCMS_SSE_MAX_CONNECTIONS": 10000,
    "FASTCMS_SSE_MAX_PER_CLIENT": 50,
    "FASTCMS_SSE_SHUTDOWN_TIMEOUT": 5.0,
    "FASTCMS_STREAM_MIDDLEWARE": ["corsheaders.middleware.CorsMiddleware"],
    "FASTCMS_HISTORY_SIZE": 10000,
    "FASTCMS_HISTORY_SECONDS": 600.0,
    "FASTCMS_HISTORY_BYTES": 64 * 1024 * 1024,  # per process (memory) or per Redis log
    "FASTCMS_SSE_OPENS_PER_MINUTE": 300,  # new streams a minute per user, or per IP for anonymous
    # How long a dead worker's streams keep counting toward the per-client limits (Redis); the
    # same setting bounds how long its presence connections last.
    "FASTCMS_PRESENCE_TTL": 30.0,
    "FASTCMS_COLLECTIONS_REFRESH": 5.0,
    "FASTCMS_STREAM_TOKEN_SECONDS": 300.0,  # lifetime of a stream token (realtime.tokens)
    "FASTCMS_PRESENCE_ANONYMOUS": True,  # read by the stream checks, so it lives here
}


class AppSettings:
    """Project settings with an app's defaults; unknown names are an AttributeError."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self._defaults = defaults
        setting_changed.connect(self._reload, weak=False)

    def __getattr__(self, name: str) -> Any:
        if name not in self._defaults:
            raise AttributeError(f"not a setting of this app: {name}")
        value = getattr(settings, name, self._defaults[name])
        self.__dict__[name] = value  # later reads skip __getattr__
        return value

    def _reload(self, *, setting: str, **kwargs: Any) -> None:
        self.__dict__.pop(setting, None)


realtime_settings = AppSettings(DEFAULTS)


def event_backend_path() -> str:
    """The dotted path of the event backend: the setting, or Redis when REDIS_URL is set."""
    configured = realtime_settings.FASTCMS_EVENT_BACKEND
    if configured:
        return configured
    return REDIS_BACKEND if realtime_settings.REDIS_URL else MEMORY_BACKEND
