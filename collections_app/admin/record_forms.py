"""The admin's record form, generated from a collection's schema: one form field per field type.

Each field type has its builder (`create_<type>_field`), as in Wagtail's form builder: text boxes,
number inputs, a checkbox, a select, email, url, date and datetime inputs, a JSON editor, and
searchable pickers for relations and users. The form then asks `services.record_check` and puts
the schema's errors on the fields they name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse

from collections_app import services
from collections_app.models import Collection, Record
from collections_app.schema import FieldSpec
from collections_app.values import format_datetime, parse_datetime_text, user_pk

INTEGER_TEXT = re.compile(r"-?\d+")
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
MAX_INLINE_TEXT = 300  # longer (or unbounded) text fields get a text area


# --- widgets and form fields ---------------------------------------------------------------------


class Picker(forms.Select):
    """A select whose options are searched on the server (the admin's select2 autocomplete)."""

    def __init__(self, url: str, label: Callable[[str], str]) -> None:
        super().__init__()
        self.url, self.label = url, label

    def build_attrs(self, base_attrs: dict[str, Any], extra_attrs: dict[str, Any] | None = None) -> dict[str, Any]:
        attrs = super().build_attrs(base_attrs, extra_attrs)
        attrs.update(
            {
                "class": "admin-autocomplete",
                "data-ajax--cache": "true",
                "data-ajax--delay": 250,
                "data-ajax--type": "GET",
                "data-ajax--url": self.url,
                "data-theme": "admin-autocomplete",
                "data-allow-clear": json.dumps(not self.is_required),
                "data-placeholder": "",
                "data-width": "24em",
            }
        )
        return attrs

    def optgroups(self, name: str, value: list[Any], attrs: dict[str, Any] | None = None) -> list[Any]:
        """Only the chosen value (with its label); the rest are searched."""
        options = [self.create_option(name, "", "", False, 0)]
        chosen = [v for v in value if v not in (None, "")]
        if chosen:
            options.append(self.create_option(name, chosen[0], self.label(chosen[0]), True, 1))
        return [(None, options, 0)]

    @property
    def media(self) -> forms.Media:
        extra = "" if settings.DEBUG else ".min"
        return forms.Media(
            js=(
                f"admin/js/vendor/jquery/jquery{extra}.js",
                f"admin/js/vendor/select2/select2.full{extra}.js",
                "admin/js/jquery.init.js",
                "admin/js/autocomplete.js",
            ),
            css={"screen": (f"admin/css/vendor/select2/select2{extra}.css", "admin/css/autocomplete.css")},
        )


class NumberField(forms.Field):
    """A JSON number from a number input: whole numbers stay integers."""

    default_error_messages = {"invalid": "Enter a number."}

    def to_python(self, value: Any) -> int | float | None:
        if value in self.empty_values:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            return int(text) if INTEGER_TEXT.fullmatch(text) else float(text)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


class TextField(forms.CharField):
    """Text as typed; a text area's line breaks (sent by browsers as CRLF) are stored as LF."""

    def to_python(self, value: Any) -> Any:
        value = super().to_python(value)
        return value.replace("\r\n", "\n") if isinstance(value, str) else value


class JSONEditor(forms.JSONField):
    """Any JSON value in a text area, pretty-printed; empty means null."""

    def prepare_value(self, value: Any) -> Any:
        if value is None or isinstance(value, forms.fields.InvalidJSONInput):
            return "" if value is None else value
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else json.dumps(value, ensure_ascii=False, indent=2)


class UTCDateTimeField(forms.DateTimeField):
    """A datetime-local input in UTC; an unchanged input keeps the stored value's microseconds."""

    def has_changed(self, initial: Any, data: Any) -> bool:
        shown = initial.strftime(DATETIME_FORMAT) if isinstance(initial, datetime) else (initial or "")
        # Browsers leave out zero seconds ("10:30" for "10:30:00").
        return (data or "") not in (shown, shown.removesuffix(":00"))


# --- one builder per field type -----------------------------------------------------------------


def create_text_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    max_length = spec.options.get("max_length")
    short = max_length is not None and max_length <= MAX_INLINE_TEXT
    widget = forms.TextInput(attrs={"class": "vTextField"}) if short else forms.Textarea(attrs={"rows": 4})
    return TextField(strip=False, widget=widget, **kwargs)


def create_number_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    attrs = {"step": "1" if spec.options.get("integer") else "any"}
    attrs.update({key: str(spec.options[key]) for key in ("min", "max") if key in spec.options})
    return NumberField(widget=forms.NumberInput(attrs=attrs), **kwargs)


def create_bool_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    kwargs["required"] = False  # unchecked is false, a value
    return forms.BooleanField(**kwargs)


def create_email_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    return forms.EmailField(widget=forms.EmailInput(attrs={"class": "vTextField"}), **kwargs)


def create_url_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    return forms.URLField(assume_scheme="https", widget=forms.URLInput(attrs={"class": "vURLField"}), **kwargs)


def create_date_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"), **kwargs)


def create_datetime_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format=DATETIME_FORMAT)
    kwargs["help_text"] = " ".join(filter(None, [kwargs.get("help_text"), "In UTC."]))
    return UTCDateTimeField(widget=widget, **kwargs)


def create_select_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    choices = [("", "---------"), *((value, value) for value in spec.options["values"])]
    return forms.TypedChoiceField(choices=choices, empty_value=None, **kwargs)


def create_json_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    widget = forms.Textarea(attrs={"rows": 5, "class": "json-editor", "spellcheck": "false"})
    return JSONEditor(widget=widget, **kwargs)


def record_label(record: Record) -> str:
    """A record as a picker shows it: its first text value, then its id."""
    for spec in record.collection.field_specs:
        value = record.data.get(spec.name)
        if spec.type in ("text", "email", "select") and isinstance(value, str) and value.strip():
            text = value if len(value) <= 60 else value[:59] + "…"
            return f"{text} ({record.pk})"
    return record.pk


def user_label(user: Any) -> str:
    full = user.get_full_name().strip()
    return f"{user.get_username()} ({full})" if full else user.get_username()


def create_relation_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    target = spec.options["collection"]

    def label(value: str) -> str:
        record = Record.objects.select_related("collection").filter(pk=value, collection__name=target).first()
        return record_label(record) if record else f"{value} (missing)"

    url = reverse("admin:collections_app_record_lookup", kwargs={"collection": target})
    kwargs["help_text"] = " ".join(filter(None, [kwargs.get("help_text"), f"A record of {target}."]))
    return forms.CharField(widget=Picker(url, label), **kwargs)


def create_user_field(spec: FieldSpec, **kwargs: Any) -> forms.Field:
    def label(value: str) -> str:
        pk = user_pk(value)
        user = get_user_model().objects.filter(pk=pk).first() if pk is not None else None
        return user_label(user) if user else f"{value} (missing)"

    url = reverse("admin:collections_app_record_user_lookup")
    return forms.CharField(widget=Picker(url, label), **kwargs)


FIELD_BUILDERS: dict[str, Callable[..., forms.Field]] = {
    "text": create_text_field,
    "number": create_number_field,
    "bool": create_bool_field,
    "email": create_email_field,
    "url": create_url_field,
    "date": create_date_field,
    "datetime": create_datetime_field,
    "select": create_select_field,
    "json": create_json_field,
    "relation": create_relation_field,
    "user": create_user_field,
}


def form_field(spec: FieldSpec) -> forms.Field:
    help_text = "Hidden: shown only to staff." if spec.hidden else ""
    field = FIELD_BUILDERS[spec.type](spec, required=spec.required, label=spec.name, help_text=help_text)
    if spec.type in ("text", "email", "url", "relation", "user"):
        field.empty_value = None  # an empty box means no value
    return field


# --- the form ------------------------------------------------------------------------------------


def initial_value(spec: FieldSpec, value: Any) -> Any:
    """A stored value as its form field expects it."""
    if value is None:
        return None
    if spec.type == "datetime":
        try:
            return parse_datetime_text(value)
        except ValueError:
            return value
    if spec.type == "date":
        try:
            return date.fromisoformat(value)
        except (TypeError, ValueError):
            return value
    return value


def stored_value(spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class RecordForm(forms.ModelForm):
    """A record of `collection`; `record_values` is what the services store."""

    collection: Collection

    class Meta:
        model = Record
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.specs = {spec.name: spec for spec in self.collection.field_specs}
        self.stored = {} if self.instance._state.adding else dict(self.instance.data)
        for name, spec in self.specs.items():
            self.initial.setdefault(name, initial_value(spec, self.stored.get(name)))
        self.record_values: dict[str, Any] = {}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        values = {}
        for name, spec in self.specs.items():
            if name in self.errors:
                continue
            if not self.instance._state.adding and not self[name]._has_changed():
                value = self.stored.get(name)  # as stored (a datetime to the microsecond, a null bool)
            else:
                value = stored_value(spec, data.get(name))
            if value is not None:
                values[name] = value
        if self.errors:
            return data
        existing = None if self.instance._state.adding else self.instance
        try:
            self.record_values = services.record_check(collection=self.collection, data=values, record=existing)
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
            for key, messages in errors.items():
                self.add_error(key if key in self.fields else None, messages)
        return data


def record_form(collection: Collection) -> type[RecordForm]:
    """A form class for `collection`'s records, with a field per schema field, in schema order."""
    fields = {spec.name: form_field(spec) for spec in collection.field_specs}
    return type(f"{collection.name.title()}RecordForm", (RecordForm,), {**fields, "collection": collection})
