"""Random and malformed input never produces a 500: queries, filters, ordering and bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from collections_app.models import Collection

URL = "/api/v1/collections/products/records/"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

QUERY_ALPHABET = st.sampled_from(
    [*list(" ()&|=!<>~\"'\\@.-_0123456789eEtruefalsnpicwd"), "price", "title", "@request.auth.id", "null", "&&", "||"]
)
query_like = st.lists(QUERY_ALPHABET, max_size=40).map("".join)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)


@pytest.mark.django_db
@FUZZ
@given(text=st.one_of(query_like, any_text))
def test_random_queries_are_200_or_400(anon: APIClient, products: Collection, text: str) -> None:
    response = anon.get(URL, {"query": text})
    assert response.status_code in (200, 400), text
    if response.status_code == 400:
        body = response.json()
        assert body["code"] == "invalid_query"
        assert isinstance(body["detail"], str)
        assert body["position"] is None or 0 <= body["position"] <= len(text)


@pytest.mark.django_db
@FUZZ
@given(
    key=st.sampled_from(
        [
            "price",
            "price__gte",
            "price__in",
            "title__icontains",
            "active",
            "released__lt",
            "id__in",
            "created__gt",
            "ordering",
            "page",
            "page_size",
        ]
    ),
    value=any_text,
)
def test_random_filter_values_are_200_400_or_404(anon: APIClient, products: Collection, key: str, value: str) -> None:
    response = anon.get(URL, {key: value})
    assert response.status_code in (200, 400, 404), (key, value)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=10,
)


@pytest.mark.django_db
@FUZZ
@given(
    body=st.one_of(
        json_values,
        st.dictionaries(
            st.sampled_from(["title", "price", "active", "status", "released", "owner", "meta", "secret", "id"]),
            json_values,
            max_size=5,
        ),
    )
)
def test_random_json_bodies_are_201_or_400(staff_api: APIClient, products: Collection, body: Any) -> None:
    response = staff_api.post(URL, json.dumps(body), content_type="application/json")
    assert response.status_code in (201, 400), body


@pytest.mark.django_db
@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_are_400(staff_api: APIClient, products: Collection, raw: bytes) -> None:
    response = staff_api.post(URL, raw, content_type="application/json")
    assert response.status_code in (201, 400)
    collection_response = staff_api.post("/api/v1/collections/", raw, content_type="application/json")
    assert collection_response.status_code in (201, 400)


option_values = st.one_of(
    json_values, st.sampled_from([0, 1, -1, 5, 1e400, "x", "(", [], ["a", "a"], ["a"], "products"])
)
field_definitions = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "id", "A", "x__y", "", 5])},
    optional={
        "type": st.sampled_from(
            [
                "text",
                "number",
                "bool",
                "email",
                "url",
                "date",
                "datetime",
                "select",
                "json",
                "relation",
                "user",
                "nope",
                3,
            ]
        ),
        "required": json_values,
        "unique": json_values,
        "hidden": json_values,
        "options": st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(
                    ["min", "max", "min_length", "max_length", "pattern", "integer", "values", "collection", "x"]
                ),
                option_values,
                max_size=3,
            ),
        ),
    },
)


@pytest.mark.django_db
@FUZZ
@given(
    fields=st.one_of(json_values, st.lists(field_definitions, max_size=3)),
    rule=st.one_of(st.none(), any_text, query_like),
)
def test_random_collection_definitions_are_201_or_400(
    staff_api: APIClient, products: Collection, fields: Any, rule: Any
) -> None:
    body = {"name": "fuzzed", "fields": fields, "list_rule": rule}
    response = staff_api.post("/api/v1/collections/", json.dumps(body), content_type="application/json")
    assert response.status_code in (201, 400), body
    if response.status_code == 201:
        assert staff_api.delete("/api/v1/collections/fuzzed/").status_code == 204
    patched = staff_api.patch(
        "/api/v1/collections/products/", json.dumps({"fields": fields}), content_type="application/json"
    )
    assert patched.status_code in (200, 400), fields
