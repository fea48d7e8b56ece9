"""The query language of REST filters, live queries and access rules.

    status = "published" && (price >= 10 || featured = true)

`parse` turns text into a syntax tree (syntax errors only); `compile_query` binds the tree to a
collection's fields and the caller, checking names, operators and types, and returns a
`Condition` that compiles both to a Django `Q` (`condition.q()`, database side) and to an
in-memory predicate (`condition.matches(record)`, event side). The two agree on every record:
both read a value as null when it is missing, null or of another type than the field's, and apply
the same null rules.
"""

from __future__ import annotations

import unicodedata
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

MAX_LENGTH = 2048
MAX_COMPARISONS = 32
MAX_DEPTH = 16

MACROS = {"@request.auth.id": "id", "@request.auth.username": "username"}
ORDERING_OPERATORS = (">", ">=", "<", "<=")
OPERATORS_BY_KIND = {
    TEXT: ("=", "!=", ">", ">=", "<", "<=", "~", "!~"),
    NUMBER: ("=", "!=", ">", ">=", "<", "<="),
    DATE: ("=", "!=", ">", ">=", "<", "<="),
    DATETIME: ("=", "!=", ">", ">=", "<", "<="),
    BOOL: ("=", "!="),
    JSON: ("=", "!="),
}
_BARE_STOP = frozenset(" \"'()&|=!<>~")


class QueryError(Exception):
    """An invalid query: shown to clients as 400 `{"detail", "code": "invalid_query", "position"}`."""

    code = "invalid_query"

    def __init__(self, detail: str, position: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.position = position

    def as_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code, "position": self.position}


# --- syntax tree ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRef:
    name: str
    position: int


@dataclass(frozen=True, slots=True)
class MacroRef:
    name: str  # "id" or "username"
    position: int


@dataclass(frozen=True, slots=True)
class Literal:
    kind: str  # "string" (quoted), "word" (bare), "number", "bool", "null"
    text: str  # the characters as written (unescaped for strings)
    position: int


@dataclass(frozen=True, slots=True)
class Comparison:
    left: FieldRef | MacroRef
    op: str
    right: Literal | MacroRef
    position: int  # of the operator


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # "&&" or "||"
    items: tuple[Any, ...]


Node = Comparison | BoolOp


# --- tokenizer -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "(", ")", "&&", "||", "op", "string", "word", "end"
    text: str
    position: int


def _is_forbidden(char: str) -> bool:
    """Control characters, lone surrogates (not valid Unicode) and every separator but the space."""
    return char != " " and unicodedata.category(char) in ("Cc", "Cs", "Zs", "Zl", "Zp")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == " ":
            i += 1
        elif _is_forbidden(char):
            raise QueryError(f"character U+{ord(char):04X} is not allowed (only spaces separate tokens)", i)
        elif char in "()":
            tokens.append(Token(char, char, i))
            i += 1
        elif char in "&|":
            if text.startswith(char * 2, i):
                tokens.append(Token(char * 2, char * 2, i))
                i += 2
            else:
                raise QueryError(f"unknown operator '{char}' (use '{char * 2}')", i)
        elif char in "=~":
            tokens.append(Token("op", char, i))
            i += 1
        elif char == "!":
            if i + 1 < n and text[i + 1] in "=~":
                tokens.append(Token("op", text[i : i + 2], i))
                i += 2
            else:
                raise QueryError("unknown operator '!' (use '!=' or '!~')", i)
        elif char in "<>":
            op = text[i : i + 2] if i + 1 < n and text[i + 1] == "=" else char
            tokens.append(Token("op", op, i))
            i += len(op)
        elif char in "\"'":
            value, i = _read_string(text, i)
            tokens.append(value)
        else:
            start = i
            while i < n and text[i] not in _BARE_STOP and not _is_forbidden(text[i]):
                i += 1
            tokens.append(Token("word", text[start:i], start))
    tokens.append(Token("end", "", n))
    return tokens


def _read_string(text: str, start: int) -> tuple[Token, int]:
    quote = text[start]
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == quote:
            return Token("string", "".join(chars), start), i + 1
        if char == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in ('"', "'", "\\"):
                raise QueryError("invalid escape in string (only \\\" \\' and \\\\ are allowed)", i)
            chars.append(nxt)
            i += 2
            continue
        if _is_forbidden(char):
            raise QueryError(f"character U+{ord(char):04X} is not allowed", i)
        chars.append(char)
        i += 1
    raise QueryError("unterminated string", start)


# --- parser --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.comparisons = 0

    def peek(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != "end":
            self.index += 1
        return token

    def expression(self, depth: int) -> Node:
        items = [self.conjunction(depth)]
        while self.peek().kind == "||":
            self.advance()
            items.append(self.conjunction(depth))
        return items[0] if len(items) == 1 else BoolOp("||", tuple(items))

    def conjunction(self, depth: int) -> Node:
        items = [self.term(depth)]
        while self.peek().kind == "&&":
            self.advance()
            items.append(self.term(depth))
        return items[0] if len(items) == 1 else BoolOp("&&", tuple(items))

    def term(self, depth: int) -> Node:
        token = self.peek()
        if token.kind != "(":
            return self.comparison()
        if depth >= MAX_DEPTH:
            raise QueryError(f"parentheses are nested deeper than {MAX_DEPTH}", token.position)
        self.advance()
        node = self.expression(depth + 1)
        closing = self.peek()
        if closing.kind != ")":
            if closing.kind == "end":
                raise QueryError("unbalanced parentheses: '(' is never closed", token.position)
            raise QueryError(_unexpected(closing, "')'"), closing.position)
        self.advance()
        return node

    def comparison(self) -> Comparison:
        token = self.advance()
        if token.kind != "word":
            raise QueryError(_unexpected(token, "a field name"), token.position)
        left: FieldRef | MacroRef = (
            _macro(token) if token.text.startswith("@") else FieldRef(token.text, token.position)
        )
        op = self.advance()
        if op.kind != "op":
            raise QueryError(_unexpected(op, "an operator (= != > >= < <= ~ !~)"), op.position)
        value = self.advance()
        if value.kind == "string":
            right: Literal | MacroRef = Literal("string", value.text, value.position)
        elif value.kind == "word":
            right = _macro(value) if value.text.startswith("@") else _word_literal(value)
        else:
            raise QueryError(_unexpected(value, "a value"), value.position)
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise QueryError(f"a query has at most {MAX_COMPARISONS} comparisons", None)
        return Comparison(left, op.text, right, op.position)


def _unexpected(token: Token, expected: str) -> str:
    if token.kind == "end":
        return f"unexpected end of query, expected {expected}"
    return f"unexpected '{token.text}', expected {expected}"


def _macro(token: Token) -> MacroRef:
    if token.text not in MACROS:
        raise QueryError(
            f"unknown macro '{token.text}' (use @request.auth.id or @request.auth.username)", token.position
        )
    return MacroRef(MACROS[token.text], token.position)


def _word_literal(token: Token) -> Literal:
    text = token.text
    if text in ("true", "false"):
        return Literal("bool", text, token.position)
    if text == "null":
        return Literal("null", text, token.position)
    try:
        parse_number_text(text)
    except FieldValueError:
        return Literal("word", text, token.position)
    return Literal("number", text, token.position)


def parse(text: str) -> Node | None:
    """Parse query text into a syntax tree; None for an empty or all-space query."""
    if not isinstance(text, str):
        raise QueryError("the query must be text", None)
    if len(text) > MAX_LENGTH:
        raise QueryError(f"the query is longer than {MAX_LENGTH} characters", None)
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        return None
    parser = _Parser(tokens)
    node = parser.expression(0)
    rest = parser.peek()
    if rest.kind == ")":
        raise QueryError("unbalanced parentheses: unexpected ')'", rest.position)
    if rest.kind != "end":
        raise QueryError(_unexpected(rest, "'&&', '||' or the end of the query"), rest.position)
    return node


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


def compile_text(text: str, **kwargs: Any) -> Condition:
    """`parse` then `compile_query`."""
    return compile_query(parse(text), **kwargs)
