"""The admin's collection screens: fields as rows, rules that keep what was typed, rules at a glance.

Saves and deletes go through `services`, so the admin validates like the REST API and emits the
same events.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from collections_app import services
from collections_app.admin.field_rows import FieldRowFormSet, initial_rows
from collections_app.admin.rules import RuleField, rule_badge
from collections_app.models import RULE_NAMES, Collection

ADMIN_JS = ("admin/js/vendor/jquery/jquery.js", "admin/js/jquery.init.js", "admin/js/inlines.js")


class CollectionAdminForm(forms.ModelForm):
    list_rule = RuleField(help_text="Who may list records and receive their events.")
    view_rule = RuleField(help_text="Who may read a single record.")
    create_rule = RuleField(
        help_text="Checked against the new record, e.g. <code>@request.auth.id != null && owner = "
        "@request.auth.id</code>."
    )
    update_rule = RuleField(help_text="Checked before and after the change.")
    delete_rule = RuleField()

    class Meta:
        model = Collection
        fields = ["name", *RULE_NAMES]

    class Media:
        js = (*ADMIN_JS, "collections_app/admin.js")
        css = {"all": ("collections_app/admin.css",)}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = [] if self.instance._state.adding else self.instance.fields
        self.field_rows = FieldRowFormSet(
            data=self.data if self.is_bound else None, initial=initial_rows(stored), prefix="fields"
        )
        self.schema_errors: list[str] = []

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.field_rows.is_valid():
            self.add_error(None, "Correct the fields below.")
            return data
        data["fields"] = self.field_rows.definitions()
        if self.errors:
            return data
        existing = None if self.instance._state.adding else Collection.objects.get(pk=self.instance.pk)
        try:
            services.collection_check(
                collection=existing,
                name=data.get("name"),
                fields=data["fields"],
                rules={rule: data.get(rule) for rule in RULE_NAMES},
            )
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                if key == "fields":
                    self.schema_errors = self.field_rows.place_errors(messages)
                    self.add_error(None, "Correct the fields below.")
                else:
                    self.add_error(key if key in self.fields else None, messages)
        return data


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    form = CollectionAdminForm
    change_form_template = "admin/collections_app/collection/change_form.html"
    list_display = [
        "name",
        "field_names",
        "records_link",
        "list_rule_badge",
        "view_rule_badge",
        "create_rule_badge",
        "update_rule_badge",
        "delete_rule_badge",
        "updated",
    ]
    search_fields = ["name"]
    readonly_fields = ["id", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["name"]}),
        (
            "Access rules",
            {
                "fields": list(RULE_NAMES),
                "description": mark_safe(
                    "Staff bypass every rule. A query uses the collection's fields and "
                    "<code>@request.auth.id</code> / <code>@request.auth.username</code>."
                ),
            },
        ),
    ]

    class Media:
        css = {"all": ("collections_app/admin.css",)}

    def get_fieldsets(self, request: HttpRequest, obj: Collection | None = None) -> list[Any]:
        if obj is None:
            return self.fieldsets
        names, rules = self.fieldsets
        available = ", ".join(["id", "created", "updated", *(spec.name for spec in obj.field_specs)])
        description = format_html("{} Fields available to rules: <code>{}</code>.", rules[1]["description"], available)
        rules = (rules[0], {**rules[1], "description": description})
        return [names, rules, ("Record keeping", {"fields": self.readonly_fields, "classes": ["collapse"]})]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(record_total=Count("records"))

    @admin.display(description="fields")
    def field_names(self, obj: Collection) -> str:
        chips = format_html_join(
            " ", '<span class="field-chip">{} <small>{}</small></span>', ((s.name, s.type) for s in obj.field_specs)
        )
        return chips or "—"

    @admin.display(description="records", ordering="record_total")
    def records_link(self, obj: Collection) -> str:
        url = reverse("admin:collections_app_record_changelist") + "?" + urlencode({"collection": obj.name})
        return format_html('<a href="{}">{} record{}</a>', url, obj.record_total, "" if obj.record_total == 1 else "s")

    @admin.display(description="list")
    def list_rule_badge(self, obj: Collection) -> str:
        return rule_badge(obj.list_rule)

    @admin.display(description="view")
    def view_rule_badge(self, obj: Collection) -> str:
        return rule_badge(obj.view_rule)

    @admin.display(description="create")
    def create_rule_badge(self, obj: Collection) -> str:
        return rule_badge(obj.create_rule)

    @admin.display(description="update")
    def update_rule_badge(self, obj: Collection) -> str:
        return rule_badge(obj.update_rule)

    @admin.display(description="delete")
    def delete_rule_badge(self, obj: Collection) -> str:
        return rule_badge(obj.delete_rule)

    def save_model(self, request: HttpRequest, obj: Collection, form: Any, change: bool) -> None:
        values = {key: form.cleaned_data.get(key) for key in ("name", "fields", *RULE_NAMES)}
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

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple[list[Any], dict[str, int], set, list]:
        """A summary (a collection and its record count), not a page listing every record."""
        collections = list(objs)
        counts = dict(
            Collection.objects.filter(pk__in=[c.pk for c in collections])
            .annotate(total=Count("records"))
            .values_list("pk", "total")
        )
        summary = [f"{c.name}, with its {counts.get(c.pk, 0)} records" for c in collections]
        totals = {"collections": len(collections), "records": sum(counts.values())}
        perms_needed = set() if self.has_delete_permission(request) else {"collection"}
        return summary, totals, perms_needed, []
