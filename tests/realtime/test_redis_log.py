"""The Redis event log: its bounds, kept atomically by the append script; the outbox relay
(once, in order, fenced); malformed entries skipped."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import transaction

from realtime.backends.redis import RedisBackend
from realtime.backends.redis_log import (
    APPEND,
    EPHEMERAL,
    FENCED,
    KEPT,
    Bounds,
    Entry,
    LogKeys,
    append_args,
    parse_entry,
)
from realtime.events import Event
from realtime.models import OutboxEvent
from tests.live import wait_until

pytestmark = pytest.mark.redis


@pytest.fixture
def client() -> Any:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def keys(client: redis.Redis) -> Any:
    keys = LogKeys.for_prefix(f"{settings.FASTCMS_REDIS_PREFIX}-{uuid.uuid4().hex[:8]}")
    yield keys
    client.delete(*keys.as_list())


def append(client: redis.Redis, keys: LogKeys, entries: list[Entry], bounds: Bounds, **fenced: Any) -> list[str]:
    args = append_args(entries, bounds, lease_ms=60_000, **fenced)
    ids = client.eval(APPEND, len(keys.as_list()), *keys.as_list(), *args)
    return [value.decode() for value in ids]


def kept(payload: str = "x" * 10) -> Entry:
    return Entry(KEPT, uuid.uuid4().hex, payload)


def presence() -> Entry:
    return Entry(EPHEMERAL, uuid.uuid4().hex, "p")


def log_ids(client: redis.Redis, keys: LogKeys) -> list[str]:
    return [entry_id.decode() for entry_id, _ in client.xrange(keys.stream)]


def test_the_oldest_events_go_beyond_the_count_and_the_watermark_says_which(client: Any, keys: LogKeys) -> None:
    ids = append(client, keys, [kept() for _ in range(8)], Bounds(size=5, seconds=600, bytes=10**6))
    assert log_ids(client, keys) == ids[3:]
    assert client.get(keys.trimmed).decode() == ids[2]


def test_bytes_are_bounded_and_counted_exactly(client: Any, keys: LogKeys) -> None:
    bounds = Bounds(size=100, seconds=600, bytes=100)
    ids = append(client, keys, [kept("y" * 30) for _ in range(5)], bounds)
    assert log_ids(client, keys) == ids[2:]  # 3 x 30 bytes fit in 100
    assert int(client.get(keys.bytes)) == 90
    append(client, keys, [kept("z" * 95)], bounds)  # alone it fits; everything older goes
    assert len(log_ids(client, keys)) == 1
    assert int(client.get(keys.bytes)) == 95


def test_events_older_than_the_age_bound_go(client: Any, keys: LogKeys) -> None:
    bounds = Bounds(size=100, seconds=0.5, bytes=10**6)
    old = append(client, keys, [kept(), kept()], bounds)
    time.sleep(0.6)
    new = append(client, keys, [], bounds)  # a trim without an append (the reader's periodic one)
    assert new == []
    assert log_ids(client, keys) == []
    assert client.get(keys.trimmed).decode() == old[-1]
    assert int(client.get(keys.bytes)) == 0


def test_presence_churn_never_evicts_record_events(client: Any, keys: LogKeys) -> None:
    bounds = Bounds(size=3, seconds=600, bytes=10**6)
    records = append(client, keys, [kept(), kept()], bounds)
    churn = append(client, keys, [presence() for _ in range(20)], bounds)
    assert log_ids(client, keys) == records + churn[-3:]  # presence has a bound of its own
    assert client.get(keys.trimmed) is None
    assert [value.decode() for value in client.lrange(keys.ephemeral, 0, -1)] == churn[-3:]


def test_record_churn_evicts_older_presence_events(client: Any, keys: LogKeys) -> None:
    bounds = Bounds(size=2, seconds=600, bytes=10**6)
    joined = append(client, keys, [presence()], bounds)
    records = append(client, keys, [kept() for _ in range(3)], bounds)
    assert log_ids(client, keys) == records[1:]
    assert joined[0] not in [value.decode() for value in client.lrange(keys.ephemeral, 0, -1)]


def test_an_outbox_row_is_appended_once(client: Any, keys: LogKeys) -> None:
    bounds = Bounds(size=100, seconds=600, bytes=10**6)
    client.set(keys.lock, "token")
    row = Entry(KEPT, "k1", "{}", member="k1", score=7)
    first = append(client, keys, [row], bounds, token="token", floor=7)
    again = append(client, keys, [row, Entry(KEPT, "k2", "{}", member="k2", score=8)], bounds, token="token", floor=7)
    assert first[0] != ""
    assert again[0] == ""  # a relay that died before deleting the row: not twice
    assert len(log_ids(client, keys)) == 2
    append(client, keys, [], bounds, token="token", floor=8)  # row 7 is gone from the outbox
    assert [m.decode() for m in client.zrange(keys.relayed, 0, -1)] == ["k2"]


def test_a_relay_that_lost_its_lock_appends_nothing(client: Any, keys: LogKeys) -> None:
    client.set(keys.lock, "someone else")
    with pytest.raises(redis.ResponseError, match=FENCED):
        append(client, keys, [kept()], Bounds(100, 600, 10**6), token="mine", floor=1)
    assert log_ids(client, keys) == []


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"e": "not json"},
        {"e": "[]"},
        {"e": '{"type": "record.created"}'},
        {"e": '{"type": 5, "data": {}, "timestamp": "t"}'},
        {"e": '{"type": "record.created", "data": {}, "timestamp": "t", "record_id": "r", "schema": {"id": 1}}'},
        {"e": '{"type": "collection.updated", "data": [], "timestamp": "t"}'},
        {"e": b"\xff\xfe"},
    ],
)
def test_a_malformed_entry_is_skipped(fields: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    encoded = {key.encode(): value.encode() if isinstance(value, str) else value for key, value in fields.items()}
    assert parse_entry("1-1", encoded) is None
    assert "malformed" in caplog.text


def revoked(index: int) -> Event:
    return Event(type="auth.revoked", collection=None, record_id=None, data={"i": index})


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgresql
def test_committed_events_are_relayed_in_order_and_rolled_back_ones_never(settings: Any, client: Any) -> None:
    settings.FASTCMS_REDIS_PREFIX = f"{settings.FASTCMS_REDIS_PREFIX}-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(size=100, seconds=600)
    keys = backend.keys
    try:
        with transaction.atomic():
            for index in range(3):
                backend.publish_on_commit(revoked(index))
        with transaction.atomic():
            backend.publish_on_commit(revoked(-1))
            transaction.set_rollback(True)
        assert OutboxEvent.objects.filter(log=settings.FASTCMS_REDIS_PREFIX).count() == 3
        backend.relay.start()
        assert wait_until(lambda: not OutboxEvent.objects.filter(log=settings.FASTCMS_REDIS_PREFIX).exists(), 10)
    finally:
        backend.relay.stop()
    events = [parse_entry(entry_id.decode(), fields) for entry_id, fields in client.xrange(keys.stream)]
    assert [event.data["i"] for event in events] == [0, 1, 2]  # an internal event travels like any other
    assert client.llen(keys.ephemeral) == 3  # and is never kept for resumes
    client.delete(*keys.as_list())


@pytest.fixture
def reading(settings: Any, client: redis.Redis) -> Any:
    """A Redis backend whose reader and history client are connected (no relay, no reader task)."""
    import redis.asyncio as aioredis

    settings.FASTCMS_REDIS_PREFIX = f"{settings.FASTCMS_REDIS_PREFIX}-{uuid.uuid4().hex[:8]}"
    backend = RedisBackend(size=3, seconds=600)
    missed: list[bool] = []
    backend.attach(lambda event: None, lambda: missed.append(True))

    async def connect() -> None:
        backend.reader = aioredis.Redis.from_url(settings.REDIS_URL)
        backend.client = aioredis.Redis.from_url(settings.REDIS_URL)
        backend.connected = True

    yield backend, connect, missed
    client.delete(*backend.keys.as_list())


def record_entries(count: int) -> list[Entry]:
    wire = Event(type="collection.deleted", collection="c", record_id=None, data={}, schema=None)
    return [Entry(KEPT, uuid.uuid4().hex, wire.to_wire()) for _ in range(count)]


def test_resumes_are_recovered_only_from_ids_of_this_log_still_in_history(reading: Any, client: Any) -> None:
    backend, connect, _ = reading
    bounds = Bounds(size=3, seconds=600, bytes=10**6)
    ids = append(client, backend.keys, record_entries(5), bounds)  # the first two are trimmed

    async def recovered(last_id: str) -> bool:
        await connect()
        try:
            return (await backend.history_after(last_id))[1]
        finally:
            await backend.reader.aclose()
            await backend.client.aclose()

    def check(last_id: str) -> bool:
        return asyncio.run(recovered(last_id))

    assert check(ids[1]) is True  # the newest trimmed one: everything after it is kept
    assert check(ids[3]) is True
    assert check(ids[0]) is False  # trimmed since
    assert check("0") is False  # events were trimmed
    assert check("1-1") is False  # older than this log: from another log (Redis restarted empty)
    assert check(f"{int(ids[-1].split('-')[0]) + 60_000}-0") is False  # from the future
    assert check("not-an-id") is False


def test_a_reader_that_fell_behind_the_history_ends_its_streams(reading: Any, client: Any) -> None:
    backend, connect, missed = reading
    bounds = Bounds(size=3, seconds=600, bytes=10**6)
    first = append(client, backend.keys, record_entries(1), bounds)

    async def read_after(last_id: str) -> None:
        await connect()
        backend.last_read = last_id
        try:
            await backend._read_once()
        finally:
            await backend.reader.aclose()
            await backend.client.aclose()

    append(client, backend.keys, record_entries(2), bounds)
    asyncio.run(read_after(first[0]))
    assert missed == []  # nothing it had not read was trimmed
    append(client, backend.keys, record_entries(5), bounds)
    asyncio.run(read_after(first[0]))
    assert missed == [True]
