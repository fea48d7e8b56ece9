"""Heartbeats and maximum ages of open streams, on a timing wheel.

Each stream is filed under the tick when it next needs a look (its next `: ping` or its maximum
age), so the ticker visits each stream about once per heartbeat period, not every stream every
tick: idle streams cost the loop almost nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Container

from realtime.conf import realtime_settings
from realtime.subscribers import MAX_AGE, Subscriber


class HeartbeatWheel:
    """The timing wheel of one bus; `registered` holds the streams still open."""

    def __init__(self, registered: Container[Subscriber]) -> None:
        self.registered = registered
        self.tick = 1.0
        self.slots: dict[int, list[Subscriber]] = {}  # tick number -> streams to look at then
        self.position = 0  # the last tick number the ticker has emptied

    def configure(self) -> None:
        """Read the tick from the heartbeat setting (at start, not at import)."""
        self.tick = min(1.0, realtime_settings.FASTCMS_SSE_HEARTBEAT / 4)

    def _slot(self, at: float) -> int:
        return int(at / self.tick) + 1

    def schedule(self, sub: Subscriber, now: float) -> None:
        """File `sub` under the tick when it next needs a look (heartbeat or maximum age)."""
        heartbeat, max_age = realtime_settings.FASTCMS_SSE_HEARTBEAT, realtime_settings.FASTCMS_SSE_MAX_AGE
        due = min(sub.last_write + heartbeat, sub.opened + max_age)
        # Never into a slot the ticker has passed (or is emptying): it would not be seen again.
        slot = max(self._slot(due), self.position + 1)
        self.slots.setdefault(slot, []).append(sub)

    async def run(self) -> None:
        """Wake streams due a ping, close those past their maximum age; forever."""
        self.position = self._slot(time.monotonic()) - 1
        while True:
            await asyncio.sleep(self.tick)
            now = time.monotonic()
            current = self._slot(now)
            heartbeat, max_age = realtime_settings.FASTCMS_SSE_HEARTBEAT, realtime_settings.FASTCMS_SSE_MAX_AGE
            while self.position < current:
                self.position += 1
                for sub in self.slots.pop(self.position, ()):
                    if sub.closed or sub not in self.registered:
                        continue
                    if now - sub.opened >= max_age:
                        sub.close(MAX_AGE)
                        continue
                    if now - sub.last_write >= heartbeat and not sub.queue:
                        sub.ping_due = True
                        sub.wake()
                        sub.last_write = now  # the ping about to be written
                    self.schedule(sub, now)
