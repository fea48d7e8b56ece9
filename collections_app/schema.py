"""Collection schemas: field definitions, their types and options, and value normalisation.

A collection's `fields` is stored as a list of dicts. `parse_fields` validates such a list and
returns `FieldSpec`s; each field type is a `FieldType` that knows its options, how its values are
validated and normalised on write, and which kind of value the query language compares.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

from collections_app.inputs import MAX_JSON_DEPTH, json_problem, text_problem
from collections_app.values import (
    FieldValueError,
    normalize_date,
    normalize_datetime,
    normalize_number,
    normalize_text,
)

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,62}")  # fullmatch: `$` would accept a trailing newline
RESERVED_FIELD_NAMES = frozenset({"id", "created", "updated", "collection"})
SYSTEM_FIELD_NAMES = ("id", "collection", "created", "updated")

# Kinds are what the query language compares: the value space of a field type.
TEXT, NUMBER, BOOL, DATE, DATETIME, JSON = "text", "number", "bool", "date", "datetime", "json"


def check_name(name: Any, what: str) -> str | None:
    """Return an error message when `name` is not a valid collection or field name."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or "__" in name:
        return (
            f"{what} must start with a lowercase letter and contain only lowercase letters, "
            "digits and single underscores (at most 63 characters)."
        )
    return None


# --- field types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldType:
    """One field type: its query kind, the options it takes and how its values are normalised."""

    name: str
    kind: str
    options: Mapping[str, Callable[[Any], Any]]
    normalize: Callable[[Any], Any]


def _opt_int(minimum: int = 0) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise FieldValueError(f"must be an integer >= {minimum}.")
        return value

    return check


def _opt_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldValueError("must be true or false.")
    return value


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the client's error, answered with a 400


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """A text `pattern` compiled for RE2, a linear-time engine: no value can make matching slow.

    RE2 has no backreferences or lookarounds; such a pattern raises FieldValueError.
    """
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise FieldValueError(
            f"is not a regular expression this server can run ({reason}; backreferences and lookarounds "
            "are not supported)."
        ) from None


def _opt_pattern(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 1000 or text_problem(value):
        raise FieldValueError("must be a regular expression (valid Unicode) of at most 1000 characters.")
    compile_pattern(value)
    return value


def _opt_values(value: Any) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v and not text_problem(v) for v in value)
    ):
        raise FieldValueError("must be a non-empty list of non-empty strings.")
    if len(set(value)) != len(value):
        raise FieldValueError("must not repeat a value.")
    return value


def _opt_collection(value: Any) -> str:
    if check_name(value, "collection"):
        raise FieldValueError("must be the name of a collection.")
    return value


def _normalize_email(value: Any) -> str:
    value = normalize_text(value)
    try:
        EmailValidator()(value)
    except ValidationError:
        raise FieldValueError("Enter a valid email address.") from None
    return value


def _normalize_url(value: Any) -> str:
    value = normalize_text(value)
    try:
        URLValidator()(value)
    except ValidationError:
        raise FieldValueError("Enter a valid URL.") from None
    return value


def _normalize_json(value: Any) -> Any:
    """Any JSON value nested at most 32 levels deep, whose keys and strings are valid Unicode
    without NUL characters (PostgreSQL's jsonb cannot store them), and whose numbers are finite."""
    if problem := json_problem(value, max_depth=MAX_JSON_DEPTH):
        raise FieldValueError(str(problem))
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise FieldValueError("NaN and Infinity are not JSON numbers.")
    return value


def _normalize_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldValueError("Must be a valid boolean.")
    return value


def _normalize_reference(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return normalize_text(value)


# `indexed`: the field's comparisons and ordering use a database index (collections_app.indexes).
# It says how values are looked up, not which values are valid. Every type but json takes it.
INDEXED = {"indexed": _opt_bool}
LOOKUP_OPTIONS = frozenset(INDEXED)

FIELD_TYPES: dict[str, FieldType] = {
    t.name: t
    for t in (
        FieldType(
            "text",
            TEXT,
            {"min_length": _opt_int(0), "max_length": _opt_int(1), "pattern": _opt_pattern, **INDEXED},
            normalize_text,
        ),
        FieldType(
            "number",
            NUMBER,
            {"min": normalize_number, "max": normalize_number, "integer": _opt_bool, **INDEXED},
            normalize_number,
        ),
        FieldType("bool", BOOL, {**INDEXED}, _normalize_bool),
        FieldType("email", TEXT, {**INDEXED}, _normalize_email),
        FieldType("url", TEXT, {**INDEXED}, _normalize_url),
        FieldType("date", DATE, {**INDEXED}, normalize_date),
        FieldType("datetime", DATETIME, {**INDEXED}, normalize_datetime),
        FieldType("select", TEXT, {"values": _opt_values, **INDEXED}, normalize_text),
        FieldType("json", JSON, {}, _normalize_json),
        FieldType("relation", TEXT, {"collection": _opt_collection, **INDEXED}, normalize_text),
        FieldType("user", TEXT, {**INDEXED}, _normalize_reference),
    )
}
REQUIRED_OPTIONS = {"select": ("values",), "relation": ("collection",)}


@dataclass(frozen=True)
class FieldSpec:
    """A validated field of a collection."""

    name: str
    type: str
    required: bool = False
    unique: bool = False
    hidden: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return FIELD_TYPES[self.type].kind

    @property
    def is_column(self) -> bool:
        """System fields live in model columns; the others in `Record.data`."""
        return False

    @property
    def indexed(self) -> bool:
        """Whether the database keeps an index on this field's values (the `indexed` option)."""
        return self.options.get("indexed") is True

    @property
    def value_options(self) -> dict[str, Any]:
        """The options that constrain values (all but `indexed`): a change of `indexed` alone
        needs no re-validation of stored values."""
        return {key: value for key, value in self.options.items() if key not in LOOKUP_OPTIONS}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "required": self.required,
            "unique": self.unique,
            "hidden": self.hidden,
            "options": dict(self.options),
        }


@dataclass(frozen=True)
class SystemField(FieldSpec):
    """`id`, `created`, `updated`: columns of the record, present on every collection."""

    @property
    def kind(self) -> str:
        return TEXT if self.name == "id" else DATETIME

    @property
    def is_column(self) -> bool:
        return True


SYSTEM_FIELDS: dict[str, SystemField] = {
    "id": SystemField("id", "text", required=True, unique=True),
    "created": SystemField("created", "datetime", required=True),
    "updated": SystemField("updated", "datetime", required=True),
}


def _parse_field(raw: Any, index: int) -> tuple[FieldSpec | None, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return None, {"": ["Each field must be an object."]}
    unknown = set(raw) - {"name", "type", "required", "unique", "hidden", "options"}
    for key in sorted(unknown):
        errors.setdefault(key, []).append("Unknown key.")
    name = raw.get("name")
    if message := check_name(name, "Field name"):
        errors.setdefault("name", []).append(message)
    elif name in RESERVED_FIELD_NAMES:
        errors.setdefault("name", []).append(f"'{name}' is reserved.")
    type_name = raw.get("type")
    if type_name not in FIELD_TYPES:
        choices = ", ".join(FIELD_TYPES)
        errors.setdefault("type", []).append(f"Must be one of: {choices}.")
    flags = {}
    for flag in ("required", "unique", "hidden"):
        value = raw.get(flag, False)
        if not isinstance(value, bool):
            errors.setdefault(flag, []).append("Must be true or false.")
        flags[flag] = value is True
    options = raw.get("options") or {}
    clean_options: dict[str, Any] = {}
    if not isinstance(options, dict):
        errors.setdefault("options", []).append("Must be an object.")
    elif type_name in FIELD_TYPES:
        allowed = FIELD_TYPES[type_name].options
        for key, value in options.items():
            if key not in allowed:
                errors.setdefault("options", []).append(f"'{key}' is not an option of {type_name}.")
                continue
            try:
                clean_options[key] = allowed[key](value)
            except FieldValueError as exc:
                errors.setdefault("options", []).append(f"'{key}' {exc}")
        for key in REQUIRED_OPTIONS.get(type_name, ()):
            if key not in options:
                errors.setdefault("options", []).append(f"'{key}' is required for {type_name}.")
        _check_bounds(clean_options, errors)
    if type_name == "json" and flags["unique"]:
        errors.setdefault("unique", []).append("json fields cannot be unique.")
    if errors:
        return None, errors
    return FieldSpec(name=name, type=type_name, options=clean_options, **flags), {}


def _check_bounds(options: dict[str, Any], errors: dict[str, list[str]]) -> None:
    for low, high in (("min", "max"), ("min_length", "max_length")):
        if low in options and high in options and options[low] > options[high]:
            errors.setdefault("options", []).append(f"'{low}' must not exceed '{high}'.")


def parse_fields(raw: Any) -> list[FieldSpec]:
    """Validate a list of field definitions; raise ValidationError({"fields": [...]}) if bad."""
    if not isinstance(raw, list):
        raise ValidationError({"fields": ["Must be a list of field objects."]})
    if len(raw) > 200:
        raise ValidationError({"fields": ["A collection has at most 200 fields."]})
    specs: list[FieldSpec] = []
    messages: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        spec, errors = _parse_field(item, index)
        for key, problems in errors.items():
            where = f"fields[{index}]" + (f".{key}" if key else "")
            messages.extend(f"{where}: {problem}" for problem in problems)
        if spec is None:
            continue
        if spec.name in seen:
            messages.append(f"fields[{index}].name: duplicate field name '{spec.name}'.")
        seen.add(spec.name)
        specs.append(spec)
    if messages:
        raise ValidationError({"fields": messages})
    return specs


def load_fields(stored: Iterable[Mapping[str, Any]]) -> list[FieldSpec]:
    """FieldSpecs from a collection's stored (already validated) field list."""
    return [
        FieldSpec(
            name=f["name"],
            type=f["type"],
            required=f.get("required", False),
            unique=f.get("unique", False),
            hidden=f.get("hidden", False),
            options=f.get("options") or {},
        )
        for f in stored
    ]


def check_value(spec: FieldSpec, value: Any) -> Any:
    """Validate and normalise one non-null value of a field (options included).

    Raises FieldValueError with a client-facing message. Existence of relations and users is checked
    by the caller, which has the database.
    """
    normalized = FIELD_TYPES[spec.type].normalize(value)
    options = spec.options
    if spec.type == "text":
        if "min_length" in options and len(normalized) < options["min_length"]:
            raise FieldValueError(f"Ensure this field has at least {options['min_length']} characters.")
        if "max_length" in options and len(normalized) > options["max_length"]:
            raise FieldValueError(f"Ensure this field has no more than {options['max_length']} characters.")
        if "pattern" in options and not _matches(options["pattern"], normalized):
            raise FieldValueError(f"Must match the pattern {options['pattern']!r}.")
    elif spec.type == "number":
        if options.get("integer") and not float(normalized).is_integer():
            raise FieldValueError("A whole number is required.")
        if "min" in options and normalized < options["min"]:
            raise FieldValueError(f"Ensure this value is greater than or equal to {options['min']}.")
        if "max" in options and normalized > options["max"]:
            raise FieldValueError(f"Ensure this value is less than or equal to {options['max']}.")
    elif spec.type == "select" and normalized not in options["values"]:
        raise FieldValueError(f"'{normalized}' is not one of: {', '.join(options['values'])}.")
    return normalized


def _matches(pattern: str, text: str) -> bool:
    try:
        compiled = compile_pattern(pattern)
    except FieldValueError:  # stored before patterns ran on RE2, and never re-validated since
        raise FieldValueError(f"This field's pattern {pattern!r} cannot be run; a staff user must change it.") from None
    return compiled.search(text) is not None


def is_blank(spec: FieldSpec, value: Any) -> bool:
    """A missing value for `required`: null, or an empty string for text-like fields."""
    return value is None or (value == "" and spec.kind == TEXT)


def unique_key(spec: FieldSpec, value: Any) -> str | None:
    """The text a unique constraint compares; None (not constrained) for null values."""
    if value is None:
        return None
    if spec.kind == NUMBER:
        return repr(float(value))
    if spec.kind == BOOL:
        return "true" if value else "false"
    return str(value)
