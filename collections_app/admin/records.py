"""The admin's record screens, scoped to one collection (`?collection=<name>`).

The list has a column per field (sortable, as the REST `ordering` sorts), filters for select and
bool fields, newest first, and a search box that takes the query language (or plain words, found
in the text fields). The form is generated from the schema (`record_forms`). Every write goes
through `services`, so the admin validates like the REST API and emits the same events.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import SimpleListFilter
from django.contrib.auth import get_user_model
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from collections_app import filters, services
from collections_app.admin.record_forms import record_form, record_label, user_label
from collections_app.models import Collection, Record
from collections_app.query import TEXT, Condition, FieldTest, QueryError, any_of
from collections_app.schema import SYSTEM_FIELDS, FieldSpec

COLLECTION_PARAMETER = "collection"
OPERATOR_CHARACTERS = frozenset("=<>~!&|()")
MAX_COLUMN_TEXT = 80
LOOKUP_PAGE_SIZE = 20
MAX_WORDS = 200
SEARCH_HELP = 'A query, e.g. status = "published" && price > 10, or words to find in the text fields.'


def scoped_collection(request: HttpRequest) -> Collection | None:
    """The collection a records page is about: `?collection=`, kept through the admin's redirects."""
    if not hasattr(request, "_fastcms_collection"):
        name = request.GET.get(COLLECTION_PARAMETER)
        if name is None and (preserved := request.GET.get("_changelist_filters")):
            name = QueryDict(preserved).get(COLLECTION_PARAMETER)
        request._fastcms_collection = Collection.objects.filter(name=name).first() if name else None
    return request._fastcms_collection


def records_url(collection: Collection, view: str = "changelist") -> str:
    return reverse(f"admin:collections_app_record_{view}") + "?" + urlencode({COLLECTION_PARAMETER: collection.name})


def search_condition(collection: Collection, text: str, user: Any) -> Condition:
    """A query, or plain words: found (case-insensitively) in any text field, or equal to the id."""
    if OPERATOR_CHARACTERS.isdisjoint(text):
        words = text.replace("\x00", "").strip()[:MAX_WORDS]  # the databases store no NUL
        tests: list[Condition] = [FieldTest(s, "~", words) for s in collection.field_specs if s.kind == TEXT]
        return any_of([*tests, FieldTest(SYSTEM_FIELDS["id"], "=", words)])
    return filters.query_condition(collection, text, user=user, show_hidden=True)


# --- list filters and columns -------------------------------------------------------------------


class CollectionFilter(SimpleListFilter):
    title = "collection"
    parameter_name = COLLECTION_PARAMETER

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in Collection.objects.values_list("name", flat=True)[:200]]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(collection__name=self.value()) if self.value() else queryset


def field_filter(spec: FieldSpec) -> type[SimpleListFilter]:
    """A list filter for a select or bool field: one choice per value."""

    def lookups(self: SimpleListFilter, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        if spec.type == "bool":
            return [("true", "Yes"), ("false", "No")]
        return [(value, value) for value in spec.options["values"]]

    def queryset(self: SimpleListFilter, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        if "\x00" in self.value():
            return queryset.none()
        value = self.value() == "true" if spec.type == "bool" else self.value()
        return queryset.filter(FieldTest(spec, "=", value).q())

    attrs = {"title": spec.name, "parameter_name": f"{spec.name}__exact", "lookups": lookups, "queryset": queryset}
    return type(f"{spec.name.title()}Filter", (SimpleListFilter,), attrs)


def shown_value(spec: FieldSpec, value: Any) -> Any:
    """A value as a list cell shows it (None: the admin's empty mark)."""
    if value is None or spec.type == "bool":
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_COLUMN_TEXT else text[: MAX_COLUMN_TEXT - 1] + "…"


def value_column(collection: Collection, spec: FieldSpec) -> Any:
    """A list column for one field, sorted as the REST API's `ordering` sorts it."""

    def column(record: Record) -> Any:
        return shown_value(spec, record.data.get(spec.name))

    column.__name__ = spec.name
    column.short_description = spec.name
    column.boolean = spec.type == "bool"
    if spec.type != "json":
        column.admin_order_field = filters.ordering_expressions(collection, spec.name, show_hidden=True)[0]
    return column


# --- the admin ----------------------------------------------------------------------------------


class RecordAdmin(admin.ModelAdmin):
    list_select_related = ["collection"]
    search_fields = ["id"]  # shows the search box; `get_search_results` does the searching
    search_help_text = SEARCH_HELP
    list_per_page = 50
    change_list_template = "admin/collections_app/record/change_list.html"
    change_form_template = "admin/collections_app/record/change_form.html"

    class Media:
        css = {"all": ("collections_app/admin.css",)}

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path("lookup/user/", wrap(self.user_lookup_view), name="collections_app_record_user_lookup"),
            path(
                "lookup/records/<str:collection>/",
                wrap(self.record_lookup_view),
                name="collections_app_record_lookup",
            ),
            path("choose-collection/", wrap(self.choose_collection_view), name="collections_app_record_choose"),
            *super().get_urls(),
        ]

    # --- the list

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        collection = scoped_collection(request)
        is_list = getattr(request, "resolver_match", None) and request.resolver_match.url_name.endswith("changelist")
        # The list's counts ("3 of 12") are the collection's; record pages find any record by id.
        return queryset.filter(collection=collection) if collection and is_list else queryset

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["-created"]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        collection = scoped_collection(request)
        if collection is None:
            return ["id", "collection", "summary", "updated"]
        # The same column objects for the whole request: the admin finds sortable columns by identity.
        if not hasattr(request, "_fastcms_columns"):
            columns = [value_column(collection, spec) for spec in collection.field_specs]
            request._fastcms_columns = ["id", *columns, "created", "updated"]
        return request._fastcms_columns

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        collection = scoped_collection(request)
        specs = collection.field_specs if collection else []
        return [CollectionFilter, *(field_filter(s) for s in specs if s.type in ("select", "bool"))]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        if scoped_collection(request) is None:
            changelist.search_help_text = "A record id. Choose a collection to search its fields."
        return changelist

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        if not search_term.strip():
            return queryset, False
        collection = scoped_collection(request)
        if collection is None:
            return queryset.filter(pk=search_term.strip()), False
        try:
            condition = search_condition(collection, search_term, request.user)
        except QueryError as exc:
            where = "" if exc.position is None else f" at position {exc.position}"
            messages.error(request, f"Invalid query{where}: {exc.detail}")
            return queryset.none(), False
        return filters.filter_records(queryset, condition), False

    @admin.display(description="values")
    def summary(self, obj: Record) -> str:
        text = json.dumps(obj.data, ensure_ascii=False)
        return text if len(text) <= 120 else text[:119] + "…"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        collection = scoped_collection(request)
        if request.GET.get(COLLECTION_PARAMETER) and collection is None:
            messages.error(request, f"There is no collection named “{request.GET[COLLECTION_PARAMETER]}”.")
        title = f"{collection.name} records" if collection else "Records of every collection"
        context = {"title": title, "collection": collection, **(extra_context or {})}
        return super().changelist_view(request, context)

    # --- the form

    def get_form(self, request: HttpRequest, obj: Record | None = None, change: bool = False, **kwargs: Any) -> Any:
        return record_form(obj.collection if obj else scoped_collection(request))

    def get_fieldsets(self, request: HttpRequest, obj: Record | None = None) -> list[Any]:
        values = (None, {"fields": list(self.get_form(request, obj).base_fields)})
        if obj is None:
            return [values]
        return [values, ("Record", {"fields": ["id", "collection", "created", "updated"]})]

    def get_readonly_fields(self, request: HttpRequest, obj: Record | None = None) -> list[str]:
        return ["id", "collection", "created", "updated"] if obj else []

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None) -> Any:
        collection = scoped_collection(request)
        if collection is None:
            return self.choose_collection_view(request)
        context = {"title": f"Add a {collection.name} record", "collection": collection, **(extra_context or {})}
        return super().add_view(request, form_url, context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        record = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if record is not None:
            context.update(title=f"Edit a {record.collection.name} record", collection=record.collection)
        return super().change_view(request, object_id, form_url, context)

    # After a save or delete, back to the collection's records (or its add form), whichever way it came.

    def response_post_save_add(self, request: HttpRequest, obj: Record) -> HttpResponse:
        return HttpResponseRedirect(records_url(obj.collection))

    def response_post_save_change(self, request: HttpRequest, obj: Record) -> HttpResponse:
        return HttpResponseRedirect(records_url(obj.collection))

    def response_add(self, request: HttpRequest, obj: Record, post_url_continue: str | None = None) -> HttpResponse:
        response = super().response_add(request, obj, post_url_continue)
        return HttpResponseRedirect(records_url(obj.collection, "add")) if "_addanother" in request.POST else response

    def response_change(self, request: HttpRequest, obj: Record) -> HttpResponse:
        response = super().response_change(request, obj)
        return HttpResponseRedirect(records_url(obj.collection, "add")) if "_addanother" in request.POST else response

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        record = self.get_object(request, object_id)
        request._fastcms_deleted_from = record.collection if record else None
        return super().delete_view(request, object_id, extra_context)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: Any) -> HttpResponse:
        response = super().response_delete(request, obj_display, obj_id)
        collection = getattr(request, "_fastcms_deleted_from", None)
        return HttpResponseRedirect(records_url(collection)) if collection and response.status_code == 302 else response

    def save_model(self, request: HttpRequest, obj: Record, form: Any, change: bool) -> None:
        if change:
            saved = services.record_update(record=obj, data=form.record_values, partial=False)
        else:
            saved = services.record_create(collection=form.collection, data=form.record_values)
        obj.pk, obj.collection, obj.data = saved.pk, saved.collection, saved.data
        obj.created, obj.updated = saved.created, saved.updated

    def delete_model(self, request: HttpRequest, obj: Record) -> None:
        services.record_delete(record=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for record in queryset.select_related("collection"):
            services.record_delete(record=record)

    # --- pages and lookups

    def choose_collection_view(self, request: HttpRequest) -> HttpResponse:
        """Adding a record starts with its collection."""
        choices = [(c.name, records_url(c, "add")) for c in Collection.objects.order_by("name")]
        context = {
            **self.admin_site.each_context(request),
            "title": "Add a record: choose its collection",
            "opts": self.opts,
            "choices": choices,
        }
        return TemplateResponse(request, "admin/collections_app/record/choose_collection.html", context)

    def record_lookup_view(self, request: HttpRequest, collection: str) -> JsonResponse:
        """Records of `collection` for a relation picker (select2's format), searched by words or id."""
        if not self.has_view_permission(request):
            return JsonResponse({"detail": "Not allowed."}, status=403)
        target = Collection.objects.filter(name=collection).first()
        if target is None:
            return JsonResponse({"detail": f"No collection named '{collection}'."}, status=404)
        records = target.records.select_related("collection").order_by("-created", "-pk")
        term = request.GET.get("term", "").strip()
        if term:
            words = term.translate({ord(c): " " for c in OPERATOR_CHARACTERS}).strip()
            records = filters.filter_records(records, search_condition(target, words, request.user))
        return self._page(request, records, lambda record: (record.pk, record_label(record)))

    def user_lookup_view(self, request: HttpRequest) -> JsonResponse:
        """Users for a user picker (select2's format), searched by username, name or email."""
        if not self.has_view_permission(request):
            return JsonResponse({"detail": "Not allowed."}, status=403)
        users = get_user_model().objects.order_by("username")
        if term := request.GET.get("term", "").strip():
            users = users.filter(
                Q(username__icontains=term)
                | Q(first_name__icontains=term)
                | Q(last_name__icontains=term)
                | Q(email__icontains=term)
            )
        return self._page(request, users, lambda user: (str(user.pk), user_label(user)))

    def _page(self, request: HttpRequest, items: QuerySet, describe: Any) -> JsonResponse:
        page = Paginator(items, LOOKUP_PAGE_SIZE).get_page(request.GET.get("page"))
        results = [dict(zip(("id", "text"), describe(item), strict=True)) for item in page]
        return JsonResponse({"results": results, "pagination": {"more": page.has_next()}})
