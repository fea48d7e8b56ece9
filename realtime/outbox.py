"""The outbox table (`realtime.models.OutboxEvent`): store an event in the write's transaction,
read the oldest rows, delete relayed ones. Plain ORM, in whichever thread calls it."""

from __future__ import annotations

from dataclasses import dataclass

from realtime.models import OutboxEvent


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    type: str
    payload: str


def stage(log: str, key: str, event_type: str, payload: str) -> None:
    """Store an event for `log` in the current transaction (it exists exactly when the write
    commits)."""
    OutboxEvent.objects.create(log=log, key=key, type=event_type, payload=payload)


def oldest(log: str, limit: int, max_bytes: int) -> tuple[list[Row], bool]:
    """(up to `limit` rows in id order, whether they are all that is left). Id order is a record's
    commit order (its writes are serialised by its row lock). A batch stops after `max_bytes` of
    payload, so it stays small; it has at least one row when any is left."""
    rows_of_log = OutboxEvent.objects.filter(log=log).order_by("id")
    found = list(rows_of_log.values_list("id", "key", "type", "payload")[:limit])
    rows: list[Row] = []
    size = 0
    for row_id, key, event_type, payload in found:
        if rows and size + len(payload) > max_bytes:
            return rows, False
        rows.append(Row(row_id, key, event_type, payload))
        size += len(payload)
    return rows, len(found) < limit


def any_left(log: str) -> bool:
    return OutboxEvent.objects.filter(log=log).exists()


def delete(ids: list[int]) -> None:
    """Forget relayed rows (one statement)."""
    if ids:
        OutboxEvent.objects.filter(id__in=ids)._raw_delete(OutboxEvent.objects.db)
