"""The query language of REST filters, live queries and access rules.

    status = "published" && (price >= 10 || featured = true)

`parse` turns text into a syntax tree (syntax errors only); `compile_query` binds the tree to a
collection's fields and the caller, checking names, operators and types, and returns a
`Condition` that compiles both to a Django `Q` (`condition.q()`, database side) and to an
in-memory predicate (`condition.matches(record)`, event side). The two agree on every record:
both read a value as null when it is missing, null or of another type than the field's, and apply
the same null rules.

The parser (text -> syntax tree) is `collections_app.query_parser`, the compiler (syntax tree ->
`Condition`) is `collections_app.query_compiler`; this module is the entry point the rest of the
project imports from, and re-exports the names it uses.
"""

from __future__ import annotations

from typing import Any

from collections_app.query_compiler import (
    FALSE,
    OPERATORS_BY_KIND,
    TRUE,
    Auth,
    Condition,
    FieldTest,
    any_of,
    coerce_literal,
    compile_query,
    db_value,
    read_value,
)
from collections_app.query_parser import Literal, Node, QueryError, parse
from collections_app.schema import JSON, TEXT

__all__ = [
    "FALSE",
    "JSON",
    "OPERATORS_BY_KIND",
    "TEXT",
    "TRUE",
    "Auth",
    "Condition",
    "FieldTest",
    "Literal",
    "Node",
    "QueryError",
    "any_of",
    "coerce_literal",
    "compile_query",
    "compile_text",
    "db_value",
    "parse",
    "read_value",
]


def compile_text(text: str, **kwargs: Any) -> Condition:
    """`parse` then `compile_query`."""
    return compile_query(parse(text), **kwargs)
