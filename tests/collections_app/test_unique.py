"""`unique` is enforced by the database: of concurrent writes of one value, exactly one succeeds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from collections_app import services
from collections_app.models import Collection, Record


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_of_one_value_let_exactly_one_succeed(make_collection: Any) -> None:
    collection = make_collection("accounts", [{"name": "email", "type": "email", "unique": True}])
    writers = 8
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write() -> None:
        try:
            barrier.wait(timeout=10)
            services.record_create(
                collection=Collection.objects.get(pk=collection.pk), data={"email": "same@example.com"}
            )
            outcome = "created"
        except ValidationError as exc:
            outcome = f"rejected: {exc.message_dict}"
        finally:
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes.count("created") == 1, outcomes
    assert all("already exists" in outcome for outcome in outcomes if outcome != "created")
    assert Record.objects.filter(collection=collection).count() == 1


@pytest.mark.django_db
def test_unique_applies_to_updates_and_frees_values(make_collection: Any) -> None:
    collection = make_collection("accounts", [{"name": "code", "type": "number", "unique": True}])
    first = services.record_create(collection=collection, data={"code": 1})
    second = services.record_create(collection=collection, data={"code": 2})
    with pytest.raises(ValidationError):
        services.record_update(record=second, data={"code": 1.0}, partial=True)  # 1 and 1.0 are one number
    services.record_update(record=first, data={"code": 3}, partial=True)
    services.record_update(record=second, data={"code": 1}, partial=True)  # 1 was freed
    services.record_delete(record=second)
    services.record_create(collection=collection, data={"code": 1})
    services.record_create(collection=collection, data={})  # nulls are not constrained
    services.record_create(collection=collection, data={})


@pytest.mark.django_db
def test_unique_is_per_collection(make_collection: Any) -> None:
    one = make_collection("one", [{"name": "code", "type": "text", "unique": True}])
    two = make_collection("two", [{"name": "code", "type": "text", "unique": True}])
    services.record_create(collection=one, data={"code": "x"})
    services.record_create(collection=two, data={"code": "x"})
