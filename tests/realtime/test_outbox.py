"""The outbox table: rows written in the write's transaction, read oldest first, per log."""

from __future__ import annotations

import pytest
from django.db import transaction

from realtime import outbox


@pytest.mark.django_db(transaction=True)
def test_rows_exist_exactly_when_their_transaction_commits() -> None:
    with transaction.atomic():
        outbox.stage("log-a", "k1", "record.created", '{"n": 1}')
    with transaction.atomic():
        outbox.stage("log-a", "k2", "record.created", '{"n": 2}')
        transaction.set_rollback(True)
    rows, complete = outbox.oldest("log-a", 10, 10**6)
    assert [row.key for row in rows] == ["k1"]
    assert complete is True


@pytest.mark.django_db
def test_rows_are_read_oldest_first_per_log_in_small_batches() -> None:
    for index in range(5):
        outbox.stage("log-a", f"a{index}", "record.updated", "x" * 100)
    outbox.stage("log-b", "b0", "record.updated", "{}")
    rows, complete = outbox.oldest("log-a", 3, 10**6)
    assert ([row.key for row in rows], complete) == (["a0", "a1", "a2"], False)
    rows, complete = outbox.oldest("log-a", 10, 250)  # a batch stops at its byte budget
    assert ([row.key for row in rows], complete) == (["a0", "a1"], False)
    outbox.delete([row.id for row in rows])
    rows, complete = outbox.oldest("log-a", 10, 10**6)
    assert ([row.key for row in rows], complete) == (["a2", "a3", "a4"], True)
    assert outbox.any_left("log-b")
    assert not outbox.any_left("log-c")
