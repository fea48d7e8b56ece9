"""/api/v1/collections/: staff-only CRUD, schema validation and safe schema changes."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection, Record

URL = "/api/v1/collections/"

POSTS = {
    "name": "posts",
    "fields": [
        {"name": "title", "type": "text", "required": True, "options": {"max_length": 200}},
        {"name": "price", "type": "number", "options": {"min": 0}},
        {"name": "owner", "type": "user"},
    ],
    "list_rule": "",
    "view_rule": "",
    "create_rule": "@request.auth.id != null",
    "update_rule": "owner = @request.auth.id",
}


def create(api: APIClient, body: dict[str, Any]) -> Any:
    return api.post(URL, body, format="json")


def test_create_returns_the_spec_shape(staff_api: APIClient) -> None:
    response = create(staff_api, POSTS)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {
        "id",
        "name",
        "fields",
        "list_rule",
        "view_rule",
        "create_rule",
        "update_rule",
        "delete_rule",
        "created",
        "updated",
    }
    assert len(body["id"]) == 15
    assert body["delete_rule"] is None  # left out at creation: null
    assert body["fields"][1] == {
        "name": "price",
        "type": "number",
        "required": False,
        "unique": False,
        "hidden": False,
        "options": {"min": 0},
    }
    assert body["fields"][2]["options"] == {}
    assert body["created"].endswith("Z")
    assert len(body["created"]) == 27


def test_list_retrieve_update_delete(staff_api: APIClient) -> None:
    create(staff_api, POSTS)
    listing = staff_api.get(URL).json()
    assert listing["count"] == 1
    assert listing["results"][0]["name"] == "posts"
    assert staff_api.get(URL + "posts/").json()["name"] == "posts"
    patched = staff_api.patch(URL + "posts/", {"list_rule": None}, format="json")
    assert patched.status_code == 200
    assert patched.json()["list_rule"] is None
    assert patched.json()["view_rule"] == ""  # PATCH keeps the keys it does not give
    put = staff_api.put(URL + "posts/", {"name": "posts", "fields": POSTS["fields"][:1]}, format="json")
    assert put.status_code == 200
    assert put.json()["view_rule"] is None
    assert len(put.json()["fields"]) == 1
    assert staff_api.delete(URL + "posts/").status_code == 204
    assert staff_api.get(URL + "posts/").status_code == 404


def test_staff_only(anon: APIClient, alice_api: APIClient, staff_api: APIClient) -> None:
    create(staff_api, POSTS)
    for method, url in (("get", URL), ("post", URL), ("get", URL + "posts/"), ("delete", URL + "posts/")):
        assert getattr(anon, method)(url).status_code == 401
        assert getattr(alice_api, method)(url).status_code == 403


def test_invalid_token_is_401(anon: APIClient) -> None:
    anon.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = anon.get(URL)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"name": "Posts"}, "name"),
        ({"name": "a__b"}, "name"),
        ({"name": "1posts"}, "name"),
        ({"name": "x" * 64}, "name"),
        ({"name": "posts", "fields": [{"name": "id", "type": "text"}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "collection", "type": "text"}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "number"}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "a", "type": "money"}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "a", "type": "text", "options": {"min": 1}}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "a", "type": "text", "options": {"pattern": "("}}]}, "fields"),
        ({"name": "posts", "fields": [{"name": "a", "type": "select"}]}, "fields"),
        (
            {"name": "posts", "fields": [{"name": "a", "type": "relation", "options": {"collection": "nowhere"}}]},
            "fields",
        ),
        ({"name": "posts", "fields": [{"name": "a", "type": "number", "options": {"min": 5, "max": 1}}]}, "fields"),
        ({"name": "posts", "fields": "title"}, "fields"),
        ({"name": "posts", "list_rule": "nope = 1"}, "list_rule"),
        ({"name": "posts", "view_rule": "(("}, "view_rule"),
        ({"name": "posts", "colour": "red"}, "colour"),
    ],
)
def test_invalid_definitions_are_400(staff_api: APIClient, body: dict[str, Any], key: str) -> None:
    response = create(staff_api, body)
    assert response.status_code == 400
    assert key in response.json()
    assert not Collection.objects.exists()


def test_duplicate_collection_name_is_400(staff_api: APIClient) -> None:
    create(staff_api, POSTS)
    response = create(staff_api, POSTS)
    assert response.status_code == 400
    assert "name" in response.json()


def test_relation_to_an_existing_collection_and_to_itself(staff_api: APIClient) -> None:
    create(staff_api, POSTS)
    body = {
        "name": "comments",
        "fields": [
            {"name": "post", "type": "relation", "options": {"collection": "posts"}},
            {"name": "parent", "type": "relation", "options": {"collection": "comments"}},
        ],
    }
    assert create(staff_api, body).status_code == 201
    # A collection others relate to can be neither renamed nor deleted.
    assert staff_api.patch(URL + "posts/", {"name": "articles"}, format="json").status_code == 400
    assert staff_api.delete(URL + "posts/").status_code == 400


def test_changing_a_type_that_stored_records_break_is_rejected(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection("notes", [{"name": "code", "type": "text"}])
    services.record_create(collection=collection, data={"code": "12"})
    response = staff_api.patch(URL + "notes/", {"fields": [{"name": "code", "type": "number"}]}, format="json")
    assert response.status_code == 400
    assert "does not fit" in response.json()["fields"][0]
    collection.refresh_from_db()
    assert collection.fields[0]["type"] == "text"
    assert Record.objects.get().data == {"code": "12"}  # nothing lost


def test_adding_required_or_tighter_options_checks_stored_records(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection("notes", [{"name": "code", "type": "text"}])
    services.record_create(collection=collection, data={"code": "a long value"})
    services.record_create(collection=collection, data={})
    required = staff_api.patch(
        URL + "notes/", {"fields": [{"name": "code", "type": "text", "required": True}]}, format="json"
    )
    assert required.status_code == 400
    shorter = staff_api.patch(
        URL + "notes/", {"fields": [{"name": "code", "type": "text", "options": {"max_length": 3}}]}, format="json"
    )
    assert shorter.status_code == 400
    longer = staff_api.patch(
        URL + "notes/", {"fields": [{"name": "code", "type": "text", "options": {"max_length": 30}}]}, format="json"
    )
    assert longer.status_code == 200


def test_unique_on_a_field_with_duplicates_fails(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection("notes", [{"name": "code", "type": "text"}])
    services.record_create(collection=collection, data={"code": "same"})
    services.record_create(collection=collection, data={"code": "same"})
    response = staff_api.patch(
        URL + "notes/", {"fields": [{"name": "code", "type": "text", "unique": True}]}, format="json"
    )
    assert response.status_code == 400
    assert "cannot be unique" in response.json()["fields"][0]


def test_making_a_field_unique_enforces_it_from_then_on(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection("notes", [{"name": "code", "type": "text"}], create_rule="")
    services.record_create(collection=collection, data={"code": "one"})
    response = staff_api.patch(
        URL + "notes/", {"fields": [{"name": "code", "type": "text", "unique": True}]}, format="json"
    )
    assert response.status_code == 200
    duplicate = staff_api.post(URL + "notes/records/", {"code": "one"}, format="json")
    assert duplicate.status_code == 400
    assert "code" in duplicate.json()


def test_removing_a_field_hides_its_values(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection(
        "notes", [{"name": "code", "type": "text"}, {"name": "n", "type": "number"}], list_rule="", view_rule=""
    )
    record = services.record_create(collection=collection, data={"code": "x", "n": 1})
    assert (
        staff_api.patch(URL + "notes/", {"fields": [{"name": "n", "type": "number"}]}, format="json").status_code == 200
    )
    body = staff_api.get(f"{URL}notes/records/{record.id}/").json()
    assert "code" not in body
    assert body["n"] == 1


def test_rules_that_name_a_removed_field_block_the_change(staff_api: APIClient, make_collection: Any) -> None:
    make_collection("notes", [{"name": "owner", "type": "user"}], update_rule="owner = @request.auth.id")
    response = staff_api.patch(URL + "notes/", {"fields": []}, format="json")
    assert response.status_code == 400
    assert "update_rule" in response.json()


def test_deleting_a_collection_deletes_its_records(staff_api: APIClient, make_collection: Any) -> None:
    collection = make_collection("notes", [{"name": "code", "type": "text", "unique": True}])
    for code in ("a", "b", "c"):
        services.record_create(collection=collection, data={"code": code})
    assert staff_api.delete(URL + "notes/").status_code == 204
    assert not Record.objects.exists()


def test_collection_list_is_paginated(staff_api: APIClient, make_collection: Any) -> None:
    for index in range(5):
        make_collection(f"c{index}")
    body = staff_api.get(URL + "?page_size=2&page=2").json()
    assert body["count"] == 5
    assert [c["name"] for c in body["results"]] == ["c2", "c3"]
    assert body["next"]
    assert body["previous"]
