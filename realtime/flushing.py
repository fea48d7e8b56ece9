"""When streams write what was queued for them: at once, unless writing costs much of the loop.

A dispatched event is queued on every matching stream, and the streams are woken to write it.
Waking a thousand streams means a thousand writes to sockets, about 15 ms of the loop; when
events arrive faster than that, each event would cost its own round of writes and the loop
would spend all its time on them, with the writes of the requests waiting behind. So the streams
queued for are woken together by `FlushGate`: at once when the last round was cheap (every
round of fewer than MEASURED_FROM streams is), and otherwise no sooner than the last round's own
duration after it ended (at most MAX_DELAY): at most about half of the loop goes to these writes,
and what arrives meanwhile goes out in the same write. A single event waits for nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

MEASURED_FROM = 64  # rounds waking fewer streams are never timed, nor delay the next
MAX_DELAY = 0.05  # seconds


class FlushGate:
    """Collects the streams with new frames; wakes them in rounds (loop thread only)."""

    def __init__(self) -> None:
        self.pending: list[Any] = []  # a stream may appear more than once: waking twice is harmless
        self.scheduled = False
        self.next_round = 0.0  # loop time before which no round starts

    def add(self, stream: Any) -> None:
        self.pending.append(stream)

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the pending streams: in this loop iteration's callbacks, or when the gate opens."""
        if self.scheduled or not self.pending:
            return
        self.scheduled = True
        if self.next_round > loop.time():
            loop.call_at(self.next_round, self._wake, loop)
        else:
            loop.call_soon(self._wake, loop)

    def wake_now(self) -> None:
        """Wake the pending streams at once (no loop to schedule on)."""
        streams, self.pending = self.pending, []
        for stream in streams:
            stream.wake()

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduled = False
        streams, self.pending = self.pending, []
        for stream in streams:
            stream.wake()
        if len(streams) >= MEASURED_FROM:
            # Scheduled after the woken streams' own steps, so it runs once they have written.
            loop.call_soon(self._written, loop, loop.time())

    def _written(self, loop: asyncio.AbstractEventLoop, started: float) -> None:
        now = loop.time()
        self.next_round = now + min(now - started, MAX_DELAY)
