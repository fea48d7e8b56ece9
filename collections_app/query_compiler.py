"""The query language's compiled form: syntax tree -> `Condition`.

`compile_query` binds a tree from `collections_app.query_parser` to a collection's fields and the
caller, checking names, operators and types, and returns a `Condition` that compiles both to a
Django `Q` (`condition.q()`, database side) and to an in-memory predicate
(`condition.matches(record)`, event side). The two agree on every record: both read a value as
null when it is missing, null or of another type than the field's, and apply the same null rules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from typing import Any

from django.db.models import F, Q, Value
from django.db.models.functions import StrIndex
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IsNull,
    LessThan,
    LessThanOrEqual,
)

from collections_app import expressions as sql
from collections_app.query_parser import BoolOp, Comparison, Literal, MacroRef, Node, QueryError
from collections_app.schema import (
    BOOL,
    DATE,
    DATETIME,
    JSON,
    NUMBER,
    SYSTEM_FIELDS,
    TEXT,
    FieldSpec,
)
from collections_app.values import (
    FieldValueError,
    format_datetime,
    normalize_date,
    parse_datetime_text,
    parse_number_text,
)

ORDERING_OPERATORS = (">", ">=", "<", "<=")
OPERATORS_BY_KIND = {
    TEXT: ("=", "!=", ">", ">=", "<", "<=", "~", "!~"),
    NUMBER: ("=", "!=", ">", ">=", "<", "<="),
    DATE: ("=", "!=", ">", ">=", "<", "<="),
    DATETIME: ("=", "!=", ">", ">=", "<", "<="),
    BOOL: ("=", "!="),
    JSON: ("=", "!="),
}

# --- conditions: the compiled form ---------------------------------------------------------------

NEVER = Q(pk__in=[])
ALWAYS = Q(pk__isnull=False)  # not Q(): an empty Q vanishes from `a | Q()`, turning "or true" into `a`


class Condition(ABC):
    """A compiled query: `q()` for the database, `matches(record)` for a record dict."""

    __slots__ = ()

    @abstractmethod
    def q(self) -> Q:
        """The condition as a Django `Q` over records."""

    @abstractmethod
    def matches(self, record: Mapping[str, Any]) -> bool:
        """Whether a record dict (system fields and values) satisfies the condition."""

    def equalities(self) -> list[tuple[str, Any]]:
        """(field, value) pairs that every matching record must equal (for subscriber indexes)."""
        return []


class Const(Condition):
    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def q(self) -> Q:
        return ALWAYS if self.value else NEVER

    def matches(self, record: Mapping[str, Any]) -> bool:
        return self.value

    def __repr__(self) -> str:
        return f"Const({self.value})"


TRUE = Const(True)
FALSE = Const(False)


class AllOf(Condition):
    __slots__ = ("items",)

    def __init__(self, items: list[Condition]) -> None:
        self.items = items

    def q(self) -> Q:
        return reduce(lambda a, b: a & b, (item.q() for item in self.items))

    def matches(self, record: Mapping[str, Any]) -> bool:
        return all(item.matches(record) for item in self.items)

    def equalities(self) -> list[tuple[str, Any]]:
        return [pair for item in self.items for pair in item.equalities()]

    def __repr__(self) -> str:
        return f"AllOf({self.items!r})"


class AnyOf(Condition):
    __slots__ = ("items",)

    def __init__(self, items: list[Condition]) -> None:
        self.items = items

    def q(self) -> Q:
        return reduce(lambda a, b: a | b, (item.q() for item in self.items))

    def matches(self, record: Mapping[str, Any]) -> bool:
        return any(item.matches(record) for item in self.items)

    def __repr__(self) -> str:
        return f"AnyOf({self.items!r})"


def all_of(items: list[Condition]) -> Condition:
    """AND with constants folded away."""
    kept = [item for item in items if item is not TRUE]
    if any(item is FALSE for item in kept):
        return FALSE
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else AllOf(kept)


def any_of(items: list[Condition]) -> Condition:
    """OR with constants folded away."""
    kept = [item for item in items if item is not FALSE]
    if any(item is TRUE for item in kept):
        return TRUE
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else AnyOf(kept)


def compare(value: Any, op: str, literal: Any) -> bool:
    """The null rules of the language: `value` is the record's value (None when null)."""
    if literal is None:
        return (value is None) if op == "=" else (value is not None)
    if value is None:
        return op in ("!=", "!~")
    if op == "=":
        return value == literal
    if op == "!=":
        return value != literal
    if op == ">":
        return value > literal
    if op == ">=":
        return value >= literal
    if op == "<":
        return value < literal
    if op == "<=":
        return value <= literal
    contains = literal in sql.ascii_lower(value)  # literal is lowered when compiled
    return contains if op == "~" else not contains


def read_value(spec: FieldSpec, record: Mapping[str, Any]) -> Any:
    """A field's value as the language sees it: None when missing, null or of another type."""
    raw = record.get(spec.name)
    kind = spec.kind
    if raw is None:
        return None
    if kind == NUMBER:
        return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if kind == BOOL:
        return raw if isinstance(raw, bool) else None
    if kind == JSON:
        return raw
    if isinstance(raw, datetime):  # system datetimes given as objects
        return format_datetime(raw)
    return raw if isinstance(raw, str) else None


def db_value(spec: FieldSpec) -> Any:
    """The SQL expression the database compares for a field."""
    if spec.is_column:
        return F(spec.name)
    if spec.kind == NUMBER:
        return sql.JsonNumber(spec.name)
    if spec.kind == BOOL:
        return sql.JsonBool(spec.name)
    return sql.JsonText(spec.name)


class FieldTest(Condition):
    """`field op literal` with a literal already coerced to the field's kind (None for null)."""

    __slots__ = ("op", "spec", "value")

    def __init__(self, spec: FieldSpec, op: str, value: Any) -> None:
        self.spec = spec
        self.op = op
        self.value = sql.ascii_lower(value) if op in ("~", "!~") else value

    def __repr__(self) -> str:
        return f"FieldTest({self.spec.name!r} {self.op} {self.value!r})"

    def matches(self, record: Mapping[str, Any]) -> bool:
        return compare(read_value(self.spec, record), self.op, self.value)

    def equalities(self) -> list[tuple[str, Any]]:
        if self.op == "=" and self.value is not None and self.spec.kind != JSON:
            return [(self.spec.name, self.value)]
        return []

    def q(self) -> Q:
        spec, op, value = self.spec, self.op, self.value
        if spec.kind == JSON or (value is None and not spec.is_column):
            missing = Q(sql.JsonMissing(spec.name)) if spec.kind == JSON else Q(IsNull(db_value(spec), True))
            return missing if op == "=" else ~missing
        if value is None:  # system columns are never null
            return NEVER if op == "=" else ALWAYS
        expr = db_value(spec)
        if spec.is_column and spec.kind == DATETIME:
            value = parse_datetime_text(value)
        elif spec.is_column and op in ORDERING_OPERATORS:
            expr = sql.CodePointOrder(expr)
        if op == "=":
            return Q(Exact(expr, value))
        if op in ORDERING_OPERATORS:
            return Q(_ORDERING_LOOKUPS[op](expr, value))
        position = StrIndex(sql.AsciiLower(expr), Value(value))
        if op == "~":
            return Q(GreaterThan(position, 0))
        differs = ~Q(Exact(expr, value)) if op == "!=" else Q(Exact(position, 0))
        # `!=` and `!~` hold on a null value; system columns are never null.
        return differs if spec.is_column else Q(IsNull(expr, True)) | differs


_ORDERING_LOOKUPS = {">": GreaterThan, ">=": GreaterThanOrEqual, "<": LessThan, "<=": LessThanOrEqual}


# --- binding: names, types and the caller --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth:
    """What macros read: the caller's id (as a string) and username, None when anonymous."""

    id: str | None = None
    username: str | None = None

    @classmethod
    def of(cls, user: Any) -> Auth:
        if user is None or not getattr(user, "is_authenticated", False):
            return ANONYMOUS
        return cls(id=str(user.pk), username=user.get_username())

    def macro(self, name: str) -> str | None:
        return self.id if name == "id" else self.username


ANONYMOUS = Auth()


class _NotApplicable(Exception):
    """A comparison that does not fit this collection (lenient mode makes it false)."""


def coerce_literal(spec: FieldSpec, literal: Literal) -> Any:
    """A literal as a value of the field's kind; raises FieldValueError."""
    kind, text = spec.kind, literal.text
    if kind == TEXT:
        return text
    if kind == NUMBER:
        return parse_number_text(text)
    if kind == BOOL:
        if text not in ("true", "false"):
            raise FieldValueError(f"{text!r} is not true or false")
        return text == "true"
    if kind == DATE:
        return normalize_date(text)
    if kind == DATETIME:
        return format_datetime(parse_datetime_text(text))
    raise FieldValueError(f"{spec.type} fields can only be compared with null")


class _Binder:
    def __init__(
        self,
        fields: Mapping[str, FieldSpec],
        auth: Auth,
        allow_hidden: bool,
        lenient: bool,
    ) -> None:
        self.fields = fields
        self.auth = auth
        self.allow_hidden = allow_hidden
        self.lenient = lenient

    def not_applicable(self, detail: str, position: int) -> None:
        if self.lenient:
            raise _NotApplicable
        raise QueryError(detail, position)

    def bind(self, node: Node) -> Condition:
        if isinstance(node, BoolOp):
            items = [self.bind(item) for item in node.items]
            return all_of(items) if node.op == "&&" else any_of(items)
        try:
            return self.comparison(node)
        except _NotApplicable:
            return FALSE

    def comparison(self, node: Comparison) -> Condition:
        left, op, right = node.left, node.op, node.right
        if isinstance(right, Literal) and right.kind == "null" and op not in ("=", "!="):
            raise QueryError(f"null can only be compared with = or !=, not '{op}'", node.position)
        if isinstance(left, MacroRef):
            return self.macro_comparison(left, op, right)
        spec = SYSTEM_FIELDS.get(left.name) or self.fields.get(left.name)
        if spec is None or (spec.hidden and not self.allow_hidden):
            self.not_applicable(f"unknown field '{left.name}'", left.position)
        if op not in OPERATORS_BY_KIND[spec.kind]:
            self.not_applicable(f"operator '{op}' cannot be used with {spec.type} field '{spec.name}'", node.position)
        if isinstance(right, MacroRef):
            if spec.kind == JSON:
                self.not_applicable(f"{spec.type} fields can only be compared with null", right.position)
            caller_value = self.auth.macro(right.name)
            if caller_value is None:
                return FALSE  # anonymous: a field never equals (or differs from) a missing caller
            try:
                value = coerce_literal(spec, Literal("string", caller_value, right.position))
            except FieldValueError:
                return FALSE
            return FieldTest(spec, op, value)
        if right.kind == "null":
            return FieldTest(spec, op, None)
        try:
            value = coerce_literal(spec, right)
        except FieldValueError as exc:
            self.not_applicable(f"invalid value for {spec.type} field '{spec.name}': {exc}", right.position)
        return FieldTest(spec, op, value)

    def macro_comparison(self, left: MacroRef, op: str, right: Literal | MacroRef) -> Condition:
        value = self.auth.macro(left.name)
        if isinstance(right, MacroRef):
            other = self.auth.macro(right.name)
        else:
            other = None if right.kind == "null" else right.text
        if other is None and op not in ("=", "!="):
            return FALSE
        if op in ("~", "!~") and other is not None:
            other = sql.ascii_lower(other)
        return TRUE if compare(value, op, other) else FALSE


def compile_query(
    tree: Node | None,
    *,
    fields: Mapping[str, FieldSpec],
    auth: Auth = ANONYMOUS,
    allow_hidden: bool = False,
    lenient: bool = False,
) -> Condition:
    """Bind a parsed query to a collection's fields and the caller.

    `fields` maps names to the collection's FieldSpecs (system fields are added here).
    `allow_hidden`: staff callers and access rules may use hidden fields.
    `lenient`: a comparison that does not fit this collection is false instead of an error
    (the all-collections stream).
    """
    if tree is None:
        return TRUE
    return _Binder(fields, auth, allow_hidden, lenient).bind(tree)
