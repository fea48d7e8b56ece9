"""The admin's rule editor: staff only (null), everyone (""), or a query, without losing typed text.

A rule is edited as a choice and a text box. Text typed beside "Staff only" or "Everyone" is never
dropped silently: the page's script switches the choice to the query as soon as one is typed, and
the form refuses a choice that contradicts the text.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from django.utils.safestring import mark_safe

STAFF_ONLY, EVERYONE, QUERY = "staff", "everyone", "query"
CHOICE_LABELS = {STAFF_ONLY: "Staff only (null)", EVERYONE: 'Everyone ("")', QUERY: "When this query holds:"}


class RuleWidget(forms.MultiWidget):
    template_name = "admin/collections_app/rule_widget.html"

    def __init__(self) -> None:
        super().__init__(
            [
                forms.Select(choices=list(CHOICE_LABELS.items()), attrs={"class": "rule-mode"}),
                forms.TextInput(
                    attrs={
                        "class": "vLargeTextField rule-query",
                        "spellcheck": "false",
                        "autocomplete": "off",
                        "placeholder": "owner = @request.auth.id",
                    }
                ),
            ]
        )

    def decompress(self, value: str | None) -> list[Any]:
        if value is None:
            return [STAFF_ONLY, ""]
        return [EVERYONE, ""] if value.strip(" ") == "" else [QUERY, value]


class RuleField(forms.MultiValueField):
    """A rule as the admin edits it; refuses a query typed beside "Staff only" or "Everyone"."""

    widget = RuleWidget

    def __init__(self, **kwargs: Any) -> None:
        fields = (
            forms.ChoiceField(choices=list(CHOICE_LABELS.items())),
            forms.CharField(required=False, strip=False),
        )
        super().__init__(fields, require_all_fields=False, required=False, **kwargs)

    def compress(self, data_list: list[Any]) -> str | None:
        mode, text = [*data_list, STAFF_ONLY, ""][:2] if data_list else (STAFF_ONLY, "")
        text = text or ""
        if mode == QUERY:
            if not text.strip():
                raise ValidationError("Enter the query, or choose “Staff only” or “Everyone”.")
            return text
        if text.strip():
            chosen = CHOICE_LABELS.get(mode, mode)
            raise ValidationError(
                f"A query is typed but “{chosen}” is chosen: choose “When this query holds” to use the "
                "query, or clear the text."
            )
        return "" if mode == EVERYONE else None


def rule_badge(value: str | None) -> str:
    """A rule at a glance: a badge for staff only or everyone, the expression otherwise."""
    if value is None:
        return mark_safe('<span class="rule-badge rule-staff" title="null: staff only">staff only</span>')
    if value.strip(" ") == "":
        return mark_safe('<span class="rule-badge rule-everyone" title="&quot;&quot;: everyone">everyone</span>')
    shown = value if len(value) <= 80 else value[:79] + "…"
    return format_html('<code class="rule-badge rule-query" title="{}">{}</code>', value, shown)
