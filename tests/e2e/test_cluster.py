"""Several real uvicorn workers sharing Redis and the database, as deployments run them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.conftest import http_for
from tests.live import Server, free_port, wait_until

pytestmark = pytest.mark.redis

PRODUCTS = {
    "name": "products",
    "fields": [{"name": "name", "type": "text"}, {"name": "price", "type": "number"}],
    "list_rule": "",
}
RECORDS = "/api/v1/collections/products/records/"
CLUSTER_ENV = {
    "FASTCMS_SSE_HEARTBEAT": "1",
    "FASTCMS_PRESENCE_GRACE": "0.3",
    "FASTCMS_PRESENCE_TTL": "3",
}


@pytest.fixture
def cluster(live_servers: Any, transactional_db: None) -> Any:
    live_servers()  # the test database is ready for servers
    servers = [Server(CLUSTER_ENV).start(), Server(CLUSTER_ENV).start()]
    yield servers
    for server in servers:
        server.stop()


def presence_of(server: Server) -> dict[str, int]:
    return {u["user_id"]: u["connections"] for u in httpx.get(f"{server.url}/api/v1/presence").json()["users"]}


def test_events_cross_workers_in_order(cluster: list[Server], clients: Any, staff: User) -> None:
    a, b = cluster
    with http_for(a, staff) as on_a, http_for(b, staff) as on_b:
        assert on_a.post("/api/v1/collections/", json=PRODUCTS).status_code == 201
        stream_a = clients(f"{a.url}/api/v1/realtime/products")
        stream_b = clients(f"{b.url}/api/v1/realtime/products")
        stream_a.next()
        stream_b.next()
        written = []
        for index in range(10):
            writer = on_b if index % 2 else on_a
            written.append(writer.post(RECORDS, json={"name": f"n{index}"}).json()["id"])
        for stream in (stream_a, stream_b):
            received = [stream.next_of("record.created").json["record_id"] for _ in written]
            assert received == written


def test_resume_on_another_worker(cluster: list[Server], clients: Any, staff: User) -> None:
    a, b = cluster
    with http_for(b, staff) as on_b:
        on_b.post("/api/v1/collections/", json=PRODUCTS)
        stream = clients(f"{a.url}/api/v1/realtime/products")
        stream.next()
        on_b.post(RECORDS, json={"name": "seen"})
        last = stream.next_of("record.created").id
        stream.close()
        missed = [on_b.post(RECORDS, json={"name": f"missed{i}"}).json()["id"] for i in range(5)]
        elsewhere = clients(f"{b.url}/api/v1/realtime/products", headers={"Last-Event-ID": last})
        assert elsewhere.next().json["data"]["recovered"] is True
        assert [elsewhere.next_of("record.created").json["record_id"] for _ in missed] == missed
        assert [e for e in elsewhere.drain(0.3) if e.event == "record.created"] == []


def test_presence_is_cluster_wide(cluster: list[Server], clients: Any) -> None:
    a, b = cluster
    observer = clients(f"{b.url}/api/v1/realtime")
    observer.next()
    on_a = clients(f"{a.url}/api/v1/realtime?user_id=roamer")
    on_b = clients(f"{b.url}/api/v1/realtime?user_id=roamer")
    on_a.next()
    on_b.next()
    assert wait_until(lambda: presence_of(a).get("roamer") == 2 and presence_of(b).get("roamer") == 2, 5)
    joins = [e for e in observer.drain(0.5) if e.event == "user.joined" and e.json["data"]["user_id"] == "roamer"]
    assert len(joins) == 1
    on_a.close()
    assert wait_until(lambda: presence_of(b).get("roamer") == 1, 5)
    on_b.close()
    left = observer.next_for("user.left", user_id="roamer", timeout=5).json["data"]
    assert left["connections"] == 0


def test_a_killed_worker_loses_no_event_and_its_presence_expires(
    cluster: list[Server], clients: Any, staff: User
) -> None:
    a, b = cluster
    with http_for(b, staff) as on_b:
        on_b.post("/api/v1/collections/", json=PRODUCTS)
        observer = clients(f"{b.url}/api/v1/realtime")
        observer.next()
        victim = clients(f"{a.url}/api/v1/realtime/products?user_id=victim")
        victim.next()
        assert wait_until(lambda: presence_of(b).get("victim") == 1, 5)
        on_b.post(RECORDS, json={"name": "before"})
        last = victim.next_of("record.created").id
        a.stop(signal.SIGKILL)
        during = [on_b.post(RECORDS, json={"name": f"during{i}"}).json()["id"] for i in range(3)]
        resumed = clients(f"{b.url}/api/v1/realtime/products", headers={"Last-Event-ID": last})
        assert resumed.next().json["data"]["recovered"] is True
        assert [resumed.next_of("record.created").json["record_id"] for _ in during] == during
        # The dead worker's connection expires (TTL 3 s here) and one survivor announces it.
        assert observer.next_for("user.left", user_id="victim", timeout=10).json["data"]["connections"] == 0
        assert "victim" not in presence_of(b)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server program")
def test_redis_restarted_mid_stream(
    live_servers: Any, transactional_db: None, clients: Any, staff: User, tmp_path: Any
) -> None:
    live_servers()
    port = free_port()
    command = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    # A log of its own: the other servers of this session share the database, not this Redis.
    env = {**CLUSTER_ENV, "REDIS_URL": f"redis://127.0.0.1:{port}/0", "FASTCMS_REDIS_PREFIX": "restarted"}
    server = Server(env).start()
    try:
        with http_for(server, staff) as api:
            api.post("/api/v1/collections/", json=PRODUCTS)
            stream = clients(f"{server.url}/api/v1/realtime/products")
            stream.next()
            api.post(RECORDS, json={"name": "before"})
            assert stream.next_of("record.created").json["data"]["name"] == "before"
            redis_process.terminate()
            redis_process.wait(10)
            written = api.post(RECORDS, json={"name": "while redis is down"})
            assert written.status_code == 201  # REST keeps working
            refused = clients(f"{server.url}/api/v1/realtime/products")
            assert refused.status == 503
            assert refused.json_error()["code"] == "realtime_unavailable"
            redis_process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
            # The event kept meanwhile is logged when Redis is back, and the open stream gets it.
            assert stream.next_of("record.created", timeout=20).json["data"]["name"] == "while redis is down"
            assert wait_until(lambda: clients(f"{server.url}/api/v1/realtime/products").status == 200, 10)
    finally:
        server.stop()
        redis_process.terminate()
        redis_process.wait(10)


def test_uvicorn_workers_share_events(live_servers: Any, transactional_db: None, clients: Any, staff: User) -> None:
    live_servers()
    with Server(CLUSTER_ENV, workers=2) as server, http_for(server, staff) as api:
        api.post("/api/v1/collections/", json=PRODUCTS)
        streams = [clients(f"{server.url}/api/v1/realtime/products") for _ in range(6)]
        for stream in streams:
            stream.next()
        created = [api.post(RECORDS, json={"name": f"w{i}"}).json()["id"] for i in range(4)]
        for stream in streams:
            assert [stream.next_of("record.created").json["record_id"] for _ in created] == created
