"""The query language's syntax: text -> syntax tree.

    status = "published" && (price >= 10 || featured = true)

`parse` tokenizes and parses query text into a tree of `BoolOp` and `Comparison` nodes whose
leaves are `FieldRef`, `MacroRef` and `Literal`. It reports syntax errors only (as `QueryError`
with a position) and enforces the limits on length, comparisons and nesting; names, operators
and types are checked when the tree is compiled (`collections_app.query_compiler`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from collections_app.values import FieldValueError, parse_number_text

MAX_LENGTH = 2048
MAX_COMPARISONS = 32
MAX_DEPTH = 16

MACROS = {"@request.auth.id": "id", "@request.auth.username": "username"}
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
