"""SQL expressions over `Record.data`, written for SQLite and PostgreSQL.

Each extraction is guarded by the JSON type of the value, so a value of another type reads as
NULL (exactly what the in-memory predicate does) instead of being cast, compared as JSON text or
raising a database error.

A key that is a field name (`[a-z][a-z0-9_]*`, as the schema validates them) is written into the
SQL as a literal, so the SQL of a field is the same text in every query: an expression index on
a field (`collections_app.indexes`) compiles these same expressions, and SQLite only uses such an
index when the query's expression is the index's, literal for literal (a bound parameter never
matches). Any other key is a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any

from django.db import NotSupportedError
from django.db.models import BooleanField, Expression, F, FloatField, Func, TextField

ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = ASCII_UPPER.lower()
# Keys written into SQL as literals: nothing that could end or escape a quoted string.
LITERAL_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")


class JsonKey(Expression):
    """A typed value of one key of `Record.data` (NULL when missing, null or of another type)."""

    # {col} is the data column; each {key} placeholder takes the key (or JSON path) as a parameter.
    sqlite_template = ""
    postgresql_template = ""

    def __init__(self, key: str, *, source: Any = None, output_field: Any = None) -> None:
        super().__init__(output_field=output_field)
        self.key = key
        self.source = source if source is not None else F("data")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    def get_source_expressions(self) -> list[Any]:
        return [self.source]

    def set_source_expressions(self, exprs: list[Any]) -> None:
        (self.source,) = exprs

    def _render(self, template: str, compiler: Any, key_param: str) -> tuple[str, list[Any]]:
        column_sql, column_params = compiler.compile(self.source)
        inline_key = LITERAL_KEY_RE.fullmatch(self.key) is not None
        sql_parts: list[str] = []
        params: list[Any] = []
        # Substitute in order of appearance so the parameters line up with their placeholders.
        for chunk in template.replace("{key}", "\0key\0").replace("{col}", "\0col\0").split("\0"):
            if chunk == "key" and inline_key:
                sql_parts.append(f"'{key_param}'")
            elif chunk == "key":
                sql_parts.append("%s")
                params.append(key_param)
            elif chunk == "col":
                sql_parts.append(column_sql)
                params.extend(column_params)
            else:
                sql_parts.append(chunk)
        return "".join(sql_parts), params

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self._render(self.sqlite_template, compiler, f'$."{self.key}"')

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self._render(self.postgresql_template, compiler, self.key)

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        raise NotSupportedError(f"FastCMS queries support SQLite and PostgreSQL, not {connection.vendor}.")


class JsonText(JsonKey):
    """A JSON string, ordered by code point on both databases."""

    sqlite_template = "(CASE WHEN json_type({col}, {key}) = 'text' THEN json_extract({col}, {key}) END)"
    postgresql_template = "((CASE WHEN jsonb_typeof({col} -> {key}) = 'string' THEN {col} ->> {key} END) COLLATE \"C\")"

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(key, output_field=TextField(), **kwargs)


class JsonNumber(JsonKey):
    """A JSON number as a double, so numbers compare and sort numerically."""

    sqlite_template = (
        "(CASE WHEN json_type({col}, {key}) IN ('integer', 'real') THEN CAST(json_extract({col}, {key}) AS REAL) END)"
    )
    postgresql_template = (
        "(CASE WHEN jsonb_typeof({col} -> {key}) = 'number' THEN ({col} ->> {key})::double precision END)"
    )

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(key, output_field=FloatField(), **kwargs)


class JsonBool(JsonKey):
    sqlite_template = "(CASE json_type({col}, {key}) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
    postgresql_template = "(CASE WHEN jsonb_typeof({col} -> {key}) = 'boolean' THEN ({col} ->> {key})::boolean END)"

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(key, output_field=BooleanField(), **kwargs)


class JsonMissing(JsonKey):
    """True when the key is absent or JSON null."""

    sqlite_template = "(COALESCE(json_type({col}, {key}), 'null') = 'null')"
    postgresql_template = "(COALESCE(jsonb_typeof({col} -> {key}), 'null') = 'null')"
    conditional = True

    def __init__(self, key: str, **kwargs: Any) -> None:
        super().__init__(key, output_field=BooleanField(), **kwargs)


class AsciiLower(Func):
    """Lower-case ASCII letters only, identically on SQLite, PostgreSQL and in Python."""

    function = "LOWER"
    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self.as_sql(
            compiler,
            connection,
            template=f"TRANSLATE(%(expressions)s, '{ASCII_UPPER}', '{ASCII_LOWER}')",
            **extra,
        )


class CodePointOrder(Func):
    """Order a text column by code point (SQLite's default; PostgreSQL needs the C collation)."""

    template = "%(expressions)s"
    output_field = TextField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self.as_sql(compiler, connection, template='(%(expressions)s COLLATE "C")', **extra)


def ascii_lower(text: str) -> str:
    """The Python twin of AsciiLower."""
    return text.translate(_ASCII_TABLE)


_ASCII_TABLE = str.maketrans(ASCII_UPPER, ASCII_LOWER)
