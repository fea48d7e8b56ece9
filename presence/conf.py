"""The presence settings and their defaults, read in one place (see `realtime.conf`)."""

from __future__ import annotations

from typing import Any

from realtime.conf import AppSettings, realtime_settings

MEMORY_BACKEND = "presence.backends.memory.MemoryPresence"
REDIS_BACKEND = "presence.backends.redis.RedisPresence"

DEFAULTS: dict[str, Any] = {
    # Dotted path of the presence backend; None: Redis when REDIS_URL is set, else in-process.
    "FASTCMS_PRESENCE_BACKEND": None,
    "FASTCMS_PRESENCE_GRACE": 5.0,  # seconds a user stays after its last stream closes
    "FASTCMS_PRESENCE_TTL": 30.0,  # seconds before a dead worker's connections expire (Redis)
}

presence_settings = AppSettings(DEFAULTS)


def presence_backend_path() -> str:
    """The dotted path of the presence backend: the setting, or Redis when REDIS_URL is set."""
    configured = presence_settings.FASTCMS_PRESENCE_BACKEND
    if configured:
        return configured
    return REDIS_BACKEND if realtime_settings.REDIS_URL else MEMORY_BACKEND
