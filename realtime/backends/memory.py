"""Events in this process only (the default): one worker, no other process's writes."""

from __future__ import annotations

import threading
import time
from collections import deque

from realtime.backends.base import Backend, parse_id
from realtime.events import Event


class MemoryBackend(Backend):
    """Ids and history in this process: ids are `<boot ms>-<seq>`, so a restart never reuses one."""

    def __init__(self, *, size: int, seconds: float) -> None:
        super().__init__(size=size, seconds=seconds)
        self.boot = int(time.time() * 1000)
        self.seq = 0
        self.history: deque[tuple[float, Event]] = deque()
        self.lock = threading.Lock()

    def append(self, event: Event) -> None:
        # One lock gives ids and hands events to the loop in the same order: the commit order.
        with self.lock:
            self.seq += 1
            event.id = f"{self.boot}-{self.seq}"
            now = time.monotonic()
            self.history.append((now, event))
            self._trim(now)
            self.deliver(event)

    def _trim(self, now: float) -> None:
        while self.history and (len(self.history) > self.size or now - self.history[0][0] > self.seconds):
            self.history.popleft()

    def last_id(self) -> str:
        with self.lock:
            return f"{self.boot}-{self.seq}" if self.seq else "0"

    async def history_after(self, last_id: str) -> tuple[list[Event], bool]:
        key = parse_id(last_id)
        with self.lock:
            self._trim(time.monotonic())
            first = self.seq - len(self.history) + 1  # seq of the oldest kept event
            if key is None or (key != (0, 0) and (key[0] != self.boot or key[1] > self.seq)):
                return [], False
            seq = key[1] if key != (0, 0) else 0
            if seq < first - 1:
                return [], False
            return [event for _, event in list(self.history)[seq - first + 1 :]], True
