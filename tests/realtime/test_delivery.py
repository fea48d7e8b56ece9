"""Delivery guarantees against real servers: resume, slow clients, heartbeat, limits, lifetime."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.conftest import http_for, settle_events, token_of
from tests.live import ROOT, Server, SSEClient, free_port, wait_until
from tests.realtime.conftest import PRODUCT_FIELDS, records_of, stream_of

RECORDS = "/api/v1/collections/products/records/"  # on servers of one test only (made through them)


@pytest.fixture
def products_live(make_live_collection: Any) -> dict[str, Any]:
    return make_live_collection("products", PRODUCT_FIELDS, list_rule="", view_rule="")


def test_resume_with_header_or_parameter_replays_what_was_missed(
    live: Server, open_stream: Any, staff_http: Any, products_live: Any
) -> None:
    stream = open_stream(live, stream_of(products_live))
    stream.next()
    staff_http.post(records_of(products_live), json={"name": "seen"})
    last_seen = stream.next_of("record.created").id
    stream.close()
    missed = [staff_http.post(records_of(products_live), json={"name": f"missed{i}"}).json()["id"] for i in range(3)]
    by_header = open_stream(live, stream_of(products_live), headers={"Last-Event-ID": last_seen})
    connected = by_header.next().json["data"]
    assert connected["recovered"] is True
    assert connected["last_event_id"] == last_seen
    assert [by_header.next_of("record.created").json["record_id"] for _ in missed] == missed
    by_parameter = open_stream(live, stream_of(products_live), last_event_id=last_seen)
    assert by_parameter.next().json["data"]["recovered"] is True
    assert [by_parameter.next_of("record.created").json["record_id"] for _ in missed] == missed
    # The header (the browser's newest id) wins over a stale parameter.
    newest = by_header.drain(0.1) or None
    assert newest is None


def test_unknown_event_id_is_not_recovered(live: Server, open_stream: Any, staff_http: Any, products_live: Any) -> None:
    staff_http.post(records_of(products_live), json={"name": "old"})
    for unknown in ("1-1", "not-an-id", "99999999999999-5"):
        settle_events(live)  # the previous write's event is not what this stream must not replay
        stream = open_stream(live, stream_of(products_live), last_event_id=unknown)
        data = stream.next().json["data"]
        assert data["recovered"] is False
        assert data["last_event_id"] == unknown
        assert stream.drain(0.2) == []  # nothing replayed: the client must refetch
        staff_http.post(records_of(products_live), json={"name": "live"})
        assert stream.next_of("record.created").json["data"]["name"] == "live"  # and it goes on live


def test_replay_applies_the_rules_of_now(
    live: Server, open_stream: Any, make_live_collection: Any, alice: User, bob: User, staff: User
) -> None:
    notes = make_live_collection("notes", PRODUCT_FIELDS, list_rule="owner = @request.auth.id")
    with http_for(live, staff) as staff_http:
        marker = staff_http.get(records_of(notes)).headers["x-last-event-id"]
        staff_http.post(records_of(notes), json={"name": "alice's", "owner": str(alice.pk), "secret": "s"})
        staff_http.post(records_of(notes), json={"name": "bob's", "owner": str(bob.pk)})
    as_bob = open_stream(live, "/api/v1/realtime", user=bob, last_event_id=marker)
    assert as_bob.next().json["data"]["recovered"] is True
    replayed = [e.json for e in as_bob.drain(0.5) if e.event == "record.created"]
    assert [r["data"]["name"] for r in replayed] == ["bob's"]
    as_alice = open_stream(live, stream_of(notes), user=alice, last_event_id=marker)
    as_alice.next()
    mine = as_alice.next_of("record.created").json["data"]
    assert mine["name"] == "alice's"
    assert "secret" not in mine


def test_burst_with_reconnecting_clients_has_no_gap_and_no_duplicate(
    live: Server, staff: User, products_live: Any
) -> None:
    total = 150
    created: list[str] = []

    def write() -> None:
        with http_for(live, staff) as client:
            for index in range(total):
                created.append(client.post(records_of(products_live), json={"name": f"r{index}"}).json()["id"])

    readers = 3
    received: list[list[str]] = [[] for _ in range(readers)]

    def read(slot: int) -> None:
        last_id = None
        url = f"{live.url}{stream_of(products_live)}"
        deadline = time.monotonic() + 60
        while len(received[slot]) < total and time.monotonic() < deadline:
            client = SSEClient(url, headers={"Last-Event-ID": last_id} if last_id else {})
            try:
                client.next()  # connected
                for _ in range(7 + slot):  # a few events, then drop the connection mid-burst
                    event = client.next_of("record.created", timeout=15)
                    received[slot].append(event.json["record_id"])
                    last_id = event.id
                    if len(received[slot]) == total:
                        break
            finally:
                client.close()

    stream_for_start = SSEClient(f"{live.url}{stream_of(products_live)}")
    stream_for_start.next()
    threads = [threading.Thread(target=read, args=(slot,)) for slot in range(readers)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    write()
    for thread in threads:
        thread.join(timeout=90)
    stream_for_start.close()
    for ids in received:
        assert len(ids) == len(set(ids)), "duplicates"
        assert ids == created, "gap or reordering"


def test_slow_subscriber_is_disconnected_while_others_keep_up(
    live_servers: Any, transactional_db: None, staff: User
) -> None:
    # The limit counts while a stream is stuck writing: the client that does not read passes 20
    # queued frames soon; the one that reads never gets stuck, whatever bursts the worker reads.
    server = live_servers(FASTCMS_SSE_QUEUE_SIZE="20")
    with http_for(server, staff) as staff_http, socket.socket() as slow:
        staff_http.post("/api/v1/collections/", json={"name": "products", "fields": PRODUCT_FIELDS, "list_rule": ""})
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(b"GET /api/v1/realtime/products?user_id=slowpoke HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read

        def present() -> list[str]:  # with Redis, every server of the session shares presence
            return [u["user_id"] for u in staff_http.get("/api/v1/presence").json()["users"]]

        with SSEClient(f"{server.url}/api/v1/realtime/products") as fast:
            fast.next()
            time.sleep(0.3)
            assert "slowpoke" in present()
            payload = "x" * 60_000
            started = time.monotonic()
            for index in range(120):
                staff_http.post(RECORDS, json={"name": f"big{index}{payload}"})
            received = [fast.next_of("record.created", timeout=10) for _ in range(120)]
        assert len(received) == 120
        assert time.monotonic() - started < 30  # the slow one never held the others back
        # The slow subscriber was closed: its presence ends (after the grace period).
        assert wait_until(lambda: "slowpoke" not in present(), timeout=10)


def test_heartbeat_on_idle_streams(live: Server, open_stream: Any) -> None:
    stream = open_stream(live, "/api/v1/realtime")
    stream.next()
    ping = stream.next(timeout=3, skip_pings=False)
    assert ping.event == ": ping"
    assert ping.data == ": ping"


def test_connection_limits(live_servers: Any, transactional_db: None, alice: User) -> None:
    server = live_servers(FASTCMS_SSE_MAX_PER_CLIENT="2", FASTCMS_SSE_MAX_CONNECTIONS="5")
    url = f"{server.url}/api/v1/realtime"
    # Addresses of their own: with Redis the per-IP count covers every server of the session.
    opened = [SSEClient(url, source="127.0.0.91"), SSEClient(url, source="127.0.0.91")]
    try:
        refused = SSEClient(url, source="127.0.0.91")
        assert refused.status == 429
        assert refused.json_error()["code"] == "too_many_connections"
        opened += [SSEClient(url, source="127.0.0.92"), SSEClient(url, source="127.0.0.92")]
        as_alice = SSEClient(url, headers={"Authorization": f"Token {token_of(alice)}"}, source="127.0.0.91")
        assert as_alice.status == 200  # per user, not per IP, when authenticated
        opened.append(as_alice)
        busy = SSEClient(url, source="127.0.0.93")
        assert busy.status == 503
        assert busy.json_error()["code"] == "server_busy"
        opened[0].close()
        attempts = []
        while len(attempts) < 20 and (not attempts or attempts[-1].status != 200):
            time.sleep(0.1)  # the server learns of the close (and with Redis, tells it) a moment later
            attempts.append(SSEClient(url, source="127.0.0.91"))
        opened += attempts
        assert attempts[-1].status == 200  # a closed stream frees its place
    finally:
        for client in opened:
            client.close()


def test_streams_close_at_maximum_age_and_resume(live_servers: Any, transactional_db: None, staff: User) -> None:
    server = live_servers(FASTCMS_SSE_MAX_AGE="1.5")
    with http_for(server, staff) as staff_http:
        staff_http.post("/api/v1/collections/", json={"name": "products", "fields": PRODUCT_FIELDS, "list_rule": ""})
        stream = SSEClient(f"{server.url}/api/v1/realtime/products")
        stream.next()
        staff_http.post(RECORDS, json={"name": "one"})
        last = stream.next_of("record.created").id
        assert stream.ended.wait(4)  # closed cleanly by the server
        staff_http.post(RECORDS, json={"name": "two"})
        resumed = SSEClient(f"{server.url}/api/v1/realtime/products", headers={"Last-Event-ID": last})
        assert resumed.next().json["data"]["recovered"] is True
        assert resumed.next_of("record.created").json["data"]["name"] == "two"
        resumed.close()
        stream.close()


def test_sigterm_ends_every_stream_within_five_seconds(live_servers: Any, transactional_db: None) -> None:
    live_servers()  # the test database is ready for servers
    server = Server({"FASTCMS_SSE_HEARTBEAT": "1"}).start()
    streams = [SSEClient(f"{server.url}/api/v1/realtime", source=f"127.0.0.{1 + i % 3}") for i in range(30)]
    for stream in streams:
        stream.next()
    took = server.stop(signal.SIGTERM, timeout=15)
    assert took < 5, server.output()
    assert all(stream.ended.wait(1) for stream in streams)
    # uvicorn exits gracefully, then re-raises the signal it caught: -SIGTERM is its clean exit.
    assert server.process is not None
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "Exception" not in server.output()
    assert "Traceback" not in server.output()
    for stream in streams:
        stream.close()


def test_open_streams_hold_no_threads(live: Server) -> None:
    warm = httpx.get(f"{live.url}/api/v1/realtime/none_such")  # an unknown collection: checked on the auth pool
    assert warm.status_code == 404
    warmup = [SSEClient(f"{live.url}/api/v1/realtime", source="127.0.0.9") for _ in range(12)]
    for client in warmup:
        client.close()
    time.sleep(0.5)
    before = live.threads()
    streams = [SSEClient(f"{live.url}/api/v1/realtime", source=f"127.0.1.{1 + i // 40}") for i in range(200)]
    try:
        assert all(stream.status == 200 for stream in streams)
        for stream in streams:
            stream.next()
        during = live.threads()
    finally:
        for stream in streams:
            stream.close()
    assert during <= before + 2, (before, during)


@pytest.mark.postgresql
def test_open_streams_hold_no_database_connections(live: Server) -> None:
    from django.db import connection

    def server_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [connection.settings_dict["NAME"]],
            )
            return cursor.fetchone()[0]

    before = server_connections()
    streams = [SSEClient(f"{live.url}/api/v1/realtime", source=f"127.0.2.{1 + i // 40}") for i in range(100)]
    try:
        for stream in streams:
            stream.next()
        assert server_connections() <= before + 4  # at most the auth pool's threads
    finally:
        for stream in streams:
            stream.close()


def test_tokens_in_urls_never_reach_the_logs(live: Server, staff: User, open_stream: Any) -> None:
    token = token_of(staff)
    stream = open_stream(live, "/api/v1/realtime", token=token)
    assert stream.next().event == "connected"
    bad = open_stream(live, "/api/v1/realtime", token="wrong-secret-value")
    assert bad.status == 401
    time.sleep(0.3)
    output = live.output()
    assert "/api/v1/realtime?token=***" in output
    assert token not in output
    assert "wrong-secret-value" not in output


def test_compression_never_touches_the_stream(live_servers: Any, transactional_db: None, staff: User) -> None:
    live_servers()
    with Server({"DJANGO_SETTINGS_MODULE": "tests.gzip_settings"}) as server:
        stream = SSEClient(f"{server.url}/api/v1/realtime", headers={"Accept-Encoding": "gzip"})
        assert stream.status == 200
        assert stream.response_headers.get("content-encoding", "identity") == "identity"
        assert stream.next().event == "connected"
        stream.close()
        page = httpx.get(
            f"{server.url}/api/v1/schema/",
            headers={"Accept-Encoding": "gzip", "Authorization": f"Token {token_of(staff)}"},
        )
        assert page.headers.get("content-encoding") == "gzip"  # the middleware is really on


def test_runserver_serves_streams_and_static_files(live_servers: Any, transactional_db: None) -> None:
    live_servers()
    port = free_port()
    env = {**Server().env, "DEBUG": "true"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/presence", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        stream = SSEClient(f"http://127.0.0.1:{port}/api/v1/realtime")
        assert stream.status == 200
        assert stream.next().event == "connected"
        css = httpx.get(f"http://127.0.0.1:{port}/static/admin/css/base.css")
        assert css.status_code == 200
        assert "text/css" in css.headers["content-type"]
        stream.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=15)[0].decode()
    assert "Uvicorn running" in output or "Starting development server" in output, output


def test_admin_writes_emit_events(live: Server, open_stream: Any, products_live: Any) -> None:
    User.objects.create_superuser("root", "root@example.com", "root-pass")
    stream = open_stream(live, stream_of(products_live))
    stream.next()
    with httpx.Client(base_url=live.url, follow_redirects=False) as browser:
        login = browser.get("/admin/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post(
            "/admin/login/",
            data={"username": "root", "password": "root-pass", "csrfmiddlewaretoken": csrf, "next": "/admin/"},
        )
        add = f"/admin/collections_app/record/add/?collection={products_live['name']}"
        form = browser.get(add)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        saved = browser.post(
            add,
            data={"name": "from the admin", "price": "3", "csrfmiddlewaretoken": csrf},
        )
        assert saved.status_code == 302, saved.text[:500]
    assert stream.next_of("record.created").json["data"]["name"] == "from the admin"
