"""Access rules over REST: null = staff only, "" = everyone, a query = must hold; staff bypass."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection

NOTES = "/api/v1/collections/notes/records/"
FIELDS = [{"name": "text", "type": "text"}, {"name": "owner", "type": "user"}, {"name": "public", "type": "bool"}]


def detail(record_id: str) -> str:
    return f"{NOTES}{record_id}/"


@pytest.fixture
def owned(make_collection: Any, alice: User, bob: User) -> tuple[Collection, dict[str, str]]:
    """Notes anyone may list when public or their own; owners update and delete."""
    collection = make_collection(
        "notes",
        FIELDS,
        list_rule="public = true || owner = @request.auth.id",
        view_rule="public = true || owner = @request.auth.id",
        create_rule="owner = @request.auth.id",
        update_rule="owner = @request.auth.id",
        delete_rule="owner = @request.auth.id && public = false",
    )
    ids = {
        "alice_private": services.record_create(
            collection=collection, data={"text": "a", "owner": str(alice.pk), "public": False}
        ).id,
        "alice_public": services.record_create(
            collection=collection, data={"text": "b", "owner": str(alice.pk), "public": True}
        ).id,
        "bob_private": services.record_create(
            collection=collection, data={"text": "c", "owner": str(bob.pk), "public": False}
        ).id,
    }
    return collection, ids


def listed(api: APIClient) -> set[str]:
    response = api.get(NOTES)
    assert response.status_code == 200, response.json()
    return {record["text"] for record in response.json()["results"]}


def test_list_rule_filters_records(
    owned: Any, anon: APIClient, alice_api: APIClient, bob_api: APIClient, staff_api: APIClient
) -> None:
    assert listed(anon) == {"b"}
    assert listed(alice_api) == {"a", "b"}
    assert listed(bob_api) == {"b", "c"}
    assert listed(staff_api) == {"a", "b", "c"}


def test_view_rule_gives_404(owned: Any, anon: APIClient, bob_api: APIClient, alice_api: APIClient) -> None:
    _, ids = owned
    assert bob_api.get(detail(ids["alice_private"])).status_code == 404
    assert anon.get(detail(ids["alice_private"])).status_code == 404
    assert alice_api.get(detail(ids["alice_private"])).status_code == 200
    assert anon.get(detail(ids["alice_public"])).status_code == 200


def test_create_rule_is_checked_against_the_new_record(
    owned: Any, anon: APIClient, alice: User, bob: User, alice_api: APIClient
) -> None:
    assert alice_api.post(NOTES, {"text": "mine", "owner": str(alice.pk)}, format="json").status_code == 201
    assert alice_api.post(NOTES, {"text": "forged", "owner": str(bob.pk)}, format="json").status_code == 403
    assert anon.post(NOTES, {"text": "anon", "owner": str(alice.pk)}, format="json").status_code == 401
    assert not Collection.objects.get(name="notes").records.filter(data__text="forged").exists()


def test_update_needs_view_then_rule_on_stored_and_result(
    owned: Any, alice: User, bob: User, alice_api: APIClient, bob_api: APIClient, anon: APIClient
) -> None:
    _, ids = owned
    assert bob_api.patch(detail(ids["alice_private"]), {"text": "x"}, format="json").status_code == 404
    assert bob_api.patch(detail(ids["alice_public"]), {"text": "x"}, format="json").status_code == 403
    assert anon.patch(detail(ids["alice_public"]), {"text": "x"}, format="json").status_code == 401
    # Alice may update her record but not hand it to Bob: the result must pass the rule too.
    assert alice_api.patch(detail(ids["alice_private"]), {"owner": str(bob.pk)}, format="json").status_code == 403
    assert alice_api.patch(detail(ids["alice_private"]), {"text": "edited"}, format="json").status_code == 200
    assert Collection.objects.get(name="notes").records.get(pk=ids["alice_private"]).data["owner"] == str(alice.pk)


def test_delete_rule(owned: Any, alice_api: APIClient, bob_api: APIClient) -> None:
    _, ids = owned
    assert bob_api.delete(detail(ids["alice_private"])).status_code == 404
    assert alice_api.delete(detail(ids["alice_public"])).status_code == 403  # public notes stay
    assert alice_api.delete(detail(ids["alice_private"])).status_code == 204


def test_null_rules_mean_staff_only(
    make_collection: Any, anon: APIClient, alice_api: APIClient, staff_api: APIClient
) -> None:
    collection = make_collection("notes", FIELDS)
    record = services.record_create(collection=collection, data={"text": "x"})
    assert anon.get(NOTES).status_code == 401
    assert alice_api.get(NOTES).status_code == 403
    assert alice_api.get(detail(record.id)).status_code == 404
    assert alice_api.post(NOTES, {"text": "y"}, format="json").status_code == 403
    assert alice_api.patch(detail(record.id), {"text": "y"}, format="json").status_code == 404
    assert staff_api.get(NOTES).status_code == 200
    assert staff_api.patch(detail(record.id), {"text": "y"}, format="json").status_code == 200
    assert staff_api.delete(detail(record.id)).status_code == 204


def test_empty_rules_mean_everyone(make_collection: Any, anon: APIClient) -> None:
    make_collection("notes", FIELDS, list_rule="", view_rule="", create_rule="", update_rule="", delete_rule="")
    created = anon.post(NOTES, {"text": "x"}, format="json")
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert anon.patch(detail(record_id), {"text": "y"}, format="json").status_code == 200
    assert anon.delete(detail(record_id)).status_code == 204


def test_rules_may_use_hidden_fields(
    make_collection: Any, alice: User, alice_api: APIClient, bob_api: APIClient
) -> None:
    collection = make_collection(
        "notes",
        [{"name": "text", "type": "text"}, {"name": "owner", "type": "user", "hidden": True}],
        list_rule="owner = @request.auth.id",
    )
    services.record_create(collection=collection, data={"text": "a", "owner": str(alice.pk)})
    assert listed(alice_api) == {"a"}
    assert "owner" not in alice_api.get(NOTES).json()["results"][0]
    assert listed(bob_api) == set()


def test_username_macro(make_collection: Any, alice_api: APIClient, bob_api: APIClient) -> None:
    collection = make_collection(
        "notes", [{"name": "author", "type": "text"}], list_rule="author = @request.auth.username"
    )
    services.record_create(collection=collection, data={"author": "alice"})
    assert len(alice_api.get(NOTES).json()["results"]) == 1
    assert len(bob_api.get(NOTES).json()["results"]) == 0


# --- tokens ---------------------------------------------------------------------------------------


def test_token_endpoint(anon: APIClient, alice: User, staff: User) -> None:
    response = anon.post("/api/v1/auth/token", {"username": "alice", "password": "alice-pass"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"id": str(alice.pk), "username": "alice", "name": "Alice Liddell", "is_staff": False}
    assert len(body["token"]) >= 20
    again = anon.post("/api/v1/auth/token/", {"username": "staff", "password": "staff-pass"}, format="json").json()
    assert again["user"]["is_staff"] is True
    anon.credentials(HTTP_AUTHORIZATION=f"Token {again['token']}")
    assert anon.get("/api/v1/collections/").status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "x"}, {"username": "alice"}, {}],
)
def test_bad_credentials_are_400(anon: APIClient, alice: User, body: dict[str, str]) -> None:
    assert anon.post("/api/v1/auth/token", body, format="json").status_code == 400


def test_name_falls_back_to_username(anon: APIClient, bob: User) -> None:
    body = anon.post("/api/v1/auth/token", {"username": "bob", "password": "bob-pass"}, format="json").json()
    assert body["user"]["name"] == "bob"
