"""The outbox table (`realtime.models.OutboxEvent`): store an event in the write's transaction,
read the oldest rows, delete relayed ones. Plain SQL on the default database (these run for every
write, and the ORM's overhead was most of their cost), in whichever thread calls them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from realtime.models import OutboxEvent

TABLE = OutboxEvent._meta.db_table


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    key: str
    type: str
    payload: str


def stage(log: str, key: str, event_type: str, payload: str) -> None:
    """Store an event for `log` in the current transaction (it exists exactly when the write
    commits)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (log, key, type, payload, created) VALUES (%s, %s, %s, %s, %s)",  # noqa: S608
            [log, key, event_type, payload, timezone.now()],
        )


def oldest(log: str, limit: int, max_bytes: int) -> tuple[list[Row], bool]:
    """(up to `limit` rows in id order, whether they are all that is left). Id order is a record's
    commit order (its writes are serialised by its row lock). A batch stops after `max_bytes` of
    payload, so it stays small; it has at least one row when any is left."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id, key, type, payload FROM {TABLE} WHERE log = %s ORDER BY id LIMIT %s",  # noqa: S608
            [log, limit],
        )
        found = cursor.fetchall()
    rows: list[Row] = []
    size = 0
    for row_id, key, event_type, payload in found:
        if rows and size + len(payload) > max_bytes:
            return rows, False
        rows.append(Row(row_id, key, event_type, payload))
        size += len(payload)
    return rows, len(found) < limit


def any_left(log: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {TABLE} WHERE log = %s LIMIT 1", [log])  # noqa: S608
        return cursor.fetchone() is not None


def delete(ids: list[int]) -> None:
    """Forget relayed rows (one statement)."""
    if ids:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE} WHERE id IN ({', '.join(['%s'] * len(ids))})", ids)  # noqa: S608
