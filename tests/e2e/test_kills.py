"""Workers SIGKILLed in the middle of the writes they are making: no committed change loses its
event, none arrives twice, and a record's events keep their order.

Writers create and update records as fast as they can through a pre-forked server
(`tests.prefork`), whose workers are killed at random moments. They reach Redis through a slow
proxy, so a kill often lands between a commit and the relay of its event. A subscriber on
another server must receive, exactly once and in order, the event of every write that committed:
the ones that answered, and the ones cut off after their commit (found in the database).
`FASTCMS_KILL_TEST_KILLS` sets the number of kills (default 50).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection

from collections_app.models import Record
from realtime.models import OutboxEvent
from tests.conftest import settle_events, token_of
from tests.e2e.test_cluster import CLUSTER_ENV
from tests.live import Server, SSEClient, wait_until
from tests.prefork import PreforkServer
from tests.proxy import TCPProxy

pytestmark = [pytest.mark.redis, pytest.mark.postgresql]

KILLS = int(os.environ.get("FASTCMS_KILL_TEST_KILLS", "50"))
WRITERS = 4
COLLECTION = {
    "name": "ledger",
    "fields": [{"name": "name", "type": "text"}, {"name": "n", "type": "number"}],
    "list_rule": "",
}
RECORDS = "/api/v1/collections/ledger/records/"


@dataclass
class Writer:
    """One writer thread: it updates its own record (n = 1, 2, ...) and creates others."""

    index: int
    record_id: str = ""
    committed: list[int] = field(default_factory=list)  # the n values the database accepted
    cut_off: int = 0  # writes whose connection died (committed or not)
    done: int = 0  # writes finished, answered or cut off
    errors: list[str] = field(default_factory=list)


def settled_since(moment: datetime, timeout: float = 20) -> None:
    """Wait until every transaction begun before `moment` has ended (a killed worker's included:
    the database commits or rolls it back once it sees the connection close)."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND xact_start < %s",
                [moment],
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    raise TimeoutError("a transaction of a killed worker never ended")


def write_until(stop: threading.Event, writer: Writer, url: str, headers: dict[str, str]) -> None:
    n = 0
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as api:
            while not stop.is_set():
                n += 1
                try:
                    if n % 4 == 0:
                        response = api.post(RECORDS, json={"name": f"w{writer.index}-{n}"})
                    else:
                        response = api.patch(f"{RECORDS}{writer.record_id}/", json={"n": n})
                except httpx.TransportError:
                    writer.done += 1
                    writer.cut_off += 1
                    if n % 4 != 0:
                        settled_since(datetime.now(UTC))  # the killed worker's transaction began before
                        if Record.objects.get(pk=writer.record_id).data["n"] == n:
                            writer.committed.append(n)  # committed, then cut off before answering
                    continue
                writer.done += 1
                if response.status_code not in (200, 201):
                    writer.errors.append(f"{response.status_code} {response.text[:200]}")
                elif n % 4 != 0:
                    writer.committed.append(n)
    except Exception as exc:
        writer.errors.append(repr(exc))
    finally:
        connection.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_killed_writers_lose_no_committed_event(
    live_servers: Any, transactional_db: None, staff: User, proxy: TCPProxy
) -> None:
    live_servers()  # the test database is ready for servers
    env = {**CLUSTER_ENV, "FASTCMS_SSE_QUEUE_SIZE": "100000"}
    observer = Server(env).start()
    proxy.delay = 0.01  # the writers' relays append some 30 ms after each commit
    writers_server = PreforkServer({**env, "REDIS_URL": proxy.url}, workers=3).start()
    headers = {"Authorization": f"Token {token_of(staff)}"}
    stream: SSEClient | None = None
    try:
        with httpx.Client(base_url=observer.url, headers=headers, timeout=30) as api:
            assert api.post("/api/v1/collections/", json=COLLECTION).status_code == 201
            writers = [Writer(i) for i in range(WRITERS)]
            for writer in writers:
                writer.record_id = api.post(RECORDS, json={"name": f"own{writer.index}", "n": 0}).json()["id"]
            settle_events(observer)  # those creates' events are not what this test waits for
            stream = SSEClient(f"{observer.url}/api/v1/realtime/ledger")
            assert stream.next().event == "connected"
        stop = threading.Event()
        threads = [threading.Thread(target=write_until, args=(stop, w, writers_server.url, headers)) for w in writers]
        for thread in threads:
            thread.start()
        kills = left_behind = 0
        try:
            while kills < KILLS:
                # A burst of writes between kills (about one per writer), then a kill at a random moment.
                progress = sum(w.done for w in writers)
                assert wait_until(lambda: sum(w.done for w in writers) >= progress + WRITERS, 30)  # noqa: B023
                time.sleep(random.uniform(0, 0.2))
                pids = writers_server.worker_pids()
                if not pids:
                    continue
                victim = random.choice(pids)
                os.kill(victim, signal.SIGKILL)
                kills += 1
                # Committed events the victim had not relayed yet (its keys start with its pid).
                left_behind += OutboxEvent.objects.filter(key__startswith=f"{victim:x}-").exists()
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)

        assert [e for w in writers for e in w.errors] == []
        # Every committed write, and nothing else, reaches the subscriber on the other server.
        expected_created = set(Record.objects.filter(collection__name="ledger").values_list("id", flat=True))
        expected_created -= {w.record_id for w in writers}  # created before the stream opened
        expected_updates = {w.record_id: w.committed for w in writers}
        created: list[str] = []
        updates: dict[str, list[int]] = {w.record_id: [] for w in writers}
        lateness: list[float] = []
        wanted = len(expected_created) + sum(len(v) for v in expected_updates.values())
        received = []
        with contextlib.suppress(TimeoutError):
            while len(received) < wanted:
                received.append(stream.next_of("record.created", "record.updated", timeout=60))
        received += [e for e in stream.drain(2.0) if e.event.startswith("record.")]  # any extra copies
        for event in received:
            data = event.json["data"]
            committed_at = datetime.fromisoformat(data["updated"].replace("Z", "+00:00")).timestamp()
            lateness.append(event.received - committed_at)
            if event.event == "record.created":
                created.append(data["id"])
            else:
                updates[data["id"]].append(data["n"])
        assert sorted(created) == sorted(expected_created)
        problems = {
            record_id: {
                "missing": sorted(set(expected) - set(updates[record_id])),
                "extra": sorted(set(updates[record_id]) - set(expected)),
                "twice": sorted({n for n in updates[record_id] if updates[record_id].count(n) > 1}),
                "out of order": updates[record_id] != sorted(updates[record_id]),
            }
            for record_id, expected in expected_updates.items()
            if updates[record_id] != expected
        }
        assert not problems, problems  # each committed update once, in commit order
        assert not OutboxEvent.objects.exists()
        cut_off = sum(w.cut_off for w in writers)
        print(
            f"\n{kills} kills ({left_behind} with committed events not yet relayed), {wanted} events, "
            f"{cut_off} writes cut off; lateness commit -> receipt: p50 {statistics.median(lateness) * 1000:.0f} ms, "
            f"p99 {percentile(lateness, 0.99) * 1000:.0f} ms, max {max(lateness) * 1000:.0f} ms"
        )
    finally:
        if stream is not None:
            stream.close()
        writers_server.stop()
        observer.stop()
