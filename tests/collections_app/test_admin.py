"""The Django admin edits collections and records through the services, with their validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from collections_app.models import Collection, Record


@pytest.fixture
def admin_client(db: None) -> Client:
    user = User.objects.create_superuser("root", "root@example.com", "root-pass")
    client = Client()
    client.force_login(user)
    return client


def collection_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "name": "posts",
        "fields": json.dumps(
            [{"name": "title", "type": "text", "required": True}, {"name": "price", "type": "number"}]
        ),
        "list_rule_0": "everyone",
        "list_rule_1": "",
        "view_rule_0": "query",
        "view_rule_1": "price > 5",
        "create_rule_0": "staff",
        "create_rule_1": "",
        "update_rule_0": "staff",
        "update_rule_1": "",
        "delete_rule_0": "staff",
        "delete_rule_1": "",
    }
    return {**form, **overrides}


def test_admin_creates_a_collection_with_rules(admin_client: Client) -> None:
    response = admin_client.post("/admin/collections_app/collection/add/", collection_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    collection = Collection.objects.get(name="posts")
    assert collection.list_rule == ""
    assert collection.view_rule == "price > 5"
    assert collection.create_rule is None
    assert collection.fields[0] == {
        "name": "title",
        "type": "text",
        "required": True,
        "unique": False,
        "hidden": False,
        "options": {},
    }


def test_admin_shows_schema_and_rule_errors(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/collections_app/collection/add/",
        collection_form(fields=json.dumps([{"name": "id", "type": "text"}]), view_rule_1="nope = 1"),
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "reserved" in page
    assert not Collection.objects.exists()


def test_admin_record_is_validated_against_the_schema(admin_client: Client) -> None:
    admin_client.post("/admin/collections_app/collection/add/", collection_form())
    collection = Collection.objects.get(name="posts")
    bad = admin_client.post(
        "/admin/collections_app/record/add/", {"collection": collection.pk, "data": json.dumps({"price": "cheap"})}
    )
    assert bad.status_code == 200
    assert "title: This field is required." in bad.content.decode()
    assert not Record.objects.exists()
    good = admin_client.post(
        "/admin/collections_app/record/add/",
        {"collection": collection.pk, "data": json.dumps({"title": "Hi", "price": 9})},
    )
    assert good.status_code == 302
    record = Record.objects.get()
    assert record.data == {"title": "Hi", "price": 9}
    assert len(record.id) == 15
    changed = admin_client.post(
        f"/admin/collections_app/record/{record.pk}/change/", {"data": json.dumps({"title": "Bye"})}
    )
    assert changed.status_code == 302
    record.refresh_from_db()
    assert record.data == {"title": "Bye"}
    assert admin_client.get("/admin/collections_app/record/").status_code == 200
    assert admin_client.get("/admin/collections_app/collection/").status_code == 200


def test_admin_deletes_a_collection_with_its_records(admin_client: Client) -> None:
    admin_client.post("/admin/collections_app/collection/add/", collection_form())
    collection = Collection.objects.get(name="posts")
    admin_client.post(
        "/admin/collections_app/record/add/", {"collection": collection.pk, "data": json.dumps({"title": "Hi"})}
    )
    response = admin_client.post(f"/admin/collections_app/collection/{collection.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Collection.objects.exists()
    assert not Record.objects.exists()
