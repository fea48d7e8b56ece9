"""The browsable API for records: typed HTML forms from the schema, and their input typed back.

`record_form_serializer` gives the browsable API a serializer with the right input per field type
(number, checkbox, select, email, url, date, datetime, JSON text area, relation and user selects).
It only draws forms: writes are validated by `services`. `form_values` turns what an HTML form
posts (all text) into the typed values the API expects: numbers, booleans, JSON, null for empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.http import QueryDict
from django.urls import Resolver404, resolve
from rest_framework import renderers, serializers

from collections_app.models import Collection, Record
from collections_app.schema import FieldSpec

# Fields of Django's and DRF's form machinery, never record values.
FORM_KEYS = frozenset({"csrfmiddlewaretoken", "_method", "_content", "_content_type"})
INTEGER_TEXT = re.compile(r"-?\d+")
NUMBER_TEXT = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
TRUE_TEXTS = frozenset({"true", "on", "1", "yes"})
FALSE_TEXTS = frozenset({"false", "off", "0", "no", ""})
MAX_CHOICES = 100  # relation and user selects list the newest; the raw JSON form takes any id


# --- drawing the form ----------------------------------------------------------------------------


def _relation_choices(spec: FieldSpec) -> list[tuple[str, str]]:
    records = Record.objects.filter(collection__name=spec.options["collection"]).order_by("-created", "-pk")
    return [(record.pk, record.pk) for record in records.only("pk")[:MAX_CHOICES]]


def _user_choices(spec: FieldSpec) -> list[tuple[str, str]]:
    users = get_user_model().objects.order_by("username")[:MAX_CHOICES]
    return [(str(user.pk), f"{user.get_username()} ({user.pk})") for user in users]


def create_text_field(spec: FieldSpec, **kwargs: Any) -> serializers.Field:
    long = spec.options.get("max_length", 1001) > 300
    return serializers.CharField(style={"base_template": "textarea.html"} if long else {}, **kwargs)


def create_number_field(spec: FieldSpec, **kwargs: Any) -> serializers.Field:
    kind = serializers.IntegerField if spec.options.get("integer") else serializers.FloatField
    return kind(**kwargs)


def create_json_field(spec: FieldSpec, **kwargs: Any) -> serializers.Field:
    return serializers.CharField(style={"base_template": "textarea.html", "rows": 4}, **kwargs)


def _select(choices: Callable[[FieldSpec], list[tuple[str, str]]]) -> Callable[..., serializers.Field]:
    def create(spec: FieldSpec, **kwargs: Any) -> serializers.Field:
        return serializers.ChoiceField(choices=choices(spec), allow_blank=True, **kwargs)

    return create


FIELD_BUILDERS: dict[str, Callable[..., serializers.Field]] = {
    "text": create_text_field,
    "number": create_number_field,
    "bool": lambda spec, **kwargs: serializers.BooleanField(**kwargs),
    "email": lambda spec, **kwargs: serializers.EmailField(**kwargs),
    "url": lambda spec, **kwargs: serializers.URLField(**kwargs),
    "date": lambda spec, **kwargs: serializers.DateField(**kwargs),
    "datetime": lambda spec, **kwargs: serializers.DateTimeField(**kwargs),
    "select": _select(lambda spec: [(v, v) for v in spec.options["values"]]),
    "json": create_json_field,
    "relation": _select(_relation_choices),
    "user": _select(_user_choices),
}


def help_text(spec: FieldSpec) -> str:
    parts = [spec.type]
    if spec.type == "relation":
        parts.append(f"a record id of {spec.options['collection']}")
    if spec.type == "datetime":
        parts.append("UTC unless an offset is given")
    if spec.type == "json":
        parts.append("any JSON value")
    if spec.hidden:
        parts.append("hidden: staff only")
    return "; ".join(parts)


class RecordFormSerializer(serializers.Serializer):
    """Draws a record form for the browsable API (context: `collection`); never validates writes."""

    def get_fields(self) -> dict[str, serializers.Field]:
        collection: Collection = self.context["collection"]
        show_hidden = self.context.get("show_hidden", False)
        fields = {}
        for spec in collection.field_specs:
            if spec.hidden and not show_hidden:
                continue
            kwargs = {"required": spec.required, "allow_null": True, "help_text": help_text(spec)}
            if spec.type == "bool":
                kwargs.pop("allow_null")
            fields[spec.name] = FIELD_BUILDERS[spec.type](spec, **kwargs)
        return fields

    def is_valid(self, *, raise_exception: bool = False) -> bool:
        """DRF's checks of the form, plus (context `refused`) the errors the API answered a post
        of it with, beside their fields: the form is drawn again as it was sent."""
        valid = super().is_valid(raise_exception=raise_exception)
        refused = self.context.get("refused") or {}
        extra = {
            name: [str(message) for message in messages]
            for name, messages in refused.items()
            if name in self.fields and name not in self._errors and isinstance(messages, list)
        }
        if extra:
            self._errors = {**self._errors, **extra}
            self._validated_data = {}
        return valid and not extra

    def to_representation(self, instance: Record | Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(instance, Record):  # a refused form post, valid as a form: drawn as sent
            return dict(self.get_initial())
        as_text = self.context.get("html_form", False)
        values = {}
        for name in self.fields:
            value = instance.data.get(name)
            spec = self.context["collection"].field_map[name]
            if as_text and spec.type == "json":
                value = None if value is None else json.dumps(value, ensure_ascii=False, indent=2)
            values[name] = value
        return values


def record_form_serializer(collection: Collection, *args: Any, **kwargs: Any) -> RecordFormSerializer:
    context = {**kwargs.pop("context", {}), "collection": collection}
    return RecordFormSerializer(*args, context=context, **kwargs)


# --- reading the form ----------------------------------------------------------------------------


def _typed(spec: FieldSpec, text: str) -> Any:
    """One posted text as the value the schema expects; text that does not fit is left as is."""
    if spec.type == "bool":
        folded = text.strip().lower()
        return True if folded in TRUE_TEXTS else False if folded in FALSE_TEXTS else text
    if text == "":
        return "" if spec.type == "text" and spec.required else None
    if spec.type == "number" and NUMBER_TEXT.fullmatch(text.strip()):
        return int(text) if INTEGER_TEXT.fullmatch(text.strip()) else float(text)
    if spec.type == "text":
        return text.replace("\r\n", "\n")  # a text area's line breaks, as browsers send them
    if spec.type == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise serializers.ValidationError({spec.name: [f"Enter valid JSON: {exc}."]}) from None
    return text


def form_values(collection: Collection, data: Any, *, partial: bool) -> Any:
    """A request body as record values: HTML form input (a QueryDict) typed per the schema.

    JSON bodies are returned unchanged. In a form, an unchecked checkbox is absent, so a bool
    field left out of a full (non-partial) form is false; empty inputs are null.
    """
    if not isinstance(data, QueryDict):
        return data
    fields = collection.field_map
    values: dict[str, Any] = {}
    for key in data:
        if key in FORM_KEYS:
            continue
        spec = fields.get(key)
        values[key] = _typed(spec, data.getlist(key)[-1]) if spec else data.getlist(key)[-1]
    if not partial:
        for spec in collection.field_specs:
            if spec.type == "bool" and spec.name not in values:
                values[spec.name] = False
    return values


# --- the pages -----------------------------------------------------------------------------------


def page_title(url_name: str, kwargs: Mapping[str, Any]) -> str | None:
    """What a breadcrumb or title calls an API page, naming collections and records by name."""
    if url_name == "record-list":
        return f"{kwargs['collection_name'].capitalize()} records"
    if url_name == "record-detail":
        return f"{kwargs['collection_name'].capitalize()} record {kwargs['pk']}"
    if url_name == "collection-detail":
        return f"Collection {kwargs['name']}"
    if url_name == "collection-list":
        return "Collections"
    return None


class FormRenderer(renderers.HTMLFormRenderer):
    """DRF's form renderer; a datetime field holding text that is no datetime (a refused form
    drawn again as it was sent) is drawn as a text input with that text: DRF would fail to parse it."""

    def render_field(self, field: Any, parent_style: dict[str, Any]) -> Any:
        try:
            return super().render_field(field, parent_style)
        except ValueError:
            if not isinstance(field._field, serializers.DateTimeField):
                raise
            field._field.style = {**field._field.style, "input_type": "text"}  # this request's field
            return super().render_field(field, parent_style)


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API, with breadcrumbs that name collections, and typed record forms."""

    form_renderer_class = FormRenderer

    def get_breadcrumbs(self, request: Any) -> list[tuple[str, str]]:
        crumbs = []
        for name, url in super().get_breadcrumbs(request):
            try:
                match = resolve(url.split("?", 1)[0])
            except Resolver404:
                crumbs.append((name, url))
                continue
            crumbs.append((page_title(match.url_name, match.kwargs) or name, url))
        return crumbs

    def render_form_for_serializer(self, serializer: Any) -> Any:
        if isinstance(serializer, RecordFormSerializer):
            serializer.context["html_form"] = True  # JSON values as text in their text areas
        return super().render_form_for_serializer(serializer)
