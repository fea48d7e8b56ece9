"""When streams write what was queued for them: at once, unless writing costs much of the loop.

A dispatched event is queued on every matching stream, and the streams are woken to write it.
Waking a thousand streams means a thousand writes to sockets, 15 to 60 ms of the loop on a small
machine (most of it the kernel's work for each send); when events arrive faster than that, each
event would cost its own round of writes and the loop would spend all its time on them, with the
requests that make the events waiting behind. So the streams queued for are woken together by
`FlushGate`, in rounds:

- a round that woke fewer than MEASURED_FROM streams is never timed and never delays the next;
- after a costly round of fewer events, the next waits as long as that round took (at
  most MAX_DELAY): at most about half of the loop goes to these writes;
- after a costly round that carried BEHIND_EVENTS events or more (they come faster than the
  streams write them), the next waits BEHIND_HOLD times as long as that round took (at most
  BEHIND_MAX_DELAY): about a quarter of the loop goes to these writes, and each carries more events.

What arrives while the gate is shut goes out in the same write. A single event waits for nothing.
Measured, one worker, 8 clients creating records as fast as answered, 1,000 streams: 67-78
creates a second with every round held as long as it took, 123 with the longer hold (the
reference broadcaster: 79), CPU per create with its 1,000 deliveries 6.0 ms; 5,000 streams and
events 100 ms apart (two to a round): p99 delivery 0.87x the reference's.
"""

from __future__ import annotations

import asyncio
from typing import Any

MEASURED_FROM = 64  # rounds waking fewer streams are never timed, nor delay the next
MAX_DELAY = 0.05  # seconds, after a round of fewer than BEHIND_EVENTS events
BEHIND_EVENTS = 3  # a round of this many events or more: the streams are behind
BEHIND_HOLD = 3  # times the round's duration, after a round behind
BEHIND_MAX_DELAY = 0.1  # seconds


class FlushGate:
    """Collects the streams with new frames; wakes them in rounds (loop thread only)."""

    def __init__(self) -> None:
        self.pending: list[Any] = []  # streams whose queue was empty when a frame came (once each)
        self.events = 0  # events that queued frames since the last round
        self.scheduled = False
        self.next_round = 0.0  # loop time before which no round starts

    def add(self, stream: Any) -> None:
        self.pending.append(stream)

    def schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the pending streams (after each dispatched event): in this loop iteration's
        callbacks, or when the gate opens."""
        if not self.pending:
            return
        self.events += 1
        if self.scheduled:
            return
        self.scheduled = True
        if self.next_round > loop.time():
            loop.call_at(self.next_round, self._wake, loop)
        else:
            loop.call_soon(self._wake, loop)

    def wake_now(self) -> None:
        """Wake the pending streams at once (no loop to schedule on)."""
        streams, self.pending = self.pending, []
        self.events = 0
        for stream in streams:
            stream.wake()

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self.scheduled = False
        streams, self.pending = self.pending, []
        events, self.events = self.events, 0
        for stream in streams:
            stream.wake()
        if len(streams) >= MEASURED_FROM:
            # Scheduled after the woken streams' own steps, so it runs once they have written.
            loop.call_soon(self._written, loop, loop.time(), events)

    def _written(self, loop: asyncio.AbstractEventLoop, started: float, events: int = 1) -> None:
        now = loop.time()
        took = now - started
        if events >= BEHIND_EVENTS:
            self.next_round = now + min(BEHIND_HOLD * took, BEHIND_MAX_DELAY)
        else:
            self.next_round = now + min(took, MAX_DELAY)
