"""The relay: one thread per worker that moves events into the Redis log.

It appends two kinds of events, never on the event loop nor in a request:
- events of no database write (presence), handed over by this process through a lock-free
  queue; lost if the process dies first (presence expiry then produces the `user.left`);
- outbox rows (`realtime.models.OutboxEvent`), written in each write's transaction by any
  process. A commit wakes its own worker's relay at once; every relay also looks for rows left
  behind (by a worker that died, or kept while Redis was away) every `SWEEP` seconds.

Outbox rows are appended in id order, by one relay at a time in the cluster: a relay takes a
Redis lock (`SET NX PX`), reads the oldest rows, and appends them with the log's script, which
checks that the lock is still its own (a relay that stalled past the lock's expiry is fenced off,
so two relays never interleave) and records each row's key, so a row relayed by a relay that died
before deleting it is appended once. Appended rows are deleted in batches (every DELETE_EVERY
seconds or DELETE_BATCH rows). Holding no database transaction while Redis is called, a relay
never holds up writers.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

import redis
from django.db import DatabaseError, connection

from realtime import outbox
from realtime.backends.redis_log import APPEND, FENCED, Bounds, Entry, LogKeys, append_args, kind_of

logger = logging.getLogger(__name__)

SWEEP = 1.0  # seconds between looks for rows that no commit of this worker announced
BATCH = 200  # rows per append
BATCH_BYTES = 1 << 20
LOCK_MS = 1000  # the relay lock's lease (renewed by each batch); a relay that died holding it delays others this long
DELETE_EVERY = 0.1  # seconds an appended row may wait for its (batched) delete
DELETE_BATCH = 100
QUEUE_LIMIT = 10_000  # presence events waiting while Redis does not answer (oldest dropped)
MAX_BACKOFF = 2.0

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Relay:
    """Appends this process's queued events and the cluster's outbox rows to the Redis log."""

    def __init__(self, url: str, log: str, keys: LogKeys, bounds: Callable[[], Bounds]) -> None:
        self.log = log  # the outbox rows of this log (its prefix) are this relay's
        self.keys = keys
        self.bounds = bounds
        # Off the loop and off requests, so a Redis that does not answer only delays this thread.
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.append_script = self.client.register_script(APPEND)
        self.release_script = self.client.register_script(RELEASE)
        self.queue: deque[Entry] = deque(maxlen=QUEUE_LIMIT)
        self.rows_waiting = True  # look at the outbox first thing
        self.appended: set[int] = set()  # outbox rows appended, not yet deleted
        self.appended_at = 0.0
        self.wakeup = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.failing = False

    # --- any thread ---------------------------------------------------------------------------

    def start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.stopping.clear()
            self.thread = threading.Thread(target=self.run, name="fastcms-relay", daemon=True)
            self.thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop after sending what is queued (for at most `timeout` seconds)."""
        self.stopping.set()
        self.wakeup.set()
        if self.thread is not None:
            self.thread.join(timeout)
        self.client.close()

    def enqueue(self, entry: Entry) -> None:
        """Append an event of no database write (lock-free: a deque append and a wake-up)."""
        if len(self.queue) == QUEUE_LIMIT:
            logger.warning("relay queue full (Redis does not answer): dropping the oldest presence event")
        self.queue.append(entry)
        self.wakeup.set()

    def wake(self) -> None:
        """A write committed outbox rows: relay them now."""
        self.rows_waiting = True
        self.wakeup.set()

    # --- the relay thread ---------------------------------------------------------------------

    def run(self) -> None:
        delay = 0.1
        swept = 0.0
        try:
            while True:
                self.wakeup.wait(DELETE_EVERY if self.appended else SWEEP)
                self.wakeup.clear()
                stopping = self.stopping.is_set()
                try:
                    self._delete_appended(force=stopping)
                    self._send_queued()
                    if self.rows_waiting or time.monotonic() - swept >= SWEEP:
                        swept = time.monotonic()
                        announced, self.rows_waiting = self.rows_waiting, False
                        self._relay_rows(check_first=not announced)
                    if self.failing:
                        logger.info("relay: Redis answers again; events kept meanwhile are being appended")
                    self.failing = False
                    delay = 0.1
                except Exception as exc:
                    self.rows_waiting = True
                    if stopping:
                        return
                    self._report(exc)
                    self.stopping.wait(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                if stopping:
                    return
        finally:
            connection.close()  # this thread's database connection

    def _delete_appended(self, *, force: bool = False) -> None:
        """Delete the appended rows, when enough of them or the oldest has waited long enough."""
        due = len(self.appended) >= DELETE_BATCH or time.monotonic() - self.appended_at >= DELETE_EVERY
        if self.appended and (force or due):
            outbox.delete(sorted(self.appended))
            self.appended.clear()

    def _report(self, exc: Exception) -> None:
        if isinstance(exc, DatabaseError):
            logger.warning("relay: the database failed (%s); retrying", exc)
            connection.close()
        elif isinstance(exc, redis.RedisError | OSError):
            if not self.failing:
                logger.warning("relay: Redis does not answer (%s); events wait in the outbox", exc)
            self.failing = True
        else:
            logger.exception("relay failed; retrying")

    def _send_queued(self) -> None:
        while self.queue:
            batch: list[Entry] = []
            while self.queue and len(batch) < BATCH:
                batch.append(self.queue.popleft())
            try:
                self.append_script(keys=self.keys.as_list(), args=append_args(batch, self.bounds()))
            except Exception:
                self.queue.extendleft(reversed(batch))  # in order, for the next attempt
                raise

    def _relay_rows(self, *, check_first: bool) -> None:
        """Append every outbox row (oldest first) while holding the cluster's relay lock."""
        if check_first:
            self._delete_appended(force=True)
            if not outbox.any_left(self.log):
                return
        token = secrets.token_hex(8)
        if not self._acquire(token):
            self.rows_waiting = True  # another relay is at it; look again next time
            return
        released = False
        try:
            while not self.stopping.is_set():
                rows, last = outbox.oldest(self.log, BATCH, BATCH_BYTES)
                fresh = [row for row in rows if row.id not in self.appended]
                if not fresh:
                    break
                entries = [Entry(kind_of(row.type), row.key, row.payload, row.key, row.id) for row in fresh]
                args = append_args(
                    entries, self.bounds(), token=token, floor=rows[0].id, release=last, lease_ms=LOCK_MS
                )
                try:
                    self.append_script(keys=self.keys.as_list(), args=args)
                except redis.ResponseError as exc:
                    if str(exc).startswith(FENCED):
                        logger.warning("relay: lost the relay lock mid-way; another relay carries on")
                        released = True
                        return
                    raise
                released = last
                if not self.appended:
                    self.appended_at = time.monotonic()
                self.appended.update(row.id for row in fresh)
                if last:
                    break
                self._delete_appended(force=True)  # so the next read moves on
        finally:
            if not released:
                self._release(token)

    def _acquire(self, token: str) -> bool:
        """Take the relay lock, waiting a little while another relay holds it."""
        deadline = time.monotonic() + 2 * LOCK_MS / 1000
        while not self.client.set(self.keys.lock, token, nx=True, px=LOCK_MS):
            if time.monotonic() > deadline or self.stopping.is_set():
                return False
            time.sleep(0.01)
        return True

    def _release(self, token: str) -> None:
        try:
            self.release_script(keys=[self.keys.lock], args=[token])
        except redis.RedisError as exc:
            logger.debug("relay: could not release the lock (it expires by itself): %s", exc)
