"""Value normalisation, shared by writes (the schema's field types) and query literals: datetimes,
dates, numbers and text, each checked and written in one canonical form."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime
from typing import Any

from collections_app.inputs import text_problem


class FieldValueError(ValueError):
    """A value that does not fit a field; the message is shown to the client."""


def format_datetime(value: datetime) -> str:
    """Canonical datetime text: UTC, four-digit year, microseconds, `Z` (`0005-06-01T00:00:00.000000Z`).

    Sorting the text sorts chronologically (years 0001-9999). `isoformat`, not `strftime`: glibc's
    `%Y` does not zero-pad years below 1000.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_datetime_text(text: str) -> datetime:
    """Parse ISO 8601 (date or date and time; naive means UTC) into an aware datetime."""
    if not isinstance(text, str) or not 8 <= len(text) <= 64:
        raise FieldValueError("Enter a valid ISO 8601 datetime.")
    try:
        if "T" in text or " " in text:
            parsed = datetime.fromisoformat(text)
        else:
            d = date.fromisoformat(text)
            parsed = datetime(d.year, d.month, d.day)
    except ValueError:
        raise FieldValueError("Enter a valid ISO 8601 datetime.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise FieldValueError("Enter a valid ISO 8601 datetime.") from None


def normalize_datetime(value: Any) -> str:
    if isinstance(value, datetime):
        return format_datetime(value)
    return format_datetime(parse_datetime_text(value))


def normalize_date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or len(value) > 10:
        raise FieldValueError("Enter a valid date in YYYY-MM-DD format.")
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise FieldValueError("Enter a valid date in YYYY-MM-DD format.") from None


NUMBER_RE = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # ASCII digits only: `\d` takes any script's


def normalize_number(value: Any) -> float | int:
    """A finite JSON number (never a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldValueError("A valid number is required.")
    try:
        as_float = float(value)
    except OverflowError:
        raise FieldValueError("Number is out of range.") from None
    if not math.isfinite(as_float):
        raise FieldValueError("A valid number is required.")
    return value


def parse_number_text(text: str) -> float:
    """A number written as text (query literals): digits, not NaN or Infinity."""
    if not NUMBER_RE.fullmatch(text):
        raise FieldValueError(f"{text!r} is not a number.")
    number = float(text)
    if not math.isfinite(number):
        raise FieldValueError(f"{text!r} is out of range.")
    return number


def normalize_text(value: Any) -> str:
    """A string of valid Unicode without NUL characters."""
    if not isinstance(value, str):
        raise FieldValueError("Not a valid string.")
    if problem := text_problem(value):
        raise FieldValueError(problem)
    return value


USER_ID_TEXT = re.compile(r"[0-9]{1,18}")


def user_pk(value: Any) -> int | None:
    """The account primary key a `user` field value names, or None when the text cannot be one:
    ASCII digits only (`isdigit` also takes "²" and "٣", which `int` refuses or reads as 3), within
    a 64-bit integer."""
    text = str(value)
    return int(text) if USER_ID_TEXT.fullmatch(text) else None
