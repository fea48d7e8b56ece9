"""Limits and validity of client input that no later step could handle.

Text must be valid Unicode: a lone surrogate (`"\\ud800"` in JSON) passes Python's `json` and
the databases' JSON columns, then fails every response that includes it. NUL characters cannot
be stored or compared by PostgreSQL. JSON is bounded in depth, and URLs must be valid UTF-8
(Django silently replaces invalid bytes, which would compare with text the client never sent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

MAX_JSON_DEPTH = 32  # a json field's value
MAX_DOCUMENT_DEPTH = 64  # a whole request body (a record body nests its json values one level deeper)
MAX_IN_VALUES = 100


def text_problem(text: str) -> str | None:
    """Why `text` cannot be stored (a lone surrogate or a NUL character), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"Text must be valid Unicode (a lone surrogate, U+{code:04X}, at position {exc.start})."
    if "\x00" in text:
        return "Null characters are not allowed."
    return None


def printable(text: str) -> str:
    """`text` with lone surrogates and NUL escaped (`\\ud800`), so an error message can name it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _path(parts: tuple[Any, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{printable(part)}" if out else printable(part))
    return out


def _walk(value: Any) -> Iterator[tuple[tuple[Any, ...], int, str | None, Any]]:
    """(path, depth, key text or None, value) for every value and key, without recursion."""
    pending: list[tuple[tuple[Any, ...], int, Any]] = [((), 0, value)]
    while pending:
        path, depth, item = pending.pop()
        yield path, depth, None, item
        if isinstance(item, dict):
            for key, child in item.items():
                yield (*path, key), depth + 1, key, None
                pending.append(((*path, key), depth + 1, child))
        elif isinstance(item, list):
            pending.extend(((*path, index), depth + 1, child) for index, child in enumerate(item))


@dataclass(frozen=True)
class JsonProblem:
    """Where a JSON document breaks a rule: `path` (keys and indexes from its root) and why."""

    path: tuple[Any, ...]
    message: str

    def __str__(self) -> str:
        where = _path(self.path)
        return f"{self.message} (at {where})" if where else self.message


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH, check_text: bool = True) -> JsonProblem | None:
    """The first rule `value` breaks: nesting deeper than `max_depth` (an array or object counts
    one level), invalid text in a key or string (`check_text`); None when it is fine."""
    for path, depth, key, item in _walk(value):
        if key is not None:
            if check_text and (problem := text_problem(key)):
                return JsonProblem(path, f"Invalid key: {problem}")
        elif isinstance(item, dict | list) and depth >= max_depth:
            return JsonProblem((), f"JSON values may be nested at most {max_depth} levels deep.")
        elif check_text and isinstance(item, str) and (problem := text_problem(item)):
            return JsonProblem(path, problem)
    return None


# --- requests ----------------------------------------------------------------------------------


class InputRefused(Exception):
    """A request refused before any view runs: answered as JSON `{"detail", "code"}`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def as_dict(self) -> dict[str, str]:
        return {"detail": self.detail, "code": self.code}


def undecodable_parameters(encoded: str | bytes) -> list[str]:
    """Names of the parameters of a query string (or form body) whose percent-decoded name or
    value is not valid UTF-8, or contains NUL."""
    raw = encoded.encode("utf-8") if isinstance(encoded, str) else encoded
    bad: list[str] = []
    for part in raw.split(b"&"):
        texts = [unquote_to_bytes(piece.replace(b"+", b" ")) for piece in part.partition(b"=")[::2]]
        try:
            name, value = (text.decode("utf-8") for text in texts)
        except UnicodeDecodeError:
            bad.append(printable(texts[0].decode("utf-8", "replace")))
            continue
        if "\x00" in name or "\x00" in value:
            bad.append(printable(name))
    return bad


def check_request(request: HttpRequest) -> None:
    """Raise InputRefused for a request no view can serve: a Host not in ALLOWED_HOSTS (400),
    a NUL character in the path (404), a query parameter that is not valid text (400)."""
    try:
        request.get_host()
    except DisallowedHost:
        raise InputRefused(400, "invalid_host", "The Host header is not one this server answers to.") from None
    if "\x00" in request.path:
        raise InputRefused(404, "not_found", "Not found.")
    if bad := undecodable_parameters(request.META.get("QUERY_STRING", "")):
        names = ", ".join(sorted(set(bad)))
        raise InputRefused(
            400, "invalid_parameter", f"Query parameters must be valid UTF-8 text without NUL characters: {names}."
        )
