"""Filter sets: one class per collection version; an instance holds only the filters it is asked for."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import QueryDict

from collections_app import services
from collections_app.filters import build_filterset
from collections_app.models import Record


@pytest.mark.django_db
def test_one_class_per_collection_version_and_audience(make_collection: Any) -> None:
    books = make_collection(
        "books", [{"name": "title", "type": "text"}, {"name": "secret", "type": "text", "hidden": True}]
    )
    staff_class = build_filterset(books, show_hidden=True)
    assert build_filterset(books, show_hidden=True) is staff_class
    public_class = build_filterset(books, show_hidden=False)
    assert "secret" in staff_class.base_filters
    assert "secret" not in public_class.base_filters
    changed = services.collection_update(
        collection=books, changes={"fields": [*books.fields, {"name": "pages", "type": "number"}]}
    )
    new_class = build_filterset(changed, show_hidden=True)
    assert new_class is not staff_class
    assert "pages__gt" in new_class.base_filters


@pytest.mark.django_db
def test_an_instance_holds_the_named_filters_and_filters_the_same(make_collection: Any) -> None:
    books = make_collection("books", [{"name": "title", "type": "text"}, {"name": "pages", "type": "number"}])
    for title, pages in [("Dune", 412), ("Emma", 474), ("Ubik", 202)]:
        services.record_create(collection=books, data={"title": title, "pages": pages})
    filterset_class = build_filterset(books, show_hidden=True)
    data = QueryDict("pages__gt=300&title__in=Dune,Ubik&unrelated=1")
    queryset = Record.objects.filter(collection=books)

    lean = filterset_class(data=data, queryset=queryset)
    full = filterset_class(data=data, queryset=queryset, full=True)

    assert set(lean.filters) == {"pages__gt", "title__in"}
    assert set(full.filters) == set(filterset_class.base_filters)
    assert lean.is_valid()
    assert full.is_valid()
    assert [r.data["title"] for r in lean.qs] == [r.data["title"] for r in full.qs] == ["Dune"]
    bad = filterset_class(data=QueryDict("pages__gt=many"), queryset=queryset)
    assert not bad.is_valid()
    assert "pages__gt" in bad.errors


@pytest.mark.django_db
def test_the_browsable_form_offers_every_filter(staff_api: Any, make_collection: Any) -> None:
    make_collection("books", [{"name": "title", "type": "text"}, {"name": "pages", "type": "number"}], list_rule="")
    page = staff_api.get("/api/v1/collections/books/records/?pages__gt=1", HTTP_ACCEPT="text/html")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="pages__lt"' in html  # not asked for, still offered
    assert 'name="title__in"' in html
