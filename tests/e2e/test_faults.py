"""Faults of Redis and of workers, with real uvicorn workers on PostgreSQL and Redis.

Redis is reached through a TCP proxy (`tests.proxy`) that the tests switch between passing,
refusing and black-holing (accepting connections, never answering).
"""

from __future__ import annotations

import signal
import statistics
import threading
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.conftest import http_for
from tests.e2e.test_cluster import CLUSTER_ENV, PRODUCTS, RECORDS
from tests.live import Server, SSEClient, SSEEvent
from tests.proxy import BLACKHOLE, PASS, REFUSE, TCPProxy

pytestmark = [pytest.mark.redis, pytest.mark.postgresql]

OUTAGE = 15.0  # seconds Redis stays black-holed


@pytest.fixture
def servers(live_servers: Any, transactional_db: None) -> Any:
    """Start servers (`servers(env, ...)`), stopped after the test."""
    live_servers()  # the test database is ready for servers
    started: list[Server] = []

    def start(*envs: dict[str, str]) -> list[Server]:
        for env in envs:
            started.append(Server({**CLUSTER_ENV, **env}).start())
        return started[-len(envs) :]

    yield start
    for server in started:
        server.stop()


def everything(stream: SSEClient, wanted: int, timeout: float) -> list[SSEEvent]:
    """Every event and ping (in arrival order) until `wanted` record events have arrived."""
    found: list[SSEEvent] = []
    deadline = time.monotonic() + timeout
    while sum(e.event.startswith("record.") for e in found) < wanted:
        found.append(stream.next(timeout=max(0.01, deadline - time.monotonic()), skip_pings=False))
    return found


def changes(events: list[SSEEvent]) -> list[tuple[str, str]]:
    return [(e.event, e.json["record_id"]) for e in events if e.event.startswith("record.")]


def probe(server: Server, stop: threading.Event, open_times: list[float], presence_times: list[float]) -> None:
    """Open a stream and ask who is present, again and again: each must answer within 3 s."""
    while not stop.wait(0.5):
        started = time.monotonic()
        fresh = SSEClient(f"{server.url}/api/v1/realtime/products")
        open_times.append(time.monotonic() - started)
        if fresh.status != 200:
            assert (fresh.status, fresh.json_error()["code"]) == (503, "realtime_unavailable")
        fresh.close()
        started = time.monotonic()
        present = httpx.get(f"{server.url}/api/v1/presence", timeout=10)
        presence_times.append(time.monotonic() - started)
        assert present.status_code == 200 or present.json()["code"] == "realtime_unavailable"


def test_redis_black_holed_for_one_worker(servers: Any, clients: Any, proxy: TCPProxy, staff: User) -> None:
    a, b = servers({"REDIS_URL": proxy.url}, {})
    with http_for(a, staff) as on_a:
        assert on_a.post("/api/v1/collections/", json=PRODUCTS).status_code == 201
        on_a_stream = clients(f"{a.url}/api/v1/realtime/products")
        on_b_stream = clients(f"{b.url}/api/v1/realtime/products")
        for stream in (on_a_stream, on_b_stream):
            assert stream.next().event == "connected"
        proxy.set_mode(BLACKHOLE)
        began = time.time()
        stop = threading.Event()
        open_times: list[float] = []
        presence_times: list[float] = []
        prober = threading.Thread(target=probe, args=(a, stop, open_times, presence_times))
        prober.start()
        written: list[tuple[str, str]] = []
        write_times = []
        while time.time() - began < OUTAGE:
            started = time.monotonic()
            if len(written) % 5 == 4:  # updates of one record, among the creates
                response = on_a.patch(f"{RECORDS}{written[0][1]}/", json={"price": len(written)})
                written.append(("record.updated", written[0][1]))
            else:
                response = on_a.post(RECORDS, json={"name": f"w{len(written)}"})
                written.append(("record.created", response.json()["id"]))
            write_times.append(time.monotonic() - started)
            assert response.status_code in (200, 201)
            time.sleep(0.1)
        stop.set()
        prober.join(30)
        healed = time.time()
        proxy.set_mode(PASS)
        # Every write made meanwhile reaches both workers' streams, once, in order.
        seen_on_a = everything(on_a_stream, len(written), timeout=30)
        seen_on_b = everything(on_b_stream, len(written), timeout=30)
        assert changes(seen_on_a) == written
        assert changes(seen_on_b) == written
        for stream in (on_a_stream, on_b_stream):
            assert [e for e in stream.drain(1.0) if e.event.startswith("record.")] == []
    # The black-holed worker's loop kept its heartbeats (the setting is 1 s here).
    outage = [e.received for e in seen_on_a if began <= e.received <= healed]
    gaps = [later - earlier for earlier, later in zip([began, *outage], [*outage, healed], strict=True)]
    assert max(gaps) <= 2.0, gaps
    assert max(write_times) < 1.0, write_times
    assert open_times
    assert max(open_times) < 3.0, open_times
    assert max(presence_times) < 3.0, presence_times
    print(
        f"\nblack hole {OUTAGE:.0f} s: {len(written)} writes, p50 {statistics.median(write_times) * 1000:.0f} ms, "
        f"slowest {max(write_times) * 1000:.0f} ms; heartbeat gap max {max(gaps):.2f} s; "
        f"{len(open_times)} new streams answered within {max(open_times):.2f} s; "
        f"presence within {max(presence_times):.2f} s"
    )


def test_a_worker_killed_while_redis_is_down_loses_no_event(
    servers: Any, clients: Any, proxy: TCPProxy, staff: User
) -> None:
    a, b = servers({"REDIS_URL": proxy.url}, {"REDIS_URL": proxy.url})
    with http_for(a, staff) as on_a:
        assert on_a.post("/api/v1/collections/", json=PRODUCTS).status_code == 201
        stream = clients(f"{b.url}/api/v1/realtime/products")
        stream.next()
        on_a.post(RECORDS, json={"name": "before"})
        marker = stream.next_of("record.created").id
        proxy.set_mode(REFUSE)
        written = [on_a.post(RECORDS, json={"name": f"down{i}"}).json()["id"] for i in range(5)]
        updated = on_a.patch(f"{RECORDS}{written[0]}/", json={"name": "down0 again"})
        assert updated.status_code == 200
    a.stop(signal.SIGKILL)
    proxy.set_mode(PASS)
    # Worker b relays what the dead worker committed while Redis was down.
    received = [stream.next_of("record.created", "record.updated", timeout=20) for _ in range(6)]
    assert [(e.event, e.json["record_id"]) for e in received] == [
        *(("record.created", record_id) for record_id in written),
        ("record.updated", written[0]),
    ]
    resumed = clients(f"{b.url}/api/v1/realtime/products", headers={"Last-Event-ID": marker})
    assert resumed.next().json["data"]["recovered"] is True
    assert [resumed.next_of("record.created").json["record_id"] for _ in written] == written


def test_limits_count_every_worker_and_recover(servers: Any, clients: Any) -> None:
    a, b = servers({"FASTCMS_SSE_MAX_PER_CLIENT": "2"}, {"FASTCMS_SSE_MAX_PER_CLIENT": "2"})
    source = "127.0.0.61"  # an address of its own: the limit is per IP for anonymous streams
    first = clients(f"{a.url}/api/v1/realtime", source=source)
    second = clients(f"{b.url}/api/v1/realtime", source=source)
    assert (first.status, second.status) == (200, 200)
    for server in (a, b):
        refused = clients(f"{server.url}/api/v1/realtime", source=source)
        assert refused.status == 429
        assert refused.json_error()["code"] == "too_many_connections"
    first.close()  # a closed stream gives its place back, on every worker
    assert _admitted(clients, b, source, within=5)
    b.stop(signal.SIGKILL)  # a dead worker's streams stop counting within the TTL (3 s here)
    assert clients(f"{a.url}/api/v1/realtime", source=source).status == 429
    assert _admitted(clients, a, source, within=10)


def _admitted(clients: Any, server: Server, source: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if clients(f"{server.url}/api/v1/realtime", source=source).status == 200:
            return True
        time.sleep(0.3)
    return False


def test_opens_per_minute_count_every_worker(servers: Any, clients: Any) -> None:
    a, b = servers({"FASTCMS_SSE_OPENS_PER_MINUTE": "3"}, {"FASTCMS_SSE_OPENS_PER_MINUTE": "3"})
    source = "127.0.0.62"
    for server in (a, b, a):
        opened = clients(f"{server.url}/api/v1/realtime", source=source)
        assert opened.status == 200
        opened.close()
    for server in (a, b):
        refused = clients(f"{server.url}/api/v1/realtime", source=source)
        assert refused.status == 429
        assert refused.json_error()["code"] == "too_many_connections"
        assert 1 <= int(refused.response_headers["retry-after"]) <= 60
