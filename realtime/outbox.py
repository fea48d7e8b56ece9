"""The outbox table (`realtime.models.OutboxEvent`): store an event in the write's transaction,
read the oldest rows, delete relayed ones. Plain SQL on the default database (these run for every
write, and the ORM's overhead was most of their cost), in whichever thread calls them."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from realtime.models import OutboxEvent

TABLE = OutboxEvent._meta.db_table


def _sql(template: str) -> str:
    """`template` with the table and column names quoted for the database (`key` is reserved
    in some)."""
    quote = connection.ops.quote_name
    names = {name: quote(name) for name in ("id", "log", "key", "type", "payload", "created")}
    return template.format(table=quote(TABLE), **names)


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
            _sql("INSERT INTO {table} ({log}, {key}, {type}, {payload}, {created}) VALUES (%s, %s, %s, %s, %s)"),
            [log, key, event_type, payload, timezone.now()],
        )


def oldest(log: str, limit: int, max_bytes: int) -> tuple[list[Row], bool]:
    """(up to `limit` rows in id order, whether they are all that is left). Id order is a record's
    commit order (its writes are serialised by its row lock). A batch stops after `max_bytes` of
    payload, so it stays small; it has at least one row when any is left."""
    with connection.cursor() as cursor:
        cursor.execute(
            _sql("SELECT {id}, {key}, {type}, {payload} FROM {table} WHERE {log} = %s ORDER BY {id} LIMIT %s"),
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
        cursor.execute(_sql("SELECT 1 FROM {table} WHERE {log} = %s LIMIT 1"), [log])
        return cursor.fetchone() is not None


def delete(ids: list[int]) -> None:
    """Forget relayed rows (one statement)."""
    if ids:
        with connection.cursor() as cursor:
            placeholders = ", ".join(["%s"] * len(ids))  # only placeholders: the ids are parameters
            cursor.execute(_sql("DELETE FROM {table} WHERE {id} IN (") + placeholders + ")", ids)  # noqa: S608
