"""Prepared lookups give exactly what their querysets give, on every database."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from collections_app.authentication import TokenAuthentication, token_with_user
from collections_app.models import Collection, Record
from collections_app.prepared import PreparedLookup
from collections_app.views import collection_by_name

User = get_user_model()


def fields_of(obj: Any) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


@pytest.mark.django_db
def test_token_lookup_builds_the_token_and_its_user_as_the_orm_does() -> None:
    user = User.objects.create_user("carol", "carol@example.com", "pw", first_name="Carol", is_staff=True)
    User.objects.filter(pk=user.pk).update(last_login="2021-03-04T05:06:07Z")
    key = Token.objects.create(user=user).key
    expected = Token.objects.select_related("user").get(key=key)

    token = token_with_user(key)

    assert fields_of(token) == fields_of(expected)
    assert fields_of(token.user) == fields_of(expected.user)  # datetimes and booleans converted
    assert type(token.user.last_login) is type(expected.user.last_login)
    assert token.user.is_staff is True
    assert token.user.is_active is True
    assert token.user.auth_token is token  # the reverse side is cached, as select_related does
    with CaptureQueriesContext(connection) as queries:
        assert token.user.username == "carol"
    assert len(queries) == 0  # the user came with the token


@pytest.mark.django_db
def test_token_lookup_of_an_unknown_key_is_none_and_auth_refuses_it() -> None:
    assert token_with_user("no-such-key") is None
    with pytest.raises(Exception, match="Invalid token"):
        TokenAuthentication().authenticate_credentials("no-such-key")


@pytest.mark.django_db
def test_inactive_user_is_refused() -> None:
    user = User.objects.create_user("dave", password="pw", is_active=False)
    key = Token.objects.create(user=user).key
    with pytest.raises(Exception, match="inactive"):
        TokenAuthentication().authenticate_credentials(key)


@pytest.mark.django_db
def test_collection_lookup_matches_the_orm_and_sees_changes(make_collection: Any) -> None:
    made = make_collection("books", [{"name": "title", "type": "text"}], list_rule="")
    found = collection_by_name("books")
    assert fields_of(found) == fields_of(Collection.objects.get(name="books"))
    assert found.field_specs == made.field_specs
    assert collection_by_name("films") is None
    Collection.objects.filter(pk=made.pk).update(list_rule="title = 'x'")
    assert collection_by_name("books").list_rule == "title = 'x'"  # compiled once, read every time


@pytest.mark.django_db
def test_values_are_parameters_never_sql(make_collection: Any) -> None:
    make_collection("books")
    for hostile in ["books' OR '1'='1", 'books" --', "\\", "%s", "%%", "books; DROP TABLE x"]:
        assert collection_by_name(hostile) is None
    assert Collection.objects.filter(name="books").exists()


@pytest.mark.django_db
def test_related_object_from_select_related(make_collection: Any) -> None:
    collection = make_collection("books", [{"name": "title", "type": "text"}])
    record = Record.objects.create(collection=collection, data={"title": "Dune"})
    by_id = PreparedLookup(lambda pk: Record.objects.select_related("collection").filter(pk=pk))
    found = by_id(record.pk)
    assert found.data == {"title": "Dune"}
    assert found.created == Record.objects.get(pk=record.pk).created
    with CaptureQueriesContext(connection) as queries:
        assert found.collection.name == "books"
    assert len(queries) == 0


def test_a_value_that_is_not_one_plain_parameter_is_refused_at_first_use(db: None) -> None:
    lookup = PreparedLookup(lambda name: Collection.objects.filter(Q(name=name) | Q(id=name)))
    with pytest.raises(ValueError, match="one plain parameter"):
        lookup("x")


@pytest.mark.django_db
def test_insert_stores_what_save_stores_and_sends_the_save_signals(make_collection: Any) -> None:
    from django.db.models.signals import post_save, pre_save

    collection = make_collection("books", [{"name": "title", "type": "text"}, {"name": "tags", "type": "json"}])
    seen: list[tuple[str, bool | None]] = []

    def pre(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(("pre", instance._state.adding))

    def post(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
        seen.append(("post", created))

    pre_save.connect(pre, sender=Record)
    post_save.connect(post, sender=Record)
    try:
        data = {"title": "Dune \u00e9", "tags": {"a": [1, 2.5, None, True], "b": "x"}}
        inserted = Record(collection=collection, data=data)
        inserted.insert()
        saved = Record(collection=collection, data=data)
        saved.save(force_insert=True)
    finally:
        pre_save.disconnect(pre, sender=Record)
        post_save.disconnect(post, sender=Record)
    assert seen == [("pre", True), ("post", True), ("pre", True), ("post", True)]
    assert inserted._state.adding is False
    one, other = Record.objects.get(pk=inserted.pk), Record.objects.get(pk=saved.pk)
    assert one.data == other.data == data
    assert one.created == inserted.created
    assert one.updated == one.created
    assert one.collection_id == collection.pk


@pytest.mark.django_db(transaction=True)
def test_a_failed_insert_rolls_back_its_transaction(make_collection: Any) -> None:
    from django.db import IntegrityError, transaction

    collection = make_collection("books")
    first = Record(collection=collection, data={})
    first.insert()

    def two_inserts() -> None:
        with transaction.atomic():
            Record(collection=collection, data={"x": 1}).insert()
            Record(id=first.id, collection=collection, data={}).insert()  # the same primary key

    with pytest.raises(IntegrityError):
        two_inserts()
    assert list(Record.objects.values_list("id", flat=True)) == [first.id]
