"""Queries that every request makes, with their SQL compiled once instead of per request.

Compiling a query is most of what an ORM lookup by key costs: measured on SQLite, the token
lookup of each authenticated request (`select_related("user").get(key=...)`) took about 10 times
as long as running its SQL. `PreparedLookup` takes a queryset built around a placeholder value,
compiles it once per database alias, and from then on runs that SQL with the real value and
builds the model instances (related ones from `select_related` included) as Django does: the same
columns, the database's converters, `Model.from_db`. Results are those of the queryset.
`PreparedInsert` does the same for the INSERT of a new record.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections, transaction
from django.db.models import Model, QuerySet, signals

PLACEHOLDER = "\x1ffastcms-prepared-lookup\x1f"


@dataclass(frozen=True)
class _Part:
    """One model of the row: which columns build it, and how it joins its parent."""

    model: type[Model]
    columns: tuple[int, ...]
    attnames: tuple[str, ...]
    local_setter: Callable[[Model, Model | None], None] | None
    remote_setter: Callable[[Model, Model], None] | None
    parent: int | None  # index of the part this one hangs from
    pk: int  # index in `columns` of the primary key (None there: no related object)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slot: int  # where the value goes in params
    converters: dict[int, tuple[list[Callable[..., Any]], Any]]
    parts: tuple[_Part, ...]


class PreparedLookup:
    """`lookup(value)`: the first instance of `build(value)`'s queryset, or None.

    `build` must use its argument as a plain parameter of a filter (e.g.
    `lambda key: Token.objects.select_related("user").filter(key=key)`), so that the compiled
    SQL has it as one of its parameters.
    """

    def __init__(self, build: Callable[[Any], QuerySet]) -> None:
        self.build = build
        self.compiled: dict[str, _Compiled] = {}
        self.lock = threading.Lock()

    def __call__(self, value: Any, using: str = "default") -> Any:
        compiled = self.compiled.get(using) or self._compile(using)
        connection = connections[using]
        params = list(compiled.params)
        params[compiled.slot] = value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        row = list(row)
        for position, (functions, expression) in compiled.converters.items():
            for convert in functions:
                row[position] = convert(row[position], expression, connection)
        built: list[Model | None] = []
        for part in compiled.parts:
            values = [row[i] for i in part.columns]
            missing = part.parent is not None and values[part.pk] is None
            obj = None if missing else part.model.from_db(using, part.attnames, values)
            if part.parent is not None:
                parent = built[part.parent]
                if parent is not None and part.local_setter is not None:
                    part.local_setter(parent, obj)
                if parent is not None and obj is not None and part.remote_setter is not None:
                    part.remote_setter(obj, parent)
            built.append(obj)
        return built[0]

    def _compile(self, using: str) -> _Compiled:
        with self.lock:
            if using in self.compiled:
                return self.compiled[using]
            compiler = self.build(PLACEHOLDER)[:1].query.get_compiler(using=using)
            sql, params = compiler.as_sql()
            slots = [i for i, p in enumerate(params) if p == PLACEHOLDER]
            if len(slots) != 1:
                raise ValueError(f"the lookup's value must be one plain parameter of its query: {sql}")
            expressions = [column for column, _, _ in compiler.select]
            parts: list[_Part] = []
            _collect(compiler.klass_info, compiler.select, parts, parent=None)
            compiled = _Compiled(
                sql=sql,
                params=tuple(params),
                slot=slots[0],
                converters=compiler.get_converters(expressions),
                parts=tuple(parts),
            )
            self.compiled[using] = compiled
            return compiled


def _collect(info: dict[str, Any], select: list[Any], parts: list[_Part], parent: int | None) -> None:
    columns = tuple(info["select_fields"])
    attnames = tuple(select[i][0].target.attname for i in columns)
    parts.append(
        _Part(
            model=info["model"],
            columns=columns,
            attnames=attnames,
            pk=attnames.index(info["model"]._meta.pk.attname),
            local_setter=info.get("local_setter"),
            remote_setter=info.get("remote_setter"),
            parent=parent,
        )
    )
    index = len(parts) - 1
    for related in info.get("related_klass_infos", []):
        _collect(related, select, parts, parent=index)


class PreparedInsert:
    """`insert(obj)`: `obj.save(force_insert=True)` for a model whose primary key is set before
    saving (no returned columns), with its INSERT compiled once per database alias.

    The model's `pre_save` and `post_save` signals are sent as `save()` sends them, and the
    instance is marked as saved; each value goes through its field's `pre_save` and
    `get_db_prep_save`, as in `save()`.
    """

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self.fields = tuple(model._meta.concrete_fields)
        self.sql: dict[str, str] = {}

    def __call__(self, obj: Model, using: str = "default") -> None:
        connection = connections[using]
        sql = self.sql.get(using)
        if sql is None:
            quote = connection.ops.quote_name  # names from the model; every value is a parameter
            table = quote(self.model._meta.db_table)
            columns = ", ".join(quote(f.column) for f in self.fields)
            placeholders = ", ".join(["%s"] * len(self.fields))
            sql = self.sql[using] = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
        model = type(obj)
        signals.pre_save.send(sender=model, instance=obj, raw=False, using=using, update_fields=None)
        values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in self.fields]
        with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
            cursor.execute(sql, values)
        obj._state.adding = False
        obj._state.db = using
        signals.post_save.send(sender=model, instance=obj, created=True, update_fields=None, raw=False, using=using)
