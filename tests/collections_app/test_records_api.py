"""/api/v1/collections/{name}/records/: CRUD, validation per type, filters, ordering, paging."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection, Record

URL = "/api/v1/collections/products/records/"


def detail(record_id: str) -> str:
    return f"{URL}{record_id}/"


def test_create_returns_a_flat_record(alice_api: APIClient, alice: User, products: Collection) -> None:
    response = alice_api.post(URL, {"title": "Lamp", "price": 150, "owner": str(alice.pk)}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert list(body)[:4] == ["id", "collection", "created", "updated"]
    assert len(body["id"]) == 15
    assert body["id"].isalnum()
    assert body["id"].islower()
    assert body["collection"] == "products"
    assert body["created"] == body["updated"]
    assert body["created"].endswith("Z")
    assert body["title"] == "Lamp"
    assert body["price"] == 150
    assert body["owner"] == str(alice.pk)
    assert body["active"] is None
    assert body["meta"] is None
    assert "secret" not in body  # hidden from non-staff


def test_retrieve_update_patch_delete(alice_api: APIClient, alice: User, products: Collection) -> None:
    record = alice_api.post(
        URL, {"title": "Lamp", "price": 1, "active": True, "owner": str(alice.pk)}, format="json"
    ).json()
    assert alice_api.get(detail(record["id"])).json()["title"] == "Lamp"
    patched = alice_api.patch(detail(record["id"]), {"price": 2}, format="json").json()
    assert patched["price"] == 2
    assert patched["active"] is True
    assert patched["updated"] > patched["created"]
    put = alice_api.put(detail(record["id"]), {"title": "Desk", "owner": str(alice.pk)}, format="json").json()
    assert put["title"] == "Desk"
    assert put["price"] is None
    assert put["active"] is None
    assert alice_api.delete(detail(record["id"])).status_code == 204
    assert alice_api.get(detail(record["id"])).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"title": 5}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "a\x00b"}, "title"),
        ({"title": "t", "price": "5"}, "price"),
        ({"title": "t", "price": True}, "price"),
        ({"title": "t", "price": -1}, "price"),
        ({"title": "t", "active": "true"}, "active"),
        ({"title": "t", "status": "archived"}, "status"),
        ({"title": "t", "released": "25/11/2026"}, "released"),
        ({"title": "t", "owner": "999999"}, "owner"),
        ({"title": "t", "owner": "abc"}, "owner"),
        ({"title": "t", "meta": {"k": "a\x00"}}, "meta"),
        ({"title": "t", "colour": "red"}, "colour"),
        ({"title": "t", "id": "abcabcabcabcabc"}, "id"),
        ({"title": "t", "created": "2026-01-01"}, "created"),
        ({"title": "t", "updated": "2026-01-01"}, "updated"),
    ],
)
def test_invalid_values_are_400_in_drf_shape(
    alice_api: APIClient, products: Collection, body: dict[str, Any], field: str
) -> None:
    response = alice_api.post(URL, body, format="json")
    assert response.status_code == 400
    errors = response.json()
    assert isinstance(errors[field], list)
    assert isinstance(errors[field][0], str)
    assert not Record.objects.exists()


def test_values_are_normalised(staff_api: APIClient, make_collection: Any) -> None:
    make_collection(
        "events",
        [
            {"name": "day", "type": "date"},
            {"name": "at", "type": "datetime"},
            {"name": "site", "type": "url"},
            {"name": "mail", "type": "email"},
            {"name": "count", "type": "number", "options": {"integer": True}},
        ],
    )
    body = {
        "day": "2026-11-25",
        "at": "2026-11-25T12:30:00+02:00",
        "site": "https://example.com/x",
        "mail": "a@example.com",
        "count": 3,
    }
    created = staff_api.post("/api/v1/collections/events/records/", body, format="json").json()
    assert created["at"] == "2026-11-25T10:30:00.000000Z"
    assert created["day"] == "2026-11-25"
    bad = staff_api.post(
        "/api/v1/collections/events/records/", {"count": 2.5, "site": "nope", "mail": "x"}, format="json"
    )
    assert bad.status_code == 400
    assert {"count", "site", "mail"} <= set(bad.json())


def test_body_that_is_not_an_object_is_400(staff_api: APIClient, products: Collection) -> None:
    assert staff_api.post(URL, [1, 2], format="json").status_code == 400
    assert staff_api.post(URL, "x", content_type="application/json").status_code == 400
    assert staff_api.post(URL, "[" * 100000, content_type="application/json").status_code == 400
    assert staff_api.post(URL, '{"title": NaN}', content_type="application/json").status_code == 400


def test_unknown_collection_is_404(staff_api: APIClient) -> None:
    response = staff_api.get("/api/v1/collections/nope/records/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_relation_must_exist_in_the_target(staff_api: APIClient, products: Collection, make_collection: Any) -> None:
    make_collection("reviews", [{"name": "product", "type": "relation", "options": {"collection": "products"}}])
    product = services.record_create(collection=products, data={"title": "Lamp"})
    other = make_collection("other", [{"name": "x", "type": "text"}])
    stranger = services.record_create(collection=other, data={"x": "y"})
    url = "/api/v1/collections/reviews/records/"
    assert staff_api.post(url, {"product": product.id}, format="json").status_code == 201
    assert staff_api.post(url, {"product": stranger.id}, format="json").status_code == 400
    assert staff_api.post(url, {"product": "zzzzzzzzzzzzzzz"}, format="json").status_code == 400


# --- listing ----------------------------------------------------------------------------------


@pytest.fixture
def stocked(products: Collection, alice: User) -> Collection:
    rows = [
        {"title": "Lamp", "price": 5, "active": True, "status": "published", "released": "2026-01-10", "secret": "s1"},
        {"title": "Desk", "price": 150, "active": False, "status": "draft", "released": "2026-03-01"},
        {"title": "Chair", "price": 100, "active": True, "status": "published", "owner": str(alice.pk)},
        {"title": "Big Lamp", "price": 1000, "status": "published"},
        {"title": "lamp shade", "price": 9.5},
    ]
    for row in rows:
        services.record_create(collection=products, data=row)
    return products


def titles(response: Any) -> list[str]:
    assert response.status_code == 200, response.json()
    return [r["title"] for r in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("price>100", {"Desk", "Big Lamp"}),
        ("price>=100", {"Desk", "Chair", "Big Lamp"}),
        ("status=published", {"Lamp", "Chair", "Big Lamp"}),
        ("active=true", {"Lamp", "Chair"}),
        ('title ~ "lamp"', {"Lamp", "Big Lamp", "lamp shade"}),
        ('status = "published" && (price >= 10 || active = true)', {"Lamp", "Chair", "Big Lamp"}),
        ("released = null", {"Chair", "Big Lamp", "lamp shade"}),
        ("released > 2026-02-01", {"Desk"}),
        ("price != 5", {"Desk", "Chair", "Big Lamp", "lamp shade"}),
    ],
)
def test_query_parameter_filters(anon: APIClient, stocked: Collection, query: str, expected: set[str]) -> None:
    assert set(titles(anon.get(URL, {"query": query}))) == expected


def test_query_errors_are_400_with_position(anon: APIClient, stocked: Collection) -> None:
    response = anon.get(URL, {"query": "price>abc"})
    assert response.status_code == 400
    assert response.json() == {"detail": response.json()["detail"], "code": "invalid_query", "position": 6}
    assert anon.get(URL, {"query": "nope=1"}).json()["position"] == 0
    assert anon.get(URL, {"query": "secret=s1"}).status_code == 400  # hidden field, non-staff


def test_staff_may_filter_on_hidden_fields(staff_api: APIClient, stocked: Collection) -> None:
    assert titles(staff_api.get(URL, {"query": "secret=s1"})) == ["Lamp"]
    assert titles(staff_api.get(URL, {"secret": "s1"})) == ["Lamp"]
    assert staff_api.get(URL).json()["results"][0]["secret"] == "s1"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "published", "price__gte": "100"}, {"Chair", "Big Lamp"}),
        ({"price__lt": "10"}, {"Lamp", "lamp shade"}),
        ({"price__in": "5,150"}, {"Lamp", "Desk"}),
        ({"title__icontains": "LAMP"}, {"Lamp", "Big Lamp", "lamp shade"}),
        ({"status__in": "draft"}, {"Desk"}),
        ({"active": "false"}, {"Desk"}),
        ({"released__lte": "2026-01-31"}, {"Lamp"}),
    ],
)
def test_django_filter_parameters(
    anon: APIClient, stocked: Collection, params: dict[str, str], expected: set[str]
) -> None:
    assert set(titles(anon.get(URL, params))) == expected


@pytest.mark.parametrize(
    "params",
    [{"price__gte": "abc"}, {"active": "maybe"}, {"released__gt": "soon"}, {"secret": "s1"}, {"secret__in": "a"}],
)
def test_bad_filter_parameters_are_400(anon: APIClient, stocked: Collection, params: dict[str, str]) -> None:
    response = anon.get(URL, params)
    assert response.status_code == 400
    assert set(response.json()) == set(params)


def test_ordering_is_numeric_and_multi_key(anon: APIClient, stocked: Collection) -> None:
    assert titles(anon.get(URL, {"ordering": "price"})) == ["Lamp", "lamp shade", "Chair", "Desk", "Big Lamp"]
    assert titles(anon.get(URL, {"ordering": "-price"})) == ["Big Lamp", "Desk", "Chair", "lamp shade", "Lamp"]
    assert titles(anon.get(URL, {"ordering": "-status,price"}))[:3] == ["Lamp", "Chair", "Big Lamp"]
    assert titles(anon.get(URL, {"ordering": "-created"}))[0] == "lamp shade"
    assert titles(anon.get(URL))[0] == "Lamp"  # default: oldest first


@pytest.mark.parametrize("ordering", ["nope", "secret", "meta", "-secret"])
def test_bad_ordering_is_400(anon: APIClient, stocked: Collection, ordering: str) -> None:
    response = anon.get(URL, {"ordering": ordering})
    assert response.status_code == 400
    assert "ordering" in response.json()


def test_pagination(anon: APIClient, stocked: Collection) -> None:
    first = anon.get(URL, {"page_size": 2, "ordering": "price"}).json()
    assert first["count"] == 5
    assert len(first["results"]) == 2
    assert first["previous"] is None
    second = anon.get(first["next"]).json()
    assert [r["title"] for r in second["results"]] == ["Chair", "Desk"]
    assert anon.get(URL, {"page": 99}).status_code == 404


def test_page_size_is_capped_at_500(anon: APIClient, products: Collection) -> None:
    services.records_bulk_create(collection=products, rows=[{"title": f"t{i}"} for i in range(501)])
    assert len(anon.get(URL, {"page_size": 1000}).json()["results"]) == 500
    assert len(anon.get(URL).json()["results"]) == 30


def test_bearer_tokens_work(anon: APIClient, staff: User, products: Collection) -> None:
    token = anon.post("/api/v1/auth/token", {"username": "staff", "password": "staff-pass"}, format="json").json()[
        "token"
    ]
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert anon.post(URL, {"title": "x"}, format="json").status_code == 201


def test_invalid_token_is_401_even_on_public_reads(anon: APIClient, products: Collection) -> None:
    anon.credentials(HTTP_AUTHORIZATION="Token wrong")
    assert anon.get(URL).status_code == 401
    anon.credentials(HTTP_AUTHORIZATION="Bearer")
    assert anon.get(URL).status_code == 401
