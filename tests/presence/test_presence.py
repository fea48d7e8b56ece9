"""Presence against real servers: joins, leaves after the grace period, identity rules, cleanup."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from tests.conftest import token_of
from tests.live import Server, SSEClient, unique_name, wait_until

GRACE = 0.5  # the live servers' FASTCMS_PRESENCE_GRACE


def presence(server: Server) -> Any:
    response = httpx.get(f"{server.url}/api/v1/presence")
    assert response.status_code == 200
    return response


def users(server: Server) -> dict[str, dict[str, Any]]:
    return {user["user_id"]: user for user in presence(server).json()["users"]}


@pytest.fixture
def streams() -> Any:
    opened: list[SSEClient] = []

    def open_(
        server: Server,
        path: str = "/api/v1/realtime",
        headers: dict[str, str] | None = None,
        query: str = "",
        source: str | None = None,
    ) -> SSEClient:
        client = SSEClient(f"{server.url}{path}{'?' + query if query else ''}", headers=headers or {}, source=source)
        opened.append(client)
        return client

    yield open_
    for client in opened:
        client.close()


def test_join_second_connection_and_leave_after_grace(live: Server, streams: Any) -> None:
    observer = streams(live)
    observer.next()
    first = streams(live, query="user_id=user-123")
    first.next()
    joined = first.next_for("user.joined", user_id="user-123").json  # the joining stream itself receives it
    assert joined["id"]
    assert joined["collection"] is None
    assert joined["record_id"] is None
    assert set(joined["data"]) == {"user_id", "user_name", "connections", "last_seen"}
    assert joined["data"]["user_id"] == "user-123"
    assert joined["data"]["connections"] == 1
    assert joined["data"]["user_name"] is None
    assert observer.next_for("user.joined", user_id="user-123")

    second = streams(live, query="user_id=user-123")
    second.next()
    assert wait_until(lambda: users(live).get("user-123", {}).get("connections") == 2)
    assert [
        e for e in observer.drain(0.3) if e.event == "user.joined" and e.json["data"]["user_id"] == "user-123"
    ] == []

    first.close()
    second.close()
    left = observer.next_for("user.left", user_id="user-123", timeout=GRACE + 3).json["data"]
    assert left["user_id"] == "user-123"
    assert left["connections"] == 0
    assert left["last_seen"].endswith("Z")
    assert "user-123" not in users(live)


def test_quick_reconnect_does_not_flap(live: Server, streams: Any) -> None:
    observer = streams(live)
    observer.next()
    first = streams(live, query="user_id=flappy")
    first.next()
    observer.next_for("user.joined", user_id="flappy")
    first.close()
    again = streams(live, query="user_id=flappy")  # back within the grace period
    again.next()
    time.sleep(GRACE + 0.5)
    flaps = [
        e.event for e in observer.drain(0.2) if e.event.startswith("user.") and e.json["data"]["user_id"] == "flappy"
    ]
    assert flaps == []
    assert users(live)["flappy"]["connections"] == 1


def test_authenticated_users_appear_under_their_own_id_and_name(
    live: Server, streams: Any, alice: User, bob: User, staff: User
) -> None:
    as_alice = streams(live, headers={"Authorization": f"Token {token_of(alice)}"}, query="user_name=ignored")
    connected = as_alice.next().json["data"]
    assert connected["user_id"] == str(alice.pk)
    joined = as_alice.next_for("user.joined", user_id=str(alice.pk)).json["data"]
    assert joined == {**joined, "user_id": str(alice.pk), "user_name": "Alice Liddell"}
    as_bob = streams(live, f"/api/v1/realtime?token={token_of(bob)}&user_id={bob.pk}")
    as_bob.next()
    assert wait_until(lambda: users(live).get(str(bob.pk), {}).get("user_name") == "bob")  # no full name


def test_spoofing_another_user_is_refused(live: Server, streams: Any, alice: User, bob: User, staff: User) -> None:
    spoof = streams(live, headers={"Authorization": f"Token {token_of(alice)}"}, query=f"user_id={bob.pk}")
    assert spoof.status == 403
    assert spoof.json_error()["code"] == "presence_forbidden"
    as_staff = streams(live, headers={"Authorization": f"Token {token_of(staff)}"}, query="user_id=kiosk-7")
    assert as_staff.status == 200  # staff may speak for others


def test_anonymous_presence_follows_the_setting(live_servers: Any, transactional_db: None, streams: Any) -> None:
    allowed = live_servers()
    anonymous = streams(allowed, query="user_id=guest-1&user_name=Guest")
    anonymous.next()
    assert wait_until(lambda: users(allowed).get("guest-1", {}).get("user_name") == "Guest")
    closed = live_servers(FASTCMS_PRESENCE_ANONYMOUS="false")
    refused = streams(closed, query="user_id=guest-2")
    assert refused.status == 403
    assert refused.json_error()["code"] == "presence_forbidden"
    plain = streams(closed)
    assert plain.status == 200  # streaming without presence is still fine


def test_one_collection_streams_count_but_only_global_streams_get_presence_events(
    live: Server, streams: Any, staff: User
) -> None:
    rooms = unique_name("rooms")
    httpx.post(
        f"{live.url}/api/v1/collections/",
        json={"name": rooms, "list_rule": ""},
        headers={"Authorization": f"Token {token_of(staff)}"},
    )
    room = streams(live, f"/api/v1/realtime/{rooms}", query="user_id=in-room")
    room.next()
    assert wait_until(lambda: "in-room" in users(live))
    assert [e.event for e in room.drain(0.3) if e.event.startswith("user.")] == []  # none at all here


def test_presence_endpoint_shape_order_and_snapshot_header(live: Server, streams: Any) -> None:
    for user_id in ("zed", "amy", "bob-2"):
        streams(live, query=f"user_id={user_id}").next()
    assert wait_until(lambda: {"zed", "amy", "bob-2"} <= set(users(live)))
    response = presence(live)
    body = response.json()
    assert set(body) == {"users", "count"}
    ids = [u["user_id"] for u in body["users"]]
    assert ids == sorted(ids)
    assert body["count"] == len(ids)
    for user in body["users"]:
        assert set(user) == {"user_id", "user_name", "connections", "last_seen"}
    marker = response.headers["x-last-event-id"]
    late = streams(live, query="user_id=late")
    late.next()
    resumed = streams(live, query=f"last_event_id={marker}")
    assert resumed.next().json["data"]["recovered"] is True
    assert any(e.json["data"]["user_id"] == "late" for e in resumed.drain(0.5) if e.event == "user.joined")


def test_presence_with_a_bad_token_is_401(live: Server) -> None:
    assert httpx.get(f"{live.url}/api/v1/presence", headers={"Authorization": "Token nope"}).status_code == 401


def test_counts_return_to_zero_after_many_abrupt_closes(live: Server, streams: Any) -> None:
    opened = [streams(live, query=f"user_id=crowd-{i % 20}", source=f"127.0.3.{1 + i // 40}") for i in range(200)]
    assert all(client.status == 200 for client in opened)
    assert wait_until(
        lambda: sum(u["connections"] for k, u in users(live).items() if k.startswith("crowd-")) == 200, timeout=10
    )
    for client in opened:
        client.close()  # the socket goes away without a goodbye
    assert wait_until(lambda: not [k for k in users(live) if k.startswith("crowd-")], timeout=GRACE + 10)


def test_the_presence_backend_is_one_setting_defaulting_to_redis_when_redis_url_is_set(settings: Any) -> None:
    from presence.conf import presence_backend_path

    settings.FASTCMS_PRESENCE_BACKEND = None
    settings.REDIS_URL = None
    assert presence_backend_path() == "presence.backends.memory.MemoryPresence"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    assert presence_backend_path() == "presence.backends.redis.RedisPresence"
    settings.FASTCMS_PRESENCE_BACKEND = "presence.backends.memory.MemoryPresence"
    assert presence_backend_path() == "presence.backends.memory.MemoryPresence"
