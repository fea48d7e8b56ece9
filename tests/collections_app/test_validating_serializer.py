"""The write path's serializer (fields kept per collection version and thread) validates exactly
as the record serializer does."""

from __future__ import annotations

from typing import Any

import pytest

from collections_app import services
from collections_app.serializers import RecordSerializer, ValidatingRecordSerializer

FIELDS = [
    {"name": "title", "type": "text", "required": True},
    {"name": "price", "type": "number"},
    {"name": "tags", "type": "json"},
    {"name": "when", "type": "date"},
    {"name": "owner", "type": "user"},
]
BODIES: list[Any] = [
    {"title": "Dune", "price": 9.5, "tags": ["a"], "when": "2021-03-04"},
    {"title": "", "price": "cheap"},
    {"title": None},
    {},
    {"price": 3},
    {"title": "x", "owner": "999999"},
    {"title": "x", "id": "abc", "nope": 1},
    {"title": "x", "when": "yesterday", "price": None},
    ["not", "an", "object"],
    "text",
]


def outcome(serializer_class: type, collection: Any, body: Any, partial: bool) -> tuple[bool, Any]:
    serializer = serializer_class(data=body, partial=partial, context={"collection": collection})
    valid = serializer.is_valid()
    return valid, dict(serializer.validated_data) if valid else serializer.errors


@pytest.mark.django_db
@pytest.mark.parametrize("partial", [False, True])
def test_the_same_values_and_errors_as_the_record_serializer(make_collection: Any, partial: bool) -> None:
    collection = make_collection("books", FIELDS)
    for body in BODIES * 2:  # the second time with the kept fields
        assert outcome(ValidatingRecordSerializer, collection, body, partial) == outcome(
            RecordSerializer, collection, body, partial
        ), body


@pytest.mark.django_db
def test_a_new_collection_version_gets_new_fields(make_collection: Any) -> None:
    collection = make_collection("books", [{"name": "title", "type": "text"}])
    assert outcome(ValidatingRecordSerializer, collection, {"title": "x", "pages": 3}, False)[0] is False
    changed = services.collection_update(
        collection=collection, changes={"fields": [*collection.fields, {"name": "pages", "type": "number"}]}
    )
    assert outcome(ValidatingRecordSerializer, changed, {"title": "x", "pages": 3}, False) == (
        True,
        {"title": "x", "pages": 3},
    )
    other = make_collection("films", [{"name": "title", "type": "text", "required": True}])
    assert outcome(ValidatingRecordSerializer, other, {}, False) == (False, {"title": ["This field is required."]})
