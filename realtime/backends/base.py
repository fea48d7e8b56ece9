"""The interface of an event backend, the event id form they share, and their errors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from django.db import transaction

from realtime.admission import Admission, LocalAdmission
from realtime.conf import realtime_settings
from realtime.events import Event


class BackendUnavailable(Exception):
    """The backend cannot serve a stream now (new streams are refused with a 503; retry later)."""


def parse_id(event_id: str) -> tuple[int, int] | None:
    """`<ms>-<seq>` (every backend's id form) as a sortable pair; None if malformed."""
    if event_id == "0":
        return (0, 0)
    head, sep, tail = event_id.partition("-")
    # ASCII digits only (`isdigit` also takes "²"), each part within Redis's 64-bit range.
    if not sep or len(event_id) > 41 or not (head + tail).isascii() or not head.isdigit() or not tail.isdigit():
        return None
    key = (int(head), int(tail))
    return key if max(key) < 2**64 else None


class Backend(ABC):
    """Gives events ids, keeps the history and carries events to every process's bus.

    `append` and `publish_on_commit` may be called from any thread and never wait for anything
    remote; the backend hands events to the attached `deliver` callback in id order (the commit
    order). The other coroutines run on the event loop.
    """

    available = True  # False while new streams cannot be served (a 503 until it is back)

    def __init__(self, *, size: int, seconds: float, max_bytes: int | None = None) -> None:
        self.size = size  # events kept for resume
        self.seconds = seconds  # age limit of kept events
        # byte limit of kept events (`Event.footprint` estimates); default FASTCMS_HISTORY_BYTES
        self.max_bytes = realtime_settings.FASTCMS_HISTORY_BYTES if max_bytes is None else max_bytes
        self.deliver: Callable[[Event], None] = lambda event: None
        # Called on the loop when this process missed events (they left the history before it
        # read them): the bus ends every stream, so clients resume and learn what was lost.
        self.missed: Callable[[], None] = lambda: None

    def attach(self, deliver: Callable[[Event], None], missed: Callable[[], None] | None = None) -> None:
        """Where events go once they have an id (the bus hands them to its loop)."""
        self.deliver = deliver
        if missed is not None:
            self.missed = missed

    def make_admission(self) -> Admission:
        """The stream limits that go with this backend (this process's counts by default)."""
        return LocalAdmission()

    async def start(self) -> None:
        """Begin serving on the running loop."""
        return None

    async def stop(self) -> None:
        """Stop serving (the loop is about to end)."""
        return None

    @abstractmethod
    def append(self, event: Event) -> None:
        """Give the event its id, keep it in history and deliver it (any thread; an event of no
        database write, such as a presence change)."""

    def publish_on_commit(self, event: Event) -> None:
        """The event of a database write: appended once the surrounding transaction commits,
        never after a rollback (called inside the write's transaction)."""
        transaction.on_commit(lambda: self.append(event), robust=True)

    @abstractmethod
    def last_id(self) -> str:
        """The newest event id, `0` before the first event."""

    @abstractmethod
    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        """(events after `last_id`, recovered); recovered is False when `last_id` is too old or
        unknown. Raises BackendUnavailable when the history cannot be read now."""

    def id_key(self, event_id: str) -> tuple[int, int]:
        """An event id as a sortable key."""
        return parse_id(event_id) or (0, 0)
