"""Shared pieces of the property-based fuzz suites: settings, strategies and response checks.

CI runs each fuzz test with a few hundred examples (fewer for the slower live-server ones).
`FASTCMS_FUZZ_EXAMPLES=<n>` runs every fuzz test with `n` examples instead (a deep local run; with
`--timeout 0`, as the live-server ones then outlast the per-test timeout).
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import date, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import quote, quote_from_bytes

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from collections_app.values import parse_datetime_text


def fuzz_settings(ci_examples: int) -> settings:
    """`ci_examples` examples, or FASTCMS_FUZZ_EXAMPLES when set; no deadline (servers vary)."""
    examples = int(os.environ.get("FASTCMS_FUZZ_EXAMPLES", ci_examples))
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- strategies ----------------------------------------------------------------------------------

# Any code point, lone surrogates included (hypothesis leaves them out unless asked).
ANY_CHAR = st.characters(exclude_categories=())
any_text = st.text(ANY_CHAR, max_size=30)
short_text = st.text(ANY_CHAR, max_size=8)
huge_numbers = st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1, 1e308, -1e308, 5e-324, 1.7976931348623157e308])
numbers = st.one_of(st.integers(), st.floats(), huge_numbers)
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(short_text, inner, max_size=4)),
    max_leaves=12,
)


def nested(depth: int, leaf: Any = 0) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    return value


deep_values = st.integers(28, 40).map(nested)
offsets = st.integers(-1439, 1439).map(lambda minutes: timezone(timedelta(minutes=minutes)))
datetimes = st.builds(lambda moment, tz: moment.replace(tzinfo=tz).isoformat(), st.datetimes(), offsets)
dates = st.dates().map(date.isoformat)
emails = st.emails()
urls = st.from_regex(r"https?://[a-z]{1,12}\.(com|org|example)(/[a-z0-9]{0,8})?", fullmatch=True)


def encode_component(text: str) -> str:
    """Percent-encode text for a URL; a lone surrogate becomes its (invalid) UTF-8 bytes."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


url_component = st.one_of(
    any_text.map(encode_component),
    st.binary(max_size=12).map(lambda raw: quote_from_bytes(raw, safe="")),
    st.sampled_from(["", "%", "%zz", "%00", "..", "%2F", "+", "%ED%A0%80", "%C0%AF", "%F4%90%80%80"]),
)


def dumps(value: Any) -> str:
    """JSON text as a client may send it: lone surrogates as `\\ud800` escapes, NaN as `NaN`."""
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def parsed(raw: str | bytes) -> Any:
    """What an accepted raw body meant (an empty body is an empty object, as DRF reads it)."""
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return None


# --- checks --------------------------------------------------------------------------------------


def assert_json_answer(response: Any, context: Any) -> Any:
    """Never a 5xx; a body (if any) is JSON. Returns the parsed body (None when empty)."""
    status = response.status_code
    assert status < 500, (status, context, response.content[:500])
    if status == 204:
        return None
    content_type = response.headers.get("Content-Type", "")
    assert content_type.startswith("application/json"), (status, content_type, context, response.content[:300])
    return json.loads(response.content)


def same_json(a: Any, b: Any) -> bool:
    """JSON equality: numbers by their decimal value (PostgreSQL's jsonb writes 1e+300 as digits)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return Decimal(repr(a) if isinstance(a, float) else a) == Decimal(repr(b) if isinstance(b, float) else b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


CANONICAL_DATETIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def stored_as(field_type: str, sent: Any, stored: Any) -> bool:
    """Whether `stored` (read back) is what an accepted value `sent` of `field_type` must become."""
    if sent is None:
        return stored is None
    if field_type == "datetime":
        return bool(CANONICAL_DATETIME.fullmatch(stored)) and parse_datetime_text(stored) == parse_datetime_text(sent)
    if field_type == "date":
        return stored == date.fromisoformat(sent).isoformat()
    if field_type == "user":
        return stored == str(sent)
    if field_type == "number":
        return not isinstance(stored, bool) and math.isfinite(float(stored)) and same_json(stored, sent)
    return same_json(stored, sent)
