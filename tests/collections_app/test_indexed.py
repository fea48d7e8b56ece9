"""The `indexed` field option: a partial expression index per field, kept in step with the schema,
used by the planner for the list's filters, ordering and count, never changing a result."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from collections_app import expressions, filters, indexes
from collections_app.models import Collection, Record, new_id
from collections_app.query import Auth, compile_text
from collections_app.schema import JSON, load_fields
from tests.collections_app.test_query_agreement import FIELDS, queries, record_data

URL = "/api/v1/collections/"
MOMENT = datetime(2000, 1, 1, tzinfo=UTC)


def field(name: str, type_name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "type": type_name, "options": options}


def index_names(collection_id: str) -> set[str]:
    """This collection's indexes, as Django's introspection sees the records table."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Record._meta.db_table)
    prefix = indexes.collection_prefix(collection_id)
    return {name for name, info in constraints.items() if name.startswith(prefix) and info["index"]}


def expected_names(collection: Collection) -> set[str]:
    collection = Collection.objects.get(pk=collection.pk)
    return {indexes.index_name(collection.pk, spec) for spec in collection.field_specs if spec.indexed}


def store(collection: Collection, rows: list[dict[str, Any]]) -> None:
    """Rows stored as given (no validation): wrong types, nulls and missing keys included."""
    Record.objects.bulk_create(
        [Record(collection=collection, data=row, created=MOMENT, updated=MOMENT) for row in rows], batch_size=500
    )


# --- the option ----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (field("price", "number", indexed="yes"), "'indexed' must be true or false."),
        (field("price", "number", indexed=1), "'indexed' must be true or false."),
        (field("price", "number", indexed=None), "'indexed' must be true or false."),
        (field("meta", "json", indexed=True), "'indexed' is not an option of json."),
    ],
)
def test_bad_indexed_values_and_types_are_400(staff_api: APIClient, definition: dict[str, Any], message: str) -> None:
    response = staff_api.post(URL, {"name": "items", "fields": [definition]}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == [f"fields[0].options: {message}"]
    assert not Collection.objects.filter(name="items").exists()


INDEXABLE = [
    field("title", "text", indexed=True, max_length=50),
    field("price", "number", indexed=True),
    field("active", "bool", indexed=True),
    field("contact", "email", indexed=True),
    field("site", "url", indexed=True),
    field("day", "date", indexed=True),
    field("at", "datetime", indexed=True),
    field("status", "select", indexed=True, values=["draft", "published"]),
    field("owner", "user", indexed=True),
    field("meta", "json"),
]


@pytest.mark.django_db
def test_every_type_but_json_takes_indexed_and_gets_an_index(staff_api: APIClient) -> None:
    response = staff_api.post(URL, {"name": "items", "fields": INDEXABLE}, format="json")
    assert response.status_code == 201, response.json()
    shown = {f["name"]: f["options"].get("indexed") for f in response.json()["fields"]}
    assert shown == {f["name"]: f["options"].get("indexed") for f in INDEXABLE}
    collection = Collection.objects.get(name="items")
    assert len(index_names(collection.pk)) == 9
    assert index_names(collection.pk) == expected_names(collection)


@pytest.mark.django_db
def test_openapi_and_the_admin_editor_show_the_option(staff_api: APIClient, admin_client: Any) -> None:
    fields = [field("price", "number", indexed=True), field("title", "text")]
    assert staff_api.post(URL, {"name": "items", "fields": fields}, format="json").status_code == 201
    response = staff_api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    properties = response.json()["components"]["schemas"]["ItemsRecord"]["properties"]
    assert "Indexed" in properties["price"]["description"]
    assert "Indexed" not in properties["title"].get("description", "")
    editor = admin_client.get("/admin/collections_app/collection/add/")
    assert "{&quot;indexed&quot;: true}" in editor.content.decode()


# --- the index follows the schema ----------------------------------------------------------------


@pytest.mark.django_db
def test_index_is_created_and_dropped_with_the_option_the_field_and_the_collection(staff_api: APIClient) -> None:
    price, title = field("price", "number", indexed=True), field("title", "text")
    assert staff_api.post(URL, {"name": "items", "fields": [price, title]}, format="json").status_code == 201
    collection = Collection.objects.get(name="items")
    (price_index,) = index_names(collection.pk)
    assert price_index == indexes.index_name(collection.pk, load_fields([price])[0])

    def patch_fields(*definitions: dict[str, Any]) -> set[str]:
        response = staff_api.patch(URL + "items/", {"fields": list(definitions)}, format="json")
        assert response.status_code == 200, response.json()
        assert index_names(collection.pk) == expected_names(collection)
        return index_names(collection.pk)

    assert len(patch_fields(price, field("title", "text", indexed=True))) == 2  # option added
    assert patch_fields(field("price", "number"), field("title", "text", indexed=True)) != {price_index}
    assert len(patch_fields(field("price", "number"), title)) == 0  # option removed
    assert patch_fields(price, title) == {price_index}
    assert patch_fields(field("price", "number", indexed=False), title) == set()  # false: no index
    assert patch_fields(price, title) == {price_index}
    assert patch_fields(title) == set()  # field removed
    assert patch_fields(price, title) == {price_index}
    renamed = patch_fields(field("cost", "number", indexed=True), title)  # field renamed
    assert len(renamed) == 1
    assert renamed != {price_index}
    # Another type is another expression, so another index.
    assert len(patch_fields(field("cost", "text", indexed=True), title) - renamed) == 1
    # Renaming the collection keeps its indexes (they belong to its id).
    assert staff_api.patch(URL + "items/", {"name": "goods"}, format="json").status_code == 200
    assert len(index_names(collection.pk)) == 1
    assert staff_api.delete(URL + "goods/").status_code == 204
    assert index_names(collection.pk) == set()


@pytest.mark.django_db
def test_put_without_fields_drops_the_indexes(staff_api: APIClient) -> None:
    body = {"name": "items", "fields": [field("n", "number", indexed=True)]}
    assert staff_api.post(URL, body, format="json").status_code == 201
    collection = Collection.objects.get(name="items")
    assert len(index_names(collection.pk)) == 1
    assert staff_api.put(URL + "items/", {"name": "items"}, format="json").status_code == 200
    assert index_names(collection.pk) == set()


@pytest.mark.django_db
def test_a_refused_schema_change_changes_no_index(staff_api: APIClient) -> None:
    assert (
        staff_api.post(URL, {"name": "items", "fields": [field("price", "number")]}, format="json").status_code == 201
    )
    collection = Collection.objects.get(name="items")
    store(collection, [{"price": 1}])
    change = [field("price", "number", indexed=True), {"name": "title", "type": "text", "required": True}]
    response = staff_api.patch(URL + "items/", {"fields": change}, format="json")
    assert response.status_code == 400
    assert "no value for required field 'title'" in response.json()["fields"][0]
    assert index_names(collection.pk) == set()  # created in the refused change's transaction, rolled back


@pytest.mark.django_db
def test_indexing_a_field_does_not_revalidate_stored_values(staff_api: APIClient) -> None:
    """`indexed` says nothing about values, so records stored before a tighter schema still pass."""
    assert (
        staff_api.post(URL, {"name": "items", "fields": [field("price", "number")]}, format="json").status_code == 201
    )
    collection = Collection.objects.get(name="items")
    store(collection, [{"price": "not a number"}])
    indexed = staff_api.patch(URL + "items/", {"fields": [field("price", "number", indexed=True)]}, format="json")
    assert indexed.status_code == 200, indexed.json()
    bounded = staff_api.patch(
        URL + "items/", {"fields": [field("price", "number", indexed=True, min=0)]}, format="json"
    )
    assert bounded.status_code == 400  # a value option still checks them


@pytest.mark.django_db
def test_deleting_through_the_admin_drops_the_indexes(admin_client: Any) -> None:
    collection = Collection.objects.get(pk=_create_indexed("items").pk)
    response = admin_client.post(f"/admin/collections_app/collection/{collection.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Collection.objects.filter(pk=collection.pk).exists()
    assert index_names(collection.pk) == set()


def _create_indexed(name: str) -> Collection:
    from collections_app import services

    collection = services.collection_create(name=name, fields=[field("n", "number", indexed=True)])
    assert len(index_names(collection.pk)) == 1
    return collection


def test_field_names_are_sql_literals_and_other_keys_parameters() -> None:
    """Only keys that cannot end a quoted string are written into the SQL."""
    field_sql = expressions.JsonNumber("price_2")._render("{key}", _NoCompiler(), "price_2")
    assert field_sql == ("'price_2'", [])
    for key in ("it's", "a%s", "Price", "a b", "x'); DROP TABLE t; --"):
        assert expressions.JsonNumber(key)._render("{key}", _NoCompiler(), key) == ("%s", [key])


class _NoCompiler:
    def compile(self, expression: Any) -> tuple[str, list[Any]]:
        return '"data"', []


# --- the planner uses it -------------------------------------------------------------------------


@contextmanager
def record_statements() -> Iterator[list[tuple[str, Any]]]:
    """The record queries run inside the block, as sent: SQL with placeholders and its parameters."""
    statements: list[tuple[str, Any]] = []

    def capture(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if "collections_app_record" in sql and sql.lstrip().upper().startswith("SELECT"):
            statements.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        yield statements


def plan(sql: str, params: Any) -> str:
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql, params)
        return "\n".join(" ".join(str(column) for column in row) for row in cursor.fetchall())


def list_plans(staff_api: APIClient, params: dict[str, str], rows: int = 3000) -> tuple[str, list[str], Any]:
    """Create `items` (price indexed) with `rows` records next to another collection's, list it
    with `params`, and return the index name, the plans of the list's record queries, the body."""
    collection = _create_indexed_price()
    other = Collection.objects.create(name="other", fields=[field("price", "number")])
    store(collection, [{"price": i % 1000, "title": f"t{i}"} for i in range(rows)])
    store(other, [{"price": i % 1000} for i in range(rows)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # a planner with statistics, as a running database has
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")  # the test's transaction only
    (name,) = index_names(collection.pk)
    return (name, *plans_of(staff_api, params))


def plans_of(staff_api: APIClient, params: dict[str, str]) -> tuple[list[str], Any]:
    """The plans of the record queries of a list request on `items`, and its body."""
    with record_statements() as statements:
        response = staff_api.get(URL + "items/records/", params)
    assert response.status_code == 200, response.json()
    return [plan(sql, sql_params) for sql, sql_params in statements], response.json()


def _create_indexed_price() -> Collection:
    from collections_app import services

    return services.collection_create(
        name="items", fields=[field("price", "number", indexed=True), field("title", "text")], list_rule=""
    )


@pytest.mark.django_db
def test_filtered_ordered_list_and_its_count_use_the_index_on_sqlite(staff_api: APIClient) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite run (the PostgreSQL plan has its own test)")
    name, plans, body = list_plans(staff_api, {"query": "price >= 100 && price < 110", "ordering": "price"})
    assert body["count"] == 30
    assert len(body["results"]) == 30
    assert [r["price"] for r in body["results"]] == sorted(r["price"] for r in body["results"])
    count_plan, page_plan = plans
    assert f"USING INDEX {name} (<expr>>? AND <expr><?)" in count_plan
    assert f"USING INDEX {name} (<expr>>? AND <expr><?)" in page_plan
    assert "TEMP B-TREE" not in page_plan  # the index gives the order too


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"price": "100"},
        {"price__gte": "100", "price__lt": "102", "ordering": "price"},
        {"price__in": "5,7", "ordering": "-price"},
        {"query": "price <= 2", "ordering": "price"},
    ],
)
def test_filters_use_the_index_on_sqlite(staff_api: APIClient, params: dict[str, str]) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite run (the PostgreSQL plan has its own test)")
    name, plans, _ = list_plans(staff_api, params, rows=2000)
    assert all(f"USING INDEX {name} (<expr>" in p for p in plans), plans


@pytest.mark.postgresql
@pytest.mark.django_db
def test_filtered_ordered_list_and_its_count_use_the_index_on_postgresql(staff_api: APIClient) -> None:
    name, plans, body = list_plans(staff_api, {"query": "price >= 100 && price < 110", "ordering": "price"}, rows=20000)
    assert body["count"] == 200
    assert len(body["results"]) == 30
    count_plan, page_plan = plans
    assert f"Index Scan using {name}" in count_plan or f"Bitmap Index Scan on {name}" in count_plan, count_plan
    assert f"Index Scan using {name}" in page_plan, page_plan
    assert "Sort" not in page_plan, page_plan  # the index gives the order too
    for params in ({"price": "5"}, {"price__in": "5,7"}, {"ordering": "price"}):
        more_plans, _ = plans_of(staff_api, params)
        assert all(name in p for p in more_plans[1 if "ordering" in params else 0 :]), (params, more_plans)


# --- same results with and without the index -----------------------------------------------------

MIXED_ROWS = [
    {"price": 10, "title": "b", "active": True, "day": "2020-01-02", "status": "draft"},
    {"price": 10.0, "title": "B", "active": False, "day": "2020-01-01", "status": "published"},
    {"price": -2.5, "title": "a", "day": "0005-06-01"},
    {"price": "10", "title": 10, "active": "true", "day": 20200101},  # wrong types read as null
    {"price": None, "title": None, "active": None},
    {},
    {"price": 1e10, "title": "é", "active": True, "status": "draft"},
    {"price": 0, "title": "", "active": False, "day": "9999-12-31"},
    *(
        {"price": n % 7, "title": f"t{n % 5}", "active": n % 2 == 0, "day": f"2020-01-{n % 28 + 1:02d}"}
        for n in range(40)
    ),
]
MIXED_FIELDS = [
    field("price", "number"),
    field("title", "text"),
    field("active", "bool"),
    field("day", "date"),
    field("status", "select", values=["draft", "published"]),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [
        {"ordering": "price"},
        {"ordering": "-price"},
        {"ordering": "title,-price"},
        {"ordering": "-day", "page": "2", "page_size": "7"},
        {"ordering": "active,price"},
        {"price": "10", "ordering": "title"},
        {"price__gte": "0", "price__lt": "5", "ordering": "price"},
        {"price__in": "10,-2.5,3", "ordering": "-price"},
        {"title": "b"},
        {"title__in": "a,b,t1", "ordering": "-title"},
        {"active": "false", "ordering": "day"},
        {"day__gte": "2020-01-02", "day__lte": "2020-01-10", "ordering": "day"},
        {"status": "draft", "ordering": "status"},
        {"query": 'price > 3 && title < "t3"', "ordering": "-title,price"},
        {"query": 'price = null || title != "b"', "ordering": "price", "page_size": "5", "page": "3"},
        {"query": 'day >= "2020-01-05" || active = true', "ordering": "-day,title"},
    ],
)
def test_list_results_are_the_same_with_and_without_indexes(staff_api: APIClient, params: dict[str, str]) -> None:
    assert staff_api.post(URL, {"name": "items", "fields": MIXED_FIELDS}, format="json").status_code == 201
    collection = Collection.objects.get(name="items")
    store(collection, MIXED_ROWS)
    without = staff_api.get(URL + "items/records/", params)
    assert without.status_code == 200, without.json()
    indexed_fields = [{**f, "options": {**f["options"], "indexed": True}} for f in MIXED_FIELDS]
    assert staff_api.patch(URL + "items/", {"fields": indexed_fields}, format="json").status_code == 200
    assert len(index_names(collection.pk)) == len(MIXED_FIELDS)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
    with_index = staff_api.get(URL + "items/records/", params)
    assert with_index.json() == without.json()
    assert without.json()["count"] > 0


PROPERTY_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}
ORDERABLE = [spec.name for spec in FIELDS if spec.kind != JSON]
ORDERINGS = st.lists(st.sampled_from(ORDERABLE).flatmap(lambda n: st.sampled_from([n, f"-{n}"])), max_size=2)


def listed_ids(collection: Collection, query: str, ordering: str) -> tuple[list[str], int]:
    condition = compile_text(query, fields=collection.field_map, auth=Auth(id="7", username="b"), allow_hidden=True)
    queryset = filters.filter_records(collection.records.all(), condition)
    ordered = queryset.order_by(*filters.ordering_expressions(collection, ordering, show_hidden=True))
    return list(ordered.values_list("id", flat=True)), queryset.count()


def same_results(rows: list[dict[str, Any]], query: str, ordering: list[str]) -> None:
    """The ids a query lists, in order, and its count do not change when every field is indexed."""
    specs = [s for s in FIELDS if s.kind != JSON]
    definitions = [{**s.as_dict(), "options": {"indexed": s.kind != JSON}} for s in FIELDS]
    with transaction.atomic():
        collection = Collection.objects.create(name=f"c{new_id()}", fields=definitions)
        store(collection, rows)
        text = ",".join(ordering) or "created"
        before = listed_ids(collection, query, text)
        indexes.sync_indexes(collection.pk, collection.field_specs)
        assert len(index_names(collection.pk)) == len(specs)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL enable_seqscan = off")
        assert listed_ids(collection, query, text) == before, f"{connection.vendor}: {query!r} ordered by {text}"
        transaction.set_rollback(True)


@pytest.mark.django_db
@settings(max_examples=int(os.environ.get("INDEXED_EXAMPLES", "60")), **PROPERTY_SETTINGS)
@given(rows=st.lists(record_data(), min_size=1, max_size=12), query=queries(), ordering=ORDERINGS)
def test_indexes_never_change_what_a_list_returns(rows: list[Any], query: str, ordering: list[str]) -> None:
    same_results(rows, query, ordering)


# --- locks ---------------------------------------------------------------------------------------


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_an_index_change_waits_for_an_open_record_insert_without_deadlock() -> None:
    """A record insert locks the records table, then (its foreign key, checked at commit) the
    collection's row; an index change takes the table before the row, so the two queue instead
    of deadlocking."""
    from collections_app import services

    collection = services.collection_create(name="items", fields=[field("price", "number")])
    inserted, release = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def insert() -> None:
        try:
            with transaction.atomic():
                services.record_create(collection=Collection.objects.get(pk=collection.pk), data={"price": 1})
                inserted.set()
                release.wait(30)
            outcomes["insert"] = "ok"
        except Exception as exc:
            outcomes["insert"] = repr(exc)
        finally:
            connection.close()

    def change() -> None:
        try:
            services.collection_update(
                collection=Collection.objects.get(pk=collection.pk),
                changes={"fields": [field("price", "number", indexed=True)]},
            )
            outcomes["change"] = "ok"
        except Exception as exc:
            outcomes["change"] = repr(exc)
        finally:
            connection.close()

    writer = threading.Thread(target=insert)
    writer.start()
    assert inserted.wait(30)
    changer = threading.Thread(target=change)
    changer.start()
    with connection.cursor() as cursor:  # until the change waits for the insert's lock
        for _ in range(300):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.05)
    release.set()
    writer.join(60)
    changer.join(60)
    assert outcomes == {"insert": "ok", "change": "ok"}
    assert len(index_names(collection.pk)) == 1
    assert Record.objects.filter(collection=collection).count() == 1
