"""Property: a query's `Q` (database) and its predicate (memory) select exactly the same records.

Runs on the configured database: SQLite by default, PostgreSQL in CI's second run. Records are
stored without validation, so values of the wrong type, nulls and missing keys are covered too.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collections_app.models import Collection, Record, new_id
from collections_app.query import OPERATORS_BY_KIND, Auth, compile_text
from collections_app.schema import SYSTEM_FIELDS, load_fields
from collections_app.values import format_datetime

FIELDS = load_fields(
    [
        {"name": "title", "type": "text"},
        {"name": "price", "type": "number"},
        {"name": "active", "type": "bool"},
        {"name": "day", "type": "date"},
        {"name": "at", "type": "datetime"},
        {"name": "owner", "type": "user"},
        {"name": "meta", "type": "json"},
    ]
)
FIELD_MAP = {spec.name: spec for spec in FIELDS}
ALL_SPECS = [*FIELDS, *SYSTEM_FIELDS.values()]

# Few distinct values, so equalities and orderings often tie.
TEXT_CHOICES = [
    "",
    "a",
    "A",
    "ab",
    "abc",
    "B",
    "b",
    "django",
    "Django",
    "DJANGO!",
    "é",
    "É",
    "ß",
    "İ",
    "z z",
    '"q"',
    "\\",
    "100",
    "9",
]
TEXTS = st.sampled_from(TEXT_CHOICES)
NUMBERS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, -2.25, 10, 100, 1e10, 2**53 + 1, -(10**15), 0.1, 1e-7, 123456.789]),
)
# Mostly a few close values (ties), sometimes the ends of the years 0001-9999 (year 5 before 2000).
DAYS = st.one_of(
    st.dates(min_value=date(1999, 12, 30), max_value=date(2000, 1, 3)),
    st.sampled_from([date(1, 1, 1), date(5, 6, 1), date(999, 12, 31), date(9999, 12, 31)]),
).map(date.isoformat)
MOMENTS = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2000, 1, 1, 0, 0, 3)).map(
        lambda moment: moment.replace(microsecond=moment.microsecond // 250000 * 250000)
    ),
    st.sampled_from([datetime(1, 1, 1), datetime(5, 6, 1, 12), datetime(999, 12, 31), datetime(9999, 12, 31, 23)]),
)
STAMPS = MOMENTS.map(format_datetime)
# Stored values go through validation in the product, which refuses NUL characters (jsonb cannot hold them).
JSON_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=2)
JSON_VALUES = st.one_of(st.none(), st.integers(0, 2), JSON_TEXT, st.lists(st.integers(0, 1), max_size=2))
ANY_SCALAR = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS, DAYS)

VALUES = {
    "title": TEXTS,
    "price": NUMBERS,
    "active": st.booleans(),
    "day": DAYS,
    "at": STAMPS,
    "owner": st.sampled_from(["1", "2", "7"]),
    "meta": JSON_VALUES,
}


@st.composite
def record_data(draw: Any) -> dict[str, Any]:
    data = {}
    for name, values in VALUES.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue  # missing
        data[name] = draw(ANY_SCALAR) if choice == 1 else draw(values)  # 1 in 10: maybe the wrong type
    return data


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def literal_for(draw: Any, spec: Any, op: str) -> str:
    kind = spec.kind
    if op in ("=", "!=") and draw(st.integers(0, 7)) == 0:
        return "null"
    if spec.name == "id":
        return quote(draw(st.sampled_from(["", "a", "m", "zzzzzzzzzzzzzzz", "0"])))
    if kind == "text":
        text = draw(TEXTS)
        bare_ok = text and not any(c in text for c in " \"'()&|=!<>~\\") and not text.startswith("@")
        return text if bare_ok and draw(st.booleans()) else quote(text)
    if kind == "number":
        return repr(float(draw(NUMBERS))) if draw(st.booleans()) else quote(str(draw(st.integers(-3, 100))))
    if kind == "bool":
        return draw(st.sampled_from(["true", "false", '"true"']))
    if kind == "date":
        return draw(DAYS)
    if kind == "datetime":
        moment = draw(MOMENTS).replace(tzinfo=UTC)
        if spec.name in ("created", "updated"):
            return quote(moment.isoformat())
        hours = 2 if moment.year < 5000 else -2  # the same instant at another offset, within 0001-9999
        shifted = (moment + timedelta(hours=hours)).replace(tzinfo=timezone(timedelta(hours=hours)))
        return draw(st.sampled_from([moment.isoformat(), shifted.isoformat()]))
    return "null"


@st.composite
def comparison(draw: Any) -> str:
    if draw(st.integers(0, 15)) == 0:
        return draw(
            st.sampled_from(
                [
                    "@request.auth.id != null",
                    "@request.auth.id = null",
                    "owner = @request.auth.id",
                    "title != @request.auth.username",
                ]
            )
        )
    spec = draw(st.sampled_from(ALL_SPECS))
    op = draw(st.sampled_from(OPERATORS_BY_KIND[spec.kind]))
    literal = draw(literal_for(spec, op))
    if literal == "null" and op not in ("=", "!="):
        op = "="
    return f"{spec.name} {op} {literal}"


def queries() -> st.SearchStrategy[str]:
    return st.recursive(
        comparison(),
        lambda inner: st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        max_leaves=6,
    )


def agreement(rows: list[Any], query: str, auth: Auth) -> tuple[int, int]:
    """Store `rows`, select with `Q` and with the predicate, assert both agree (then roll back).

    Returns (records selected, records stored), so callers can see the check discriminated.
    """
    condition = compile_text(query, fields=FIELD_MAP, auth=auth, allow_hidden=True)
    with transaction.atomic():
        collection = Collection.objects.create(name=f"c{new_id()}", fields=[s.as_dict() for s in FIELDS])
        records = [
            Record(
                collection=collection,
                data=data,
                created=datetime.fromisoformat(created),
                updated=datetime.fromisoformat(updated),
            )
            for data, created, updated in rows
        ]
        Record.objects.bulk_create(records)
        in_database = set(collection.records.filter(condition.q()).values_list("id", flat=True))
        stored = list(collection.records.all())
        in_memory = {record.id for record in stored if condition.matches(record.as_dict())}
        transaction.set_rollback(True)
    assert in_database == in_memory, f"{connection.vendor}: {query!r} -> {condition!r}"
    return len(in_database), len(stored)


AGREEMENT_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
ROWS = st.lists(st.tuples(record_data(), STAMPS, STAMPS), min_size=1, max_size=8)
AUTHS = st.sampled_from([Auth(), Auth(id="7", username="Django"), Auth(id="2", username="b")])


@pytest.mark.django_db
@settings(max_examples=int(os.environ.get("QUERY_EXAMPLES", "250")), **AGREEMENT_SETTINGS)
@given(rows=ROWS, query=queries(), auth=AUTHS)
def test_q_and_predicate_select_the_same_records(rows: list[Any], query: str, auth: Auth) -> None:
    agreement(rows, query, auth)


@pytest.mark.postgresql
@pytest.mark.django_db
def test_agreement_holds_on_postgresql() -> None:
    """CI's service run: the property holds on PostgreSQL (collation, jsonb, numeric casts, year 1),
    on queries that select some records and not others."""
    assert connection.vendor == "postgresql"
    outcomes: list[tuple[int, int]] = []

    @settings(max_examples=100, **AGREEMENT_SETTINGS)
    @given(rows=ROWS, query=queries(), auth=AUTHS)
    def agree(rows: list[Any], query: str, auth: Auth) -> None:
        outcomes.append(agreement(rows, query, auth))

    agree()
    assert len(outcomes) >= 100
    assert any(0 < selected < stored for selected, stored in outcomes)  # the queries discriminate
    assert any(selected == 0 for selected, _ in outcomes)
    assert any(selected == stored for selected, stored in outcomes)


TEXT_VALUES = [*TEXT_CHOICES, "i", "~"]
NUMBER_VALUES = [-(10**15), -2.25, -1, 0, 0.1, 0.5, 1, 9, 10, 100, 2**53 + 1, 1e10]


@pytest.mark.django_db
def test_every_text_and_number_operator_agrees_exhaustively() -> None:
    """Every operator against every value of a tricky set (case folding, collation, big numbers)."""
    collection = Collection.objects.create(name="exhaustive", fields=[s.as_dict() for s in FIELDS])
    rows = [{"title": text} for text in TEXT_VALUES] + [{"price": number} for number in NUMBER_VALUES] + [{}]
    Record.objects.bulk_create(
        [
            Record(
                collection=collection,
                data=row,
                created=datetime(2000, 1, 1, tzinfo=UTC),
                updated=datetime(2000, 1, 1, tzinfo=UTC),
            )
            for row in rows
        ]
    )
    stored = list(collection.records.all())
    queries = [f"title {op} {quote(text)}" for op in OPERATORS_BY_KIND["text"] for text in TEXT_VALUES]
    queries += [f"price {op} {number!r}" for op in OPERATORS_BY_KIND["number"] for number in NUMBER_VALUES]
    for query in queries:
        condition = compile_text(query, fields=FIELD_MAP)
        in_database = set(collection.records.filter(condition.q()).values_list("id", flat=True))
        in_memory = {record.id for record in stored if condition.matches(record.as_dict())}
        assert in_database == in_memory, f"{connection.vendor}: {query!r}"
