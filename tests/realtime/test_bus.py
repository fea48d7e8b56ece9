"""The bus and the model signals in this process: commit-only publishing, one event per change,
serialised once per visible form, indexed matching."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.db import transaction

from collections_app import services
from collections_app.models import Collection
from collections_app.query import Auth, parse
from realtime import bus as bus_module
from realtime.backends.memory import MemoryBackend
from realtime.bus import EventBus, get_bus
from realtime.events import CollectionInfo, Event
from realtime.registry import CollectionRegistry
from realtime.subscribers import Subscriber

FIELDS = [
    {"name": "title", "type": "text"},
    {"name": "price", "type": "number"},
    {"name": "secret", "type": "text", "hidden": True},
]


def history() -> list[Event]:
    return [entry[2] for entry in get_bus().backend.kept]


@pytest.fixture(autouse=True)
def memory_bus(monkeypatch: pytest.MonkeyPatch) -> EventBus:
    """These tests look into the in-process history, whatever backend the settings name."""
    bus = EventBus(MemoryBackend(size=1000, seconds=600))
    monkeypatch.setattr(bus_module, "_bus", bus)
    return bus


@pytest.fixture
def shop(make_collection: Any) -> Collection:
    return make_collection("shop", FIELDS, list_rule="")


@pytest.mark.django_db
def test_events_are_published_only_after_commit(shop: Collection, django_capture_on_commit_callbacks: Any) -> None:
    before = len(history())
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.record_create(collection=shop, data={"title": "a"})
    assert len(history()) == before  # nothing until the commit
    for callback in callbacks:
        callback()
    assert history()[-1].type == "record.created"


@pytest.mark.django_db
def test_rolled_back_writes_publish_nothing(shop: Collection, django_capture_on_commit_callbacks: Any) -> None:
    def doomed() -> None:
        with transaction.atomic():
            services.record_create(collection=shop, data={"title": "doomed"})
            raise RuntimeError("roll back")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        doomed()
    assert callbacks == []


@pytest.mark.django_db
def test_bulk_creates_publish_one_event_per_record(shop: Collection, django_capture_on_commit_callbacks: Any) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        records = services.records_bulk_create(collection=shop, rows=[{"title": f"t{i}"} for i in range(5)])
    assert len(callbacks) == 5
    assert [e.record_id for e in history()[-5:]] == [r.id for r in records]


@pytest.mark.django_db
def test_deleting_a_collection_publishes_one_event(shop: Collection, django_capture_on_commit_callbacks: Any) -> None:
    for index in range(3):
        services.record_create(collection=shop, data={"title": f"t{index}"})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.collection_delete(collection=shop)
    assert len(callbacks) == 1
    assert history()[-1].type == "collection.deleted"


@pytest.mark.django_db
def test_updates_carry_the_record_before_the_change(shop: Collection, django_capture_on_commit_callbacks: Any) -> None:
    record = services.record_create(collection=shop, data={"title": "a", "price": 1})
    with django_capture_on_commit_callbacks(execute=True):
        services.record_update(record=record, data={"price": 2}, partial=True)
    event = history()[-1]
    assert event.previous["price"] == 1
    assert event.data["price"] == 2


def make_info(**rules: Any) -> CollectionInfo:
    from collections_app.schema import load_fields

    specs = tuple(load_fields(FIELDS))
    return CollectionInfo(
        id="c" * 15,
        name="shop",
        version="2026-01-01T00:00:00.000000Z",
        fields=specs,
        created="2026-01-01T00:00:00.000000Z",
        field_map={s.name: s for s in specs},
        list_rule=rules.get("list_rule", ""),
        view_rule="",
        create_rule=None,
        update_rule=None,
        delete_rule=None,
    )


def record_event(info: CollectionInfo, **values: Any) -> Event:
    data = {
        "id": "r" * 15,
        "collection": "shop",
        "created": "x",
        "updated": "x",
        "title": None,
        "price": None,
        "secret": None,
        **values,
    }
    return Event(type="record.created", collection="shop", record_id=data["id"], data=data, schema=info)


def run_bus(scenario: Any) -> Any:
    async def main() -> Any:
        bus = EventBus(MemoryBackend(size=100, seconds=60))
        await bus.start()
        try:
            return await scenario(bus)
        finally:
            await bus.stop()

    return asyncio.run(main())


def subscriber(info: CollectionInfo, query: str | None = None, staff: bool = False, key: str = "k") -> Subscriber:
    return Subscriber(
        client_id=key, auth=Auth(), staff=staff, query=parse(query) if query else None, collection=info, client_key=key
    )


def test_an_event_is_serialised_once_per_visible_form() -> None:
    info = make_info()

    async def scenario(bus: EventBus) -> list[bytes]:
        subs = [subscriber(info, key=f"a{i}") for i in range(3)] + [subscriber(info, staff=True, key="s")]
        for sub in subs:
            await bus.subscribe(sub, None)
        bus.publish(record_event(info, title="x", secret="s"))
        await asyncio.sleep(0.05)
        return [sub.queue[0] for sub in subs]

    frames = run_bus(scenario)
    assert frames[0] is frames[1] is frames[2]  # the same bytes object for every public subscriber
    assert b'"secret"' not in frames[0]
    assert b'"secret":"s"' in frames[3]


def test_equality_queries_are_indexed_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    info = make_info()
    checked: list[str] = []
    original = Subscriber.form_for

    def spy(self: Subscriber, event: Event, current: CollectionInfo) -> Any:
        checked.append(self.client_id)
        return original(self, event, current)

    monkeypatch.setattr(Subscriber, "form_for", spy)

    async def scenario(bus: EventBus) -> list[str]:
        for index in range(200):
            await bus.subscribe(subscriber(info, f"title = other{index}", key=f"other{index}"), None)
        await bus.subscribe(subscriber(info, "title = wanted", key="wanted"), None)
        bus.publish(record_event(info, title="wanted"))
        await asyncio.sleep(0.05)
        return checked

    assert run_bus(scenario) == ["wanted"]


def test_overflow_closes_only_the_slow_subscriber(settings: Any) -> None:
    settings.FASTCMS_SSE_QUEUE_SIZE = 3
    info = make_info()

    async def scenario(bus: EventBus) -> tuple[str | None, str | None, int]:
        slow, fast = subscriber(info, key="slow"), subscriber(info, key="fast")
        await bus.subscribe(slow, None)
        await bus.subscribe(fast, None)
        slow.sending = True  # stuck writing to a client that does not read
        for index in range(5):
            bus.publish(record_event(info, title=f"t{index}"))
            await asyncio.sleep(0)
            fast.take()
        await asyncio.sleep(0.05)
        return slow.closed, fast.closed, len(slow.queue)

    assert run_bus(scenario) == ("overflow", None, 0)


def test_a_burst_never_closes_a_stream_that_is_not_stuck_writing(settings: Any) -> None:
    settings.FASTCMS_SSE_QUEUE_SIZE = 3
    info = make_info()

    async def scenario(bus: EventBus) -> tuple[str | None, int]:
        reader = subscriber(info, key="reader")
        await bus.subscribe(reader, None)
        for index in range(10):  # all queued before the stream's next turn, as a batch read from Redis is
            bus.publish(record_event(info, title=f"t{index}"))
        await asyncio.sleep(0.05)
        return reader.closed, len(reader.queue)

    assert run_bus(scenario) == (None, 10)


def test_a_stream_joins_a_flush_round_once_however_many_events_it_queued() -> None:
    """A stream is listed for the next round when its queue was empty; more events before the
    round only add frames. Once it has taken its frames, the next event lists it again."""
    info = make_info()

    async def scenario(bus: EventBus) -> tuple[int, int, int, int]:
        sub = subscriber(info, key="one")
        await bus.subscribe(sub, None)
        for index in range(5):
            bus.dispatch(record_event(info, title=f"t{index}"))
        listed, queued = bus.flushes.pending.count(sub), len(sub.queue)
        await asyncio.sleep(0.01)  # the round runs
        bus.dispatch(record_event(info, title="while frames wait"))
        listed_while_waiting = bus.flushes.pending.count(sub)
        sub.take()
        bus.dispatch(record_event(info, title="after taking"))
        return listed, queued, listed_while_waiting, bus.flushes.pending.count(sub)

    assert run_bus(scenario) == (1, 5, 0, 1)


def test_history_replay_and_unknown_ids() -> None:
    backend = MemoryBackend(size=3, seconds=60)
    events = [Event(type="collection.updated", collection=None, record_id=None, data={"n": i}) for i in range(5)]
    for event in events:
        backend.append(event)

    def after(last_id: str) -> tuple[list[int], bool]:
        found, recovered = asyncio.run(backend.history_after(last_id))
        return [e.data["n"] for e in found], recovered

    assert after(events[2].id) == ([3, 4], True)
    assert after(events[1].id) == ([2, 3, 4], True)  # the oldest kept follows it: nothing lost
    assert after(events[0].id) == ([], False)  # trimmed: the client must refetch
    assert after("0") == ([], False)
    assert after(events[4].id) == ([], True)
    assert after("garbage") == ([], False)
    assert after(f"{backend.boot - 1}-2") == ([], False)  # another process's (or boot's) id


def test_collection_registry_keeps_the_newest_version_and_expires(settings: Any) -> None:
    settings.FASTCMS_COLLECTIONS_REFRESH = 60
    registry = CollectionRegistry()
    old, new = make_info(), make_info(list_rule=None)
    object.__setattr__(new, "version", "2026-06-01T00:00:00.000000Z")
    assert registry.named("shop") is None  # never read: stale
    registry.replace_all([old], read_at=time.monotonic())
    assert registry.named("shop") is old
    assert registry.remember(new) is True
    assert registry.remember(old) is False  # an older version never wins
    assert registry.named("shop") is new
    registry.forget(new.id)
    assert registry.named("shop") is None
    settings.FASTCMS_COLLECTIONS_REFRESH = 0
    assert registry.stale()


def test_busy_streams_still_get_heartbeats_and_reach_their_maximum_age(settings: Any) -> None:
    """A stream with frames waiting when the ticker looks at it is looked at again later."""
    settings.FASTCMS_SSE_HEARTBEAT = 0.2
    settings.FASTCMS_SSE_MAX_AGE = 0.9
    info = make_info()

    async def scenario(bus: EventBus) -> tuple[str | None, bool]:
        busy, idle = subscriber(info, key="busy"), subscriber(info, key="idle")
        await bus.subscribe(busy, None)
        await bus.subscribe(idle, None)
        busy.queue.append(b"waiting")  # never taken: no ping for it, but it must stay on the wheel
        await asyncio.sleep(0.45)
        pinged = idle.ping_due
        await asyncio.sleep(1.0)
        return busy.closed, pinged

    assert run_bus(scenario) == ("max_age", True)


def test_the_event_backend_is_one_setting_defaulting_to_redis_when_redis_url_is_set(settings: Any) -> None:
    settings.FASTCMS_EVENT_BACKEND = None
    settings.REDIS_URL = None
    assert type(bus_module._make_backend()).__name__ == "MemoryBackend"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # never contacted: the backend connects when started
    assert type(bus_module._make_backend()).__name__ == "RedisBackend"
    settings.FASTCMS_EVENT_BACKEND = "realtime.backends.memory.MemoryBackend"
    assert type(bus_module._make_backend()).__name__ == "MemoryBackend"
