"""Open streams follow their credentials: a deleted token, a deactivated user, a changed staff flag or
password ends that user's streams within 10 s, on every worker; the reconnect is judged anew."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from collections_app.query import Auth
from realtime import bus as bus_module
from realtime.backends.memory import MemoryBackend
from realtime.bus import EventBus
from realtime.events import AUTH_REVOKED, Event
from realtime.subscribers import REVOKED, Subscriber
from tests.conftest import LIVE_DEFAULTS, http_for, token_of
from tests.live import Server, SSEClient
from tests.realtime.conftest import PRODUCT_FIELDS

RECORDS = "/api/v1/collections/products/records/"
REVOCATION_DEADLINE = 10  # seconds


class Admin:
    """A superuser's browser on Django's admin, where staff change users and tokens."""

    def __init__(self, server: Server) -> None:
        self.root = User.objects.create_superuser("root", "root@example.com", "root-pass")
        self.browser = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
        signed_in = self.post("/admin/login/", {"username": "root", "password": "root-pass", "next": "/admin/"})
        assert signed_in.status_code == 302, signed_in.text[:300]

    def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        page = self.browser.get(path)
        assert page.status_code == 200, (path, page.status_code)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        return self.browser.post(path, data={**data, "csrfmiddlewaretoken": csrf})

    def change_user(self, user: User, *, is_active: bool = True, is_staff: bool = False) -> None:
        form = {
            "username": user.username,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "email": user.email,
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        }
        form.update({name: "on" for name, on in (("is_active", is_active), ("is_staff", is_staff)) if on})
        saved = self.post(f"/admin/auth/user/{user.pk}/change/", form)
        assert saved.status_code == 302, saved.text[:2000]

    def set_password(self, user: User, password: str) -> None:
        form = {"usable_password": "true", "password1": password, "password2": password}
        saved = self.post(f"/admin/auth/user/{user.pk}/password/", form)
        assert saved.status_code == 302, saved.text[:2000]

    def delete_token(self, user: User) -> None:
        deleted = self.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})
        assert deleted.status_code == 302, deleted.text[:2000]

    def close(self) -> None:
        self.browser.close()


@pytest.fixture
def live(live_servers: Any, transactional_db: None) -> Any:
    """A server of its own: the admin's content types are cached per process, and the test data
    (content types included) is recreated between tests."""
    live_servers()  # the test database is ready for servers
    with Server(LIVE_DEFAULTS) as server:
        yield server


@pytest.fixture
def admin(live: Server) -> Any:
    browser = Admin(live)
    yield browser
    browser.close()


@pytest.fixture
def products_live(staff: User, live: Server) -> None:
    with http_for(live, staff) as api:
        for name, list_rule in (("products", ""), ("internal", None)):  # internal: staff only
            collection = {"name": name, "fields": PRODUCT_FIELDS, "list_rule": list_rule}
            assert api.post("/api/v1/collections/", json=collection).status_code == 201


def session_of(user: User) -> str:
    """A signed-in session cookie for `user` (as the admin or any login view would set)."""
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def streams_of(server: Server, open_stream: Any, user: User, path: str = "/api/v1/realtime") -> list[SSEClient]:
    """The user's streams of every kind: `?token=`, `Authorization`, session cookie."""
    opened = [
        open_stream(server, path, token=token_of(user)),
        open_stream(server, path, user=user),
        open_stream(server, path, headers={"Cookie": session_of(user)}),
    ]
    for stream in opened:
        assert stream.status == 200
        assert stream.next().json["data"]["user_id"] == str(user.pk)
    return opened


def ended_within(streams: list[SSEClient], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    return all(stream.ended.wait(max(0.0, deadline - time.monotonic())) for stream in streams)


def still_served(server: Server, stream: SSEClient, writer: User) -> None:
    """`stream` is open and still receives events (`writer` creates one)."""
    assert not stream.ended.is_set()
    with http_for(server, writer) as api:
        record = api.post(RECORDS, json={"name": "after"}).json()
    assert stream.next_of("record.created").json["record_id"] == record["id"]


def test_deleting_a_token_ends_its_users_streams(
    live: Server, open_stream: Any, admin: Admin, products_live: None, alice: User, bob: User, staff: User
) -> None:
    old_token = token_of(alice)
    alices = streams_of(live, open_stream, alice)
    bobs = open_stream(live, user=bob)
    bobs.next()
    admin.delete_token(alice)
    assert ended_within(alices, REVOCATION_DEADLINE)
    still_served(live, bobs, admin.root)
    refused = open_stream(live, token=old_token)
    assert refused.status == 401  # the reconnect is judged on the new credentials
    assert open_stream(live, headers={"Cookie": session_of(alice)}).next().json["data"]["user_id"] == str(alice.pk)


def test_deactivating_a_user_ends_every_kind_of_stream(
    live: Server, open_stream: Any, admin: Admin, products_live: None, alice: User, bob: User, staff: User
) -> None:
    alices = streams_of(live, open_stream, alice, "/api/v1/realtime/products")
    cookie = alices[2].headers["Cookie"]
    bobs = open_stream(live, "/api/v1/realtime/products", user=bob)
    bobs.next()
    admin.change_user(alice, is_active=False)
    assert ended_within(alices, REVOCATION_DEADLINE)
    still_served(live, bobs, admin.root)
    assert open_stream(live, token=token_of(alice)).status == 401
    # The session no longer signs anyone in: the stream is anonymous now.
    anonymous = open_stream(live, "/api/v1/realtime/products", headers={"Cookie": cookie})
    assert anonymous.next().json["data"]["user_id"] is None


def test_a_demoted_staff_member_reconnects_without_hidden_fields_or_staff_collections(
    live: Server, open_stream: Any, admin: Admin, products_live: None, staff: User, bob: User
) -> None:
    staff_streams = [
        *streams_of(live, open_stream, staff, "/api/v1/realtime/products"),
        open_stream(live, "/api/v1/realtime/internal", user=staff),
    ]
    staff_streams[3].next()
    bobs = open_stream(live, "/api/v1/realtime/products", user=bob)
    bobs.next()
    with http_for(live, staff) as api:
        api.post(RECORDS, json={"name": "before", "secret": "s"})
    assert staff_streams[0].next_of("record.created").json["data"]["secret"] == "s"
    admin.change_user(staff, is_staff=False)
    assert ended_within(staff_streams, REVOCATION_DEADLINE)
    assert open_stream(live, "/api/v1/realtime/internal", user=staff).status == 403
    resumed = open_stream(live, "/api/v1/realtime/products", user=staff)
    resumed.next()
    with http_for(live, admin.root) as api:
        api.post(RECORDS, json={"name": "after", "secret": "t"})
    seen = resumed.next_of("record.created").json["data"]
    assert seen["name"] == "after"
    assert "secret" not in seen
    assert not bobs.ended.is_set()


def test_a_password_change_ends_the_users_streams(
    live: Server, open_stream: Any, admin: Admin, products_live: None, alice: User, bob: User, staff: User
) -> None:
    alices = streams_of(live, open_stream, alice)
    cookie = alices[2].headers["Cookie"]
    bobs = open_stream(live, user=bob)
    bobs.next()
    admin.set_password(alice, "a-new-Passphrase-2026")
    assert ended_within(alices, REVOCATION_DEADLINE)
    still_served(live, bobs, admin.root)
    # The old session is signed out by the new password; the token stays valid.
    assert open_stream(live, headers={"Cookie": cookie}).next().json["data"]["user_id"] is None
    assert open_stream(live, token=token_of(alice)).next().json["data"]["user_id"] == str(alice.pk)


# --- in this process: what publishes a revocation, and what the bus does with it -------------------


@pytest.mark.django_db
def test_only_credential_changes_publish_a_revocation(
    alice: User, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[Event] = []

    class Recorder:
        """Stands for the bus: records what would be published once the transaction commits."""

        def publish(self, event: Event) -> None:
            published.append(event)

        def publish_on_commit(self, event: Event) -> None:
            transaction.on_commit(lambda: published.append(event))

    monkeypatch.setattr(bus_module, "_bus", Recorder())

    def revocations(change: Any) -> list[str]:
        published.clear()
        with django_capture_on_commit_callbacks(execute=True):
            change()
        return [e.data["user_id"] for e in published if e.type == AUTH_REVOKED]

    alice.refresh_from_db()
    assert revocations(lambda: alice.save(update_fields=["last_login"])) == []
    assert revocations(lambda: User.objects.get(pk=alice.pk).save()) == []  # nothing changed
    alice.first_name = "Alicia"
    assert revocations(alice.save) == []
    alice.set_password("another-Passphrase-2026")
    assert revocations(alice.save) == [str(alice.pk)]
    alice.is_staff = True
    assert revocations(alice.save) == [str(alice.pk)]
    alice.is_active = False
    assert revocations(lambda: alice.save(update_fields=["is_active"])) == [str(alice.pk)]
    token = token_of(alice)
    assert revocations(lambda: alice.auth_token.delete()) == [str(alice.pk)]
    assert token
    assert str(alice.pk) in revocations(alice.delete)


def make_sub(user_id: str | None, key: str) -> Subscriber:
    auth = Auth(id=user_id, username=f"u{user_id}") if user_id else Auth()
    return Subscriber(client_id=key, auth=auth, staff=False, query=None, client_key=key)


def test_a_revocation_ends_that_users_streams_and_is_never_sent_or_kept() -> None:
    async def scenario() -> Any:
        backend = MemoryBackend(size=100, seconds=60, max_bytes=10**6)
        bus = EventBus(backend)
        await bus.start()
        try:
            mine, other, anonymous = make_sub("7", "a"), make_sub("8", "b"), make_sub(None, "c")
            checked = time.monotonic()
            for sub in (mine, other, anonymous):
                await bus.subscribe(sub, None, checked)
            newest = bus.last_event_id()
            bus.publish(Event(type=AUTH_REVOKED, collection=None, record_id=None, data={"user_id": "7"}))
            await asyncio.sleep(0.05)
            late = make_sub("7", "d")  # its credentials were read before the revocation arrived
            await bus.subscribe(late, None, checked)
            fresh = make_sub("7", "e")
            await bus.subscribe(fresh, None, time.monotonic())
            return (
                [sub.closed for sub in (mine, other, anonymous, late, fresh)],
                [len(sub.queue) for sub in (mine, other, anonymous)],
                bus.last_event_id() == newest,
                len(backend.kept) + len(backend.presence),
            )
        finally:
            await bus.stop()

    closed, queued, same_newest, kept = asyncio.run(scenario())
    assert closed == [REVOKED, None, None, REVOKED, None]
    assert queued == [0, 0, 0]
    assert same_newest
    assert kept == 0


# --- several workers ----------------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.postgresql
def test_a_revocation_through_one_worker_ends_the_streams_on_another(
    live_servers: Any, transactional_db: None, alice: User, bob: User, staff: User
) -> None:
    from tests.e2e.test_cluster import CLUSTER_ENV

    live_servers()
    a, b = Server(CLUSTER_ENV).start(), Server(CLUSTER_ENV).start()
    opened: list[SSEClient] = []
    admin = Admin(a)
    try:
        with http_for(b, staff) as api:
            products = {"name": "products", "fields": PRODUCT_FIELDS, "list_rule": ""}
            assert api.post("/api/v1/collections/", json=products).status_code == 201
        alices = [
            SSEClient(f"{b.url}/api/v1/realtime?token={token_of(alice)}"),
            SSEClient(f"{b.url}/api/v1/realtime", headers={"Cookie": session_of(alice)}),
        ]
        bobs = SSEClient(f"{b.url}/api/v1/realtime", headers={"Authorization": f"Token {token_of(bob)}"})
        opened += [*alices, bobs]
        for stream in opened:
            assert stream.next().json["data"]["user_id"] in (str(alice.pk), str(bob.pk))
        admin.change_user(alice, is_active=False)
        assert ended_within(alices, REVOCATION_DEADLINE)
        still_served(b, bobs, staff)
    finally:
        admin.close()
        for stream in opened:
            stream.close()
        a.stop()
        b.stop()
