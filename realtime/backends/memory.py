"""Events in this process only (the default): one worker, no other process's writes.

The history keeps record and collection events within three bounds (count, age and bytes, the
oldest going first) and presence events within their own count and age, so presence churn never
evicts a record or collection event. A resume is `recovered` when no record or collection event
after its id was evicted; presence events past their bound are simply not replayed.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque

from realtime.backends.base import Backend, parse_id
from realtime.events import INTERNAL_TYPES, PRESENCE_TYPES, Event


class MemoryBackend(Backend):
    """Ids and history in this process: ids are `<boot ms>-<seq>`, so a restart never reuses one."""

    def __init__(self, *, size: int, seconds: float, max_bytes: int | None = None) -> None:
        super().__init__(size=size, seconds=seconds, max_bytes=max_bytes)
        self.boot = int(time.time() * 1000)
        self.seq = 0
        # (monotonic time, seq, event, estimated bytes): record and collection events.
        self.kept: deque[tuple[float, int, Event, int]] = deque()
        self.kept_bytes = 0
        self.presence: deque[tuple[float, int, Event]] = deque()  # (monotonic time, seq, event)
        self.lost = 0  # seq of the newest record or collection event evicted: older ids are not recovered
        self.lock = threading.Lock()

    def append(self, event: Event) -> None:
        if event.type in INTERNAL_TYPES:
            with self.lock:  # in order with the others, but no id and no history
                self.deliver(event)
            return
        # Estimated outside the lock (it may serialise): the loop appends presence events too.
        cost = 0 if event.type in PRESENCE_TYPES else event.footprint()
        # One lock gives ids and hands events to the loop in the same order: the commit order.
        with self.lock:
            self.seq += 1
            event.id = f"{self.boot}-{self.seq}"
            now = time.monotonic()
            if event.type in PRESENCE_TYPES:
                self.presence.append((now, self.seq, event))
            else:
                self.kept.append((now, self.seq, event, cost))
                self.kept_bytes += cost
            self._trim(now)
            self.deliver(event)

    def _trim(self, now: float) -> None:
        kept, oldest = self.kept, now - self.seconds
        while kept and (len(kept) > self.size or self.kept_bytes > self.max_bytes or kept[0][0] < oldest):
            _, self.lost, _, cost = kept.popleft()
            self.kept_bytes -= cost
        presence = self.presence
        while presence and (len(presence) > self.size or presence[0][0] < oldest):
            presence.popleft()

    def last_id(self) -> str:
        with self.lock:
            return f"{self.boot}-{self.seq}" if self.seq else "0"

    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        key = parse_id(last_id)
        with self.lock:
            self._trim(time.monotonic())
            if key is None or (key != (0, 0) and (key[0] != self.boot or key[1] > self.seq)):
                return [], False
            seq = key[1] if key != (0, 0) else 0
            if seq < self.lost:
                return [], False
            kept, presence = _after(self.kept, seq), _after(self.presence, seq)
        return [entry[2] for entry in heapq.merge(kept, presence, key=lambda entry: entry[1])], True


def _after(entries: deque, seq: int) -> list:
    """The entries after `seq`, oldest first (read from the newest end: resumes are mostly recent)."""
    found = []
    for entry in reversed(entries):
        if entry[1] <= seq:
            break
        found.append(entry)
    found.reverse()
    return found
