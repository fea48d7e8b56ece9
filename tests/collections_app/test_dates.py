"""Dates and datetimes of the years 0001-9999: four-digit years in and out, chronological order and
comparison on the configured database (SQLite by default, PostgreSQL in CI's service run)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from collections_app.models import Collection, Record
from collections_app.values import format_datetime, normalize_date, normalize_datetime

URL = "/api/v1/collections/events/records/"
FIELDS = [{"name": "at", "type": "datetime"}, {"name": "day", "type": "date"}, {"name": "label", "type": "text"}]
MOMENTS = ["2020-01-01T00:00:00Z", "0005-06-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z"]


@pytest.fixture
def events(make_collection: Any) -> Collection:
    return make_collection("events", FIELDS, list_rule="", view_rule="", create_rule="")


def labels(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [record["label"] for record in response.json()["results"]]


def test_four_digit_years_whatever_the_platform_strftime() -> None:
    assert format_datetime(datetime(5, 6, 1, tzinfo=UTC)) == "0005-06-01T00:00:00.000000Z"
    assert format_datetime(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == "9999-12-31T23:59:59.999999Z"
    assert normalize_datetime("0999-01-02T03:04:05+00:00") == "0999-01-02T03:04:05.000000Z"
    assert normalize_date("0005-06-01") == "0005-06-01"


def test_offsets_outside_the_years_0001_9999_are_refused(anon: APIClient, events: Collection) -> None:
    for value in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "10000-01-01T00:00:00Z", "0000-01-01"):
        response = anon.post(URL, {"at": value}, format="json")
        assert response.status_code == 400, value
        assert "at" in response.json()
    assert not Record.objects.exists()


def test_datetime_values_round_trip_and_order_chronologically(anon: APIClient, events: Collection) -> None:
    for moment in MOMENTS:
        created = anon.post(URL, {"at": moment, "day": moment[:10], "label": moment[:4]}, format="json")
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["at"] == normalize_datetime(moment)
        assert body["at"][:5] == f"{moment[:4]}-"
        assert anon.get(f"{URL}{body['id']}/").json()["day"] == moment[:10]
    assert labels(anon.get(URL, {"ordering": "at"})) == ["0001", "0005", "2020", "9999"]
    assert labels(anon.get(URL, {"ordering": "-day"})) == ["9999", "2020", "0005", "0001"]
    assert labels(anon.get(URL, {"query": 'at < "2020-01-01T00:00:00Z"', "ordering": "at"})) == ["0001", "0005"]
    assert labels(anon.get(URL, {"query": "day > 0001-01-01", "ordering": "day"})) == ["0005", "2020", "9999"]
    assert labels(anon.get(URL, {"at__gte": "0005-06-01T00:00:00Z", "at__lt": "9999-01-01", "ordering": "at"})) == [
        "0005",
        "2020",
    ]
    assert labels(anon.get(URL, {"day__in": "0005-06-01,9999-12-31", "ordering": "day"})) == ["0005", "9999"]


def test_created_and_updated_cover_the_years_0001_9999(anon: APIClient, events: Collection) -> None:
    for year in (2020, 5, 9999, 1):
        moment = datetime(year, 6, 1, tzinfo=UTC)
        Record.objects.create(collection=events, data={"label": f"{year:04d}"}, created=moment)
    assert labels(anon.get(URL, {"ordering": "created"})) == ["0001", "0005", "2020", "9999"]
    assert labels(anon.get(URL, {"ordering": "-updated"})) == ["9999", "2020", "0005", "0001"]
    everything = anon.get(URL, {"query": 'created > "0001-01-01T00:00:00Z"', "ordering": "created"})
    assert labels(everything) == ["0001", "0005", "2020", "9999"]
    assert everything.json()["results"][1]["created"] == "0005-06-01T00:00:00.000000Z"
    assert labels(anon.get(URL, {"query": 'updated < "1000-01-01T00:00:00Z"', "ordering": "created"})) == [
        "0001",
        "0005",
    ]
    assert labels(anon.get(URL, {"created__lt": "2020-01-01", "ordering": "created"})) == ["0001", "0005"]
    assert labels(anon.get(URL, {"created": "0005-06-01T00:00:00Z"})) == ["0005"]


def test_stored_system_dates_compare_in_memory_as_in_the_database(events: Collection) -> None:
    from collections_app.query import compile_text

    early = Record.objects.create(collection=events, data={}, created=datetime(5, 6, 1, tzinfo=UTC))
    late = Record.objects.create(collection=events, data={}, created=datetime(2020, 6, 1, tzinfo=UTC))
    condition = compile_text('created < "1000-01-01T00:00:00Z"', fields=events.field_map)
    in_database = set(events.records.filter(condition.q()).values_list("id", flat=True))
    in_memory = {r.id for r in (early, late) if condition.matches(Record.objects.get(pk=r.pk).as_dict())}
    assert in_database == in_memory == {early.id}
