"""The admin's schema editor: a collection's fields as table rows (a formset), not raw JSON.

Each row is one field: name, type, required, unique, hidden and its options (a small JSON box).
The rows become the `fields` list the services validate; their errors are put back on the row
and column they name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms

from collections_app.schema import FIELD_TYPES

# Where the schema's messages point: "fields[2].options: ..." or "fields[2]: ...".
ROW_MESSAGE = re.compile(r"^fields\[(\d+)\](?:\.(\w+))?: (.*)$", re.DOTALL)
# Messages about stored records name the field: "... field 'price' value ...".
NAMED_FIELD = re.compile(r"field '([a-z][a-z0-9_]*)'")
OPTION_HINTS = {
    "text": '{"max_length": 200, "pattern": "^[a-z]+$"}',
    "number": '{"min": 0, "max": 100, "integer": true}',
    "select": '{"values": ["draft", "published"]}',
    "relation": '{"collection": "posts"}',
    "any type but json": '{"indexed": true}',
}


class JSONText(forms.JSONField):
    """A JSON value in a text box; empty for null (never the text `null`)."""

    def prepare_value(self, value: Any) -> Any:
        if value is None or value == {}:
            return ""
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False)


class FieldRowForm(forms.Form):
    name = forms.CharField(
        max_length=63,
        widget=forms.TextInput(attrs={"size": 16, "spellcheck": "false", "autocomplete": "off"}),
    )
    type = forms.ChoiceField(choices=[(name, name) for name in FIELD_TYPES], initial="text")
    required = forms.BooleanField(required=False)
    unique = forms.BooleanField(required=False)
    hidden = forms.BooleanField(required=False, help_text="Shown only to staff.")
    options = JSONText(
        required=False,
        widget=forms.Textarea(attrs={"rows": 1, "cols": 34, "class": "field-options", "spellcheck": "false"}),
        help_text="A JSON object, e.g. " + "; ".join(f"{t}: {hint}" for t, hint in OPTION_HINTS.items()),
    )

    def definition(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "name": data["name"],
            "type": data["type"],
            "required": data["required"],
            "unique": data["unique"],
            "hidden": data["hidden"],
            "options": data["options"] if data["options"] is not None else {},
        }


class BaseFieldRowFormSet(forms.BaseFormSet):
    """The rows of a collection's fields, in order; blank rows and rows marked deleted are left out."""

    def kept_forms(self) -> list[FieldRowForm]:
        return [
            form
            for form in self.forms
            if form.has_changed() or form in self.initial_forms
            if not (self.can_delete and self._should_delete_form(form))
        ]

    def definitions(self) -> list[dict[str, Any]]:
        """The `fields` list the rows describe (call after `is_valid()`)."""
        return [form.definition() for form in self.kept_forms()]

    def place_errors(self, messages: Iterable[str]) -> list[str]:
        """Put the schema's messages on the rows (and columns) they name; return the others."""
        kept = self.kept_forms()
        by_name = {form.cleaned_data.get("name"): form for form in kept if hasattr(form, "cleaned_data")}
        unplaced = []
        for message in messages:
            if (match := ROW_MESSAGE.match(message)) and int(match[1]) < len(kept):
                form, column, text = kept[int(match[1])], match[2], match[3]
                form.add_error(column if column in form.fields else None, text)
            elif (match := NAMED_FIELD.search(message)) and match[1] in by_name:
                by_name[match[1]].add_error(None, message)
            else:
                unplaced.append(message)
        return unplaced


FieldRowFormSet = forms.formset_factory(
    FieldRowForm, formset=BaseFieldRowFormSet, extra=1, can_delete=True, max_num=200, validate_max=True
)


def initial_rows(fields: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A collection's stored fields as the rows' initial values."""
    return [
        {
            "name": field["name"],
            "type": field["type"],
            "required": field.get("required", False),
            "unique": field.get("unique", False),
            "hidden": field.get("hidden", False),
            "options": field.get("options") or {},
        }
        for field in fields
    ]
