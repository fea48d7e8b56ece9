"""Who is connected: streams opened and closed (`realtime.views` signals) -> the presence backend.

A user joins with its first stream and leaves when its last stream has been closed for the
grace period (so a quick reconnect does not flap). The backend (`presence.backends`) counts
this process's streams (memory) or the cluster's (Redis).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.utils.module_loading import import_string

from presence.backends.base import PresenceBackend
from presence.conf import presence_backend_path

logger = logging.getLogger(__name__)


_tracker: PresenceBackend | None = None


def get_tracker() -> PresenceBackend:
    """The process's presence backend, the one `FASTCMS_PRESENCE_BACKEND` names (created on first use)."""
    global _tracker
    if _tracker is None:
        _tracker = import_string(presence_backend_path())()
    return _tracker


def _run(coroutine: Any) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _pending.add(task)
    task.add_done_callback(_finished)


_pending: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _pending.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("presence update failed", exc_info=task.exception())


def stream_opened(sender: Any, subscriber: Any, user_id: str | None, user_name: str | None, **kwargs: Any) -> None:
    get_tracker().start()
    if user_id is not None:
        _run(get_tracker().connect(subscriber.client_id, user_id, user_name))


def stream_closed(sender: Any, subscriber: Any, user_id: str | None, user_name: str | None, **kwargs: Any) -> None:
    if user_id is not None:
        _run(get_tracker().disconnect(subscriber.client_id, user_id))
