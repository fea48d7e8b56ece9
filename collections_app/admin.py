"""Django admin for collections (schema and rules) and records (validated against the schema).

Every save and delete goes through `services`, so admin writes are validated like REST writes
and emit the same events.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from collections_app import services
from collections_app.models import RULE_NAMES, Collection, Record

STAFF_ONLY, EVERYONE, QUERY = "staff", "everyone", "query"


class RuleWidget(forms.MultiWidget):
    def __init__(self) -> None:
        choices = [(STAFF_ONLY, "Staff only (null)"), (EVERYONE, 'Everyone ("")'), (QUERY, "When this query holds:")]
        super().__init__([forms.Select(choices=choices), forms.TextInput(attrs={"size": 60})])

    def decompress(self, value: str | None) -> list[Any]:
        if value is None:
            return [STAFF_ONLY, ""]
        return [EVERYONE, ""] if value.strip() == "" else [QUERY, value]


class RuleField(forms.MultiValueField):
    """A rule as the admin edits it: staff only (null), everyone (""), or a query."""

    widget = RuleWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (
            forms.ChoiceField(choices=[(STAFF_ONLY, ""), (EVERYONE, ""), (QUERY, "")]),
            forms.CharField(required=False, strip=False),
        )
        super().__init__(fields, require_all_fields=False, required=False, **kwargs)

    def compress(self, data_list: list[Any]) -> str | None:
        mode, text = (*data_list, STAFF_ONLY, "")[:2] if data_list else (STAFF_ONLY, "")
        if mode == EVERYONE:
            return ""
        if mode == QUERY:
            if not (text or "").strip():
                raise ValidationError("Enter the query, or choose another option.")
            return text
        return None


def _messages(detail: Any, prefix: str = "") -> list[str]:
    """Flatten an error dict or list into 'field: message' lines."""
    if isinstance(detail, dict):
        return [line for key, value in detail.items() for line in _messages(value, f"{key}: ")]
    if isinstance(detail, list):
        return [line for item in detail for line in _messages(item, prefix)]
    return [f"{prefix}{detail}"]


class CollectionAdminForm(forms.ModelForm):
    fields = forms.JSONField(
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "style": "font-family: monospace"}),
        help_text='A list like [{"name": "title", "type": "text", "required": true, "options": {"max_length": 200}}]. '
        "Types: text, number, bool, email, url, date, datetime, select, json, relation, user.",
    )
    list_rule = RuleField(help_text="Who may list records and receive their events.")
    view_rule = RuleField(help_text="Who may read a single record.")
    create_rule = RuleField()
    update_rule = RuleField()
    delete_rule = RuleField()

    class Meta:
        model = Collection
        fields = ["name", "fields", *RULE_NAMES]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        existing = self.instance if self.instance._state.adding is False else None
        try:
            services.collection_check(
                collection=existing and Collection.objects.get(pk=existing.pk),
                name=data.get("name"),
                fields=data.get("fields") or [],
                rules={rule: data.get(rule) for rule in RULE_NAMES},
            )
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(key if key in self.fields else None, messages)
        return data


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    form = CollectionAdminForm
    list_display = ["name", "field_names", "record_count", "list_rule", "updated"]
    search_fields = ["name"]
    readonly_fields = ["id", "created", "updated"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(record_total=Count("records"))

    @admin.display(description="fields")
    def field_names(self, obj: Collection) -> str:
        return ", ".join(f"{spec.name} ({spec.type})" for spec in obj.field_specs)

    @admin.display(description="records", ordering="record_total")
    def record_count(self, obj: Collection) -> int:
        return obj.record_total

    def save_model(self, request: HttpRequest, obj: Collection, form: Any, change: bool) -> None:
        values = {key: form.cleaned_data.get(key) for key in ("name", "fields", *RULE_NAMES)}
        values["fields"] = values["fields"] or []
        if change:
            saved = services.collection_update(collection=Collection.objects.get(pk=obj.pk), changes=values)
        else:
            saved = services.collection_create(**values)
        obj.pk, obj.created, obj.updated, obj.fields = saved.pk, saved.created, saved.updated, saved.fields

    def delete_model(self, request: HttpRequest, obj: Collection) -> None:
        services.collection_delete(collection=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for collection in queryset:
            services.collection_delete(collection=collection)


class RecordAdminForm(forms.ModelForm):
    data = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 14, "cols": 90, "style": "font-family: monospace"}),
        help_text="The record's field values as a JSON object, validated against the collection's schema.",
    )

    class Meta:
        model = Record
        fields = ["collection", "data"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        collection = data.get("collection") or getattr(self.instance, "collection", None)
        if self.errors or collection is None:
            return data
        existing = None if self.instance._state.adding else self.instance
        try:
            services.record_check(collection=collection, data=data.get("data") or {}, record=existing)
        except ValidationError as exc:
            self.add_error("data", _messages(exc.message_dict if hasattr(exc, "error_dict") else exc.messages))
        return data


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin):
    form = RecordAdminForm
    list_display = ["id", "collection", "summary", "updated"]
    list_filter = ["collection"]
    search_fields = ["id"]
    list_select_related = ["collection"]
    readonly_fields = ["id", "created", "updated"]

    def get_readonly_fields(self, request: HttpRequest, obj: Record | None = None) -> list[str]:
        return [*self.readonly_fields, "collection"] if obj else self.readonly_fields

    @admin.display(description="values")
    def summary(self, obj: Record) -> str:
        text = json.dumps(obj.data, ensure_ascii=False)
        return text if len(text) <= 120 else text[:117] + "..."

    def save_model(self, request: HttpRequest, obj: Record, form: Any, change: bool) -> None:
        data = form.cleaned_data.get("data") or {}
        if change:
            saved = services.record_update(record=obj, data=data, partial=False)
        else:
            saved = services.record_create(collection=obj.collection, data=data)
        obj.pk, obj.data, obj.created, obj.updated = saved.pk, saved.data, saved.created, saved.updated

    def delete_model(self, request: HttpRequest, obj: Record) -> None:
        services.record_delete(record=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for record in queryset.select_related("collection"):
            services.record_delete(record=record)
