"""Shared fixtures: users, API clients and collections."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection

REQUIRE_SERVICES = os.environ.get("FASTCMS_REQUIRE_SERVICES") == "1"

# A field of every type (the relation points at a collection named "things").
EVERY_TYPE = [
    {"name": "title", "type": "text", "required": True, "options": {"max_length": 100}},
    {"name": "body", "type": "text"},
    {"name": "price", "type": "number", "options": {"min": 0}},
    {"name": "count", "type": "number", "options": {"integer": True}},
    {"name": "active", "type": "bool"},
    {"name": "contact", "type": "email"},
    {"name": "site", "type": "url"},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "datetime"},
    {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
    {"name": "meta", "type": "json"},
    {"name": "parent", "type": "relation", "options": {"collection": "things"}},
    {"name": "owner", "type": "user"},
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Service tests skip where the service is not configured, and fail in CI's service run."""
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    missing = {
        "postgresql": None if "postgresql" in engine else "needs DATABASE_URL=postgres://...",
        "redis": None if settings.REDIS_URL else "needs REDIS_URL=redis://...",
    }
    for item in items:
        for marker, reason in missing.items():
            if reason and marker in item.keywords:
                if REQUIRE_SERVICES:
                    item.add_marker(pytest.mark.xfail(reason=f"service missing: {reason}", strict=True, run=False))
                    item.add_marker(pytest.mark.usefixtures("_fail_missing_service"))
                else:
                    item.add_marker(pytest.mark.skip(reason=f"{marker} test: {reason}"))


@pytest.fixture
def _fail_missing_service() -> None:
    pytest.fail("FASTCMS_REQUIRE_SERVICES=1 but this test's service is not configured")


def pytest_report_header(config: pytest.Config) -> str:
    from django.conf import settings

    return f"database: {connection.vendor if settings.configured else '?'}; redis: {bool(settings.REDIS_URL)}"


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Sign-in throttle counts (kept in the cache) never carry from one test to the next."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def staff(db: None) -> User:
    return User.objects.create_user(
        "staff", password="staff-pass", is_staff=True, first_name="Stella", last_name="Staff"
    )


@pytest.fixture
def alice(db: None) -> User:
    return User.objects.create_user("alice", password="alice-pass", first_name="Alice", last_name="Liddell")


@pytest.fixture
def bob(db: None) -> User:
    return User.objects.create_user("bob", password="bob-pass")


def client_for(user: User | None) -> APIClient:
    """An API client authenticated with `user`'s token (anonymous for None)."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def anon(db: None) -> APIClient:
    return APIClient()


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    return client_for(staff)


@pytest.fixture
def alice_api(alice: User) -> APIClient:
    return client_for(alice)


@pytest.fixture
def bob_api(bob: User) -> APIClient:
    return client_for(bob)


@pytest.fixture
def make_collection(db: None) -> Callable[..., Collection]:
    def make(name: str = "posts", fields: list[dict[str, Any]] | None = None, **rules: Any) -> Collection:
        return services.collection_create(name=name, fields=fields or [], **rules)

    return make


PRODUCT_FIELDS = [
    {"name": "title", "type": "text", "required": True, "options": {"max_length": 200}},
    {"name": "price", "type": "number", "options": {"min": 0}},
    {"name": "active", "type": "bool"},
    {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
    {"name": "released", "type": "date"},
    {"name": "owner", "type": "user"},
    {"name": "secret", "type": "text", "hidden": True},
    {"name": "meta", "type": "json"},
]


@pytest.fixture
def products(make_collection: Callable[..., Collection]) -> Collection:
    """A public-read collection; anyone authenticated may create; owners update."""
    return make_collection(
        "products",
        PRODUCT_FIELDS,
        list_rule="",
        view_rule="",
        create_rule="@request.auth.id != null",
        update_rule="owner = @request.auth.id",
        delete_rule="owner = @request.auth.id",
    )


# --- live servers (stream tests) --------------------------------------------------------------

# The product's defaults otherwise (the collection registry included): tests that stream make their
# collections through the server's API under names no other test uses (`tests.live.unique_name`).
LIVE_DEFAULTS = {"FASTCMS_SSE_HEARTBEAT": "1", "FASTCMS_PRESENCE_GRACE": "0.5"}


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_cleaned() -> Any:
    """Delete this session's Redis keys at the end (they share a per-session prefix)."""
    yield
    from django.conf import settings

    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(f"{settings.FASTCMS_REDIS_PREFIX}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="session")
def live_servers(django_db_setup: None, django_db_blocker: Any) -> Any:
    """Start (once per session) a uvicorn server per distinct settings; stopped at the end."""
    from tests.live import Server

    started: dict[frozenset[tuple[str, str]], Server] = {}

    def get(**env: str) -> Server:
        merged = {**LIVE_DEFAULTS, **env}
        key = frozenset(merged.items())
        if key not in started:
            with django_db_blocker.unblock():
                started[key] = Server(merged).start()
        return started[key]

    yield get
    for server in started.values():
        server.stop()


@pytest.fixture
def live(live_servers: Any, transactional_db: None) -> Any:
    """The default live server; the test's data is committed so the server sees it."""
    return live_servers()


def http_for(server: Any, user: User | None = None) -> Any:
    """An httpx client for `server`, authenticated with `user`'s token."""
    import httpx

    headers = {}
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        headers["Authorization"] = f"Token {token.key}"
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def settle_events(server: Any, timeout: float = 10) -> None:
    """Wait until `server` has read every event of the writes committed so far (with Redis,
    events reach the log a moment after their write, through the outbox)."""
    from django.conf import settings

    if not settings.REDIS_URL:
        return
    import httpx
    import redis

    from realtime.models import OutboxEvent
    from tests.live import wait_until

    client = redis.Redis.from_url(settings.REDIS_URL)

    def settled() -> bool:
        if OutboxEvent.objects.exists():
            return False
        newest = client.xrevrange(f"{settings.FASTCMS_REDIS_PREFIX}:events", count=1)
        seen = httpx.get(f"{server.url}/api/v1/presence").headers["x-last-event-id"]
        return not newest or newest[0][0].decode() == seen

    try:
        assert wait_until(settled, timeout), "the server did not read every event in time"
    finally:
        client.close()


def token_of(user: User) -> str:
    return Token.objects.get_or_create(user=user)[0].key
