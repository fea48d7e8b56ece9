"""Record list filtering: `?query=`, django-filter parameters from the schema, `?ordering=`.

Every filter compiles through the query language, so `?price__gte=100` means exactly what
`?query=price>=100` means, on every database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django import forms
from django.db.models import F, QuerySet
from rest_framework import exceptions

from collections_app import expressions as sql
from collections_app.inputs import MAX_IN_VALUES
from collections_app.models import Collection
from collections_app.query import (
    JSON,
    TRUE,
    Auth,
    Condition,
    FieldTest,
    Literal,
    any_of,
    coerce_literal,
    compile_text,
    db_value,
)
from collections_app.schema import SYSTEM_FIELDS, FieldSpec, FieldValueError

MAX_FILTERS = 32  # filter parameters per request, like the query language's 32 comparisons

LOOKUPS_BY_TYPE = {
    "number": ("exact", "gt", "gte", "lt", "lte", "in"),
    "date": ("exact", "gt", "gte", "lt", "lte", "in"),
    "datetime": ("exact", "gt", "gte", "lt", "lte", "in"),
    "text": ("exact", "icontains", "in"),
    "email": ("exact", "icontains", "in"),
    "url": ("exact", "icontains", "in"),
    "select": ("exact", "icontains", "in"),
    "bool": ("exact",),
    "relation": ("exact", "in"),
    "user": ("exact", "in"),
    "json": (),
}
OPERATOR_OF_LOOKUP = {"exact": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "icontains": "~"}


def field_lookups(spec: FieldSpec) -> tuple[str, ...]:
    if spec.name == "id":
        return ("exact", "in")
    return LOOKUPS_BY_TYPE[spec.type]


class ConditionField(forms.CharField):
    """A filter parameter's text, cleaned into a query `Condition` (errors become a 400)."""

    def __init__(self, spec: FieldSpec, lookup: str, **kwargs: Any) -> None:
        self.spec = spec
        self.lookup = lookup
        super().__init__(strip=False, **kwargs)

    def clean(self, value: Any) -> Condition | None:
        value = super().clean(value)
        if value in (None, ""):
            return None
        texts = value.split(",") if self.lookup == "in" else [value]
        if len(texts) > MAX_IN_VALUES:
            raise forms.ValidationError(f"'in' takes at most {MAX_IN_VALUES} comma-separated values.")
        op = OPERATOR_OF_LOOKUP.get(self.lookup, "=")
        tests: list[Condition] = []
        for text in texts:
            try:
                coerced = coerce_literal(self.spec, Literal("word", text, 0))
            except FieldValueError as exc:
                # As a parameter: django-filter %-formats messages, and the value may contain '%'.
                raise forms.ValidationError("%(problem)s", params={"problem": str(exc)}) from None
            tests.append(FieldTest(self.spec, op, coerced))
        return any_of(tests)


class ConditionFilter(django_filters.Filter):
    field_class = ConditionField

    def filter(self, qs: QuerySet, value: Condition | None) -> QuerySet:
        return qs if value is None else qs.filter(value.q())


class SchemaFilterSet(django_filters.FilterSet):
    """A collection's filters. An instance holds only the filters its data names (unless `full`):
    a schema offers dozens of filters, and copying every one and building its form field took
    about 1.5 ms per list request; a filter with no value filters nothing, so the result is the
    same. `full=True` keeps them all, for the browsable API's filter form."""

    def __init__(
        self, data: Any = None, queryset: Any = None, *, request: Any = None, prefix: Any = None, full: bool = False
    ) -> None:
        if not full and data is not None:
            self.base_filters = {name: f for name, f in type(self).base_filters.items() if name in data}
        super().__init__(data, queryset, request=request, prefix=prefix)


_filtersets: dict[tuple[str, str, str, bool], type[SchemaFilterSet]] = {}
MAX_FILTERSETS = 256


def build_filterset(collection: Collection, *, show_hidden: bool) -> type[SchemaFilterSet]:
    """The FilterSet class of one collection version's schema (hidden fields only for staff);
    built once per version (a collection's `updated` changes with every change of it)."""
    key = (collection.id, collection.name, collection.updated.isoformat(), show_hidden)
    built = _filtersets.get(key)
    if built is None:
        if len(_filtersets) >= MAX_FILTERSETS:
            _filtersets.clear()
        built = _filtersets[key] = _build_filterset(collection, show_hidden=show_hidden)
    return built


def _build_filterset(collection: Collection, *, show_hidden: bool) -> type[SchemaFilterSet]:
    specs = [*SYSTEM_FIELDS.values(), *(s for s in collection.field_specs if show_hidden or not s.hidden)]
    filters: dict[str, django_filters.Filter] = {}
    for spec in specs:
        for lookup in field_lookups(spec):
            name = spec.name if lookup == "exact" else f"{spec.name}__{lookup}"
            help_text = f"{spec.type} {lookup}" + (" (comma-separated values)" if lookup == "in" else "")
            filters[name] = ConditionFilter(field_name=spec.name, spec=spec, lookup=lookup, help_text=help_text)
    meta = type("Meta", (), {"model": None, "fields": []})
    return type(f"{collection.name.title()}FilterSet", (SchemaFilterSet,), {**filters, "Meta": meta})


def check_filter_count(filterset: type[django_filters.FilterSet], params: Mapping[str, Any]) -> None:
    """A 400 when a request uses more than MAX_FILTERS filter parameters."""
    used = [name for name in params if name in filterset.base_filters]
    if len(used) > MAX_FILTERS:
        raise exceptions.ValidationError({"filters": [f"At most {MAX_FILTERS} filter parameters per request."]})


def hidden_parameters(collection: Collection, params: Mapping[str, Any]) -> list[str]:
    """Query parameters that filter on a hidden field."""
    hidden = collection.hidden_names
    return sorted(p for p in params if p.split("__", 1)[0] in hidden)


def query_condition(collection: Collection, text: str, *, user: Any, show_hidden: bool) -> Condition:
    """`?query=` compiled for this collection and caller (QueryError on a bad query)."""
    return compile_text(text, fields=collection.field_map, auth=Auth.of(user), allow_hidden=show_hidden)


def ordering_expressions(collection: Collection, text: str, *, show_hidden: bool) -> list[Any]:
    """`-created,price` as ORDER BY expressions (numeric for numbers), with `id` as tie-breaker."""
    order: list[Any] = []
    errors: list[str] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        descending = term.startswith("-")
        name = term.lstrip("-")
        spec = SYSTEM_FIELDS.get(name) or collection.field_map.get(name)
        if spec is None or (spec.hidden and not show_hidden):
            errors.append(f"Unknown field '{name}'.")
            continue
        if spec.kind == JSON:
            errors.append(f"Cannot order by json field '{name}'.")
            continue
        expr = sql.CodePointOrder(F("id")) if name == "id" else db_value(spec)
        order.append(expr.desc(nulls_last=True) if descending else expr.asc(nulls_last=True))
    if errors:
        raise exceptions.ValidationError({"ordering": errors})
    order.append(F("id").asc())
    return order


def filter_records(qs: QuerySet, condition: Condition) -> QuerySet:
    return qs if condition is TRUE else qs.filter(condition.q())
