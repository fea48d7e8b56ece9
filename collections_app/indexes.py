"""Expression indexes for `indexed` fields: one partial index per field on the records table.

    CREATE INDEX fastcms_idx_<collection id>_<digest> ON collections_app_record ((<expr>), "id")
        WHERE "collection_id" = '<collection id>'

`<expr>` is the expression the record queries compare and order by (`query.db_value`, compiled
by the same Django code, field name as a literal: see `expressions`), so PostgreSQL's and
SQLite's planners use the index for equality and range tests on the field (`?query=`, filters,
list rules), for `ordering` by it ascending (`id` is the lists' tie-breaker, so the index orders
exactly as a page does) and for the paginated list's count.

The name is the collection id (the index is that collection's) and a digest of the whole index
definition: a field renamed, retyped or compiled differently is a new name. `sync_indexes` makes
a collection's indexes exactly the wanted ones: it drops the others (option removed, field removed
or renamed, collection deleted) and creates the missing ones, in the caller's transaction (DDL is
transactional on both databases), so a refused or rolled back schema change changes no index.

Locks (PostgreSQL): CREATE INDEX blocks writes to the records table (every collection's) while it
builds and until the transaction commits, DROP INDEX blocks reads too. Callers run `sync_indexes`
before they lock the collection's row: a record insert locks the table first, then the
collection's row (its foreign key), and the same order here means the two never deadlock. Index
changes are serialized by a transaction-scoped advisory lock, so two schema changes never act on
each other's stale view of the indexes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Index, Q

from collections_app.models import Record
from collections_app.query import db_value
from collections_app.schema import FieldSpec, parse_fields

PREFIX = "fastcms_idx_"
SAFE_ID_RE = re.compile(r"[a-z0-9]{1,20}")
# pg_advisory_xact_lock key of index changes: any fixed 64-bit number, derived from a name.
ADVISORY_LOCK_KEY = int.from_bytes(hashlib.sha256(b"fastcms.indexes").digest()[:8], "big", signed=True)


def collection_prefix(collection_id: str) -> str:
    """The name prefix of one collection's indexes (the id itself when it is plain, else a digest)."""
    key = collection_id if SAFE_ID_RE.fullmatch(collection_id) else hashlib.sha256(collection_id.encode()).hexdigest()
    return f"{PREFIX}{key[:20]}_"


def _index(collection_id: str, spec: FieldSpec, name: str) -> Index:
    return Index(db_value(spec), F("id"), name=name, condition=Q(collection_id=collection_id))


def _create_sql(index: Index) -> str:
    # An editor that is never entered only builds statements (entering one on SQLite would try to
    # turn off foreign key checks, which cannot be done inside a transaction).
    return str(index.create_sql(Record, connection.schema_editor()))


def index_name(collection_id: str, spec: FieldSpec) -> str:
    """The name of the index of `spec` in this collection (at most 45 characters)."""
    definition = _create_sql(_index(collection_id, spec, PREFIX))
    return collection_prefix(collection_id) + hashlib.sha256(definition.encode()).hexdigest()[:12]


def wanted_indexes(collection_id: str, specs: Iterable[FieldSpec]) -> dict[str, Index]:
    """The indexes a collection with these fields should have, by name."""
    named = ((index_name(collection_id, spec), spec) for spec in specs if spec.indexed)
    return {name: _index(collection_id, spec, name) for name, spec in named}


def existing_index_names(collection_id: str) -> set[str]:
    """The names of the indexes the database holds for this collection."""
    prefix = collection_prefix(collection_id)
    pattern = prefix.replace("_", "\\_") + "%"
    table = Record._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename = %s AND indexname LIKE %s",
                [table, pattern],
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s AND name LIKE %s ESCAPE '\\'",
                [table, pattern],
            )
        return {name for (name,) in cursor.fetchall() if name.startswith(prefix)}


def sync_indexes(collection_id: str, specs: Iterable[FieldSpec]) -> None:
    """Make this collection's indexes those of its `indexed` fields (none: drop them all)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_LOCK_KEY])
        wanted = wanted_indexes(collection_id, specs)
        existing = existing_index_names(collection_id)
        statements = [
            f"DROP INDEX IF EXISTS {connection.ops.quote_name(name)}" for name in sorted(existing - set(wanted))
        ]
        # Drops first: once DROP INDEX holds the table's strongest lock, CREATE INDEX needs no other.
        statements += [_create_sql(wanted[name]) for name in sorted(set(wanted) - existing)]
        if statements:
            _run_ddl(statements)


def _run_ddl(statements: list[str]) -> None:
    if connection.vendor == "postgresql":
        # PostgreSQL refuses DDL on a table with pending deferred checks (records written earlier in
        # this transaction: Django's foreign keys are checked at commit). Run them now; they are
        # deferred again afterwards (SET CONSTRAINTS ALL IMMEDIATE, then DEFERRED).
        connection.check_constraints()
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def sync_for_definition(collection_id: str, fields: Any) -> None:
    """`sync_indexes` for a field list as given to a schema change, before it is validated.

    An invalid list changes nothing (the schema change refuses it, with every message).
    """
    try:
        specs = parse_fields(fields)
    except ValidationError:
        return
    sync_indexes(collection_id, specs)


def drop_indexes(collection_id: str) -> None:
    """Drop every index of this collection (before the collection is deleted)."""
    sync_indexes(collection_id, [])
