"""Serializers: collections, and records through a serializer built from each collection's schema."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from collections_app.models import RULE_NAMES, Collection, Record
from collections_app.schema import SYSTEM_FIELD_NAMES, FieldSpec, FieldValueError, check_value, is_blank
from collections_app.values import user_pk


def record_representation(
    record: Record | Mapping[str, Any], specs: list[FieldSpec], *, show_hidden: bool
) -> dict[str, Any]:
    """A record as REST shows it: system fields, then every schema field (null when unset).

    Accepts a Record or its `as_dict()` form. Hidden fields are left out unless `show_hidden`.
    """
    flat = record.as_dict() if isinstance(record, Record) else record
    out = {name: flat.get(name) for name in SYSTEM_FIELD_NAMES}
    for spec in specs:
        if show_hidden or not spec.hidden:
            out[spec.name] = flat.get(spec.name)
    return out


# --- record values: one builder per field type --------------------------------------------------


class ValueField(serializers.Field):
    """One schema field's value, validated and normalised by `schema.check_value`."""

    default_error_messages = {"blank": "This field may not be blank."}

    def __init__(self, spec: FieldSpec, **kwargs: Any) -> None:
        self.spec = spec
        super().__init__(**kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        if data == "" and self.spec.required and self.spec.kind == "text":
            self.fail("blank")
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> Any:
        try:
            return check_value(self.spec, data)
        except FieldValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: Any) -> Any:
        return value


def _exists_validator(check: Callable[[str], bool], message: str) -> Callable[[Any], None]:
    def validate(value: Any) -> None:
        if value is not None and not check(value):
            raise serializers.ValidationError(message.format(value=value))

    return validate


def create_relation_field(spec: FieldSpec, **kwargs: Any) -> ValueField:
    target = spec.options["collection"]
    exists = _exists_validator(
        lambda value: Record.objects.filter(pk=value, collection__name=target).exists(),
        f"Record '{{value}}' does not exist in collection '{target}'.",
    )
    return ValueField(spec, validators=[exists], **kwargs)


def _user_exists(value: str) -> bool:
    pk = user_pk(value)
    return pk is not None and get_user_model().objects.filter(pk=pk).exists()


def create_user_field(spec: FieldSpec, **kwargs: Any) -> ValueField:
    return ValueField(spec, validators=[_exists_validator(_user_exists, "User '{value}' does not exist.")], **kwargs)


def create_value_field(spec: FieldSpec, **kwargs: Any) -> ValueField:
    return ValueField(spec, **kwargs)


FIELD_BUILDERS: dict[str, Callable[..., ValueField]] = {
    "relation": create_relation_field,
    "user": create_user_field,
}


class RecordSerializer(serializers.Serializer):
    """Validates a flat record body against `collection`'s schema (context: `collection`)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        collection: Collection | None = self.context.get("collection")
        if collection is None:  # schema generation: the fields depend on the collection
            return {}
        fields = {}
        for spec in collection.field_specs:
            build = FIELD_BUILDERS.get(spec.type, create_value_field)
            fields[spec.name] = build(spec, required=spec.required, allow_null=not spec.required)
        return fields

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError(
                {"non_field_errors": ["Invalid data. Expected a JSON object of field values."]}
            )
        known = self.fields
        errors = {}
        for key in data:
            if key in ("id", "created", "updated", "collection"):
                errors[key] = ["This field is read-only and cannot be written."]
            elif key not in known:
                errors[key] = ["Unknown field."]
        try:
            values = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(exc.detail)
            values = {}
        if errors:
            raise serializers.ValidationError(errors)
        return values

    def to_representation(self, instance: Record) -> dict[str, Any]:
        return record_representation(
            instance, self.context["collection"].field_specs, show_hidden=self.context.get("show_hidden", False)
        )


class ValidatingRecordSerializer(RecordSerializer):
    """The record serializer of writes (validation only), with its fields built once per collection
    version and thread instead of for every request (building them was about 7% of a create).

    The field instances are reused by the next serializer of the same thread, which binds them to
    itself; a thread validates one record at a time, and these fields keep no state of their own
    between validations.
    """

    def get_fields(self) -> dict[str, serializers.Field]:
        collection: Collection | None = self.context.get("collection")
        if collection is None:
            return {}
        key = (collection.id, collection.updated)
        kept = getattr(_kept_fields, "fields", None)
        if kept is None or kept[0] != key:
            kept = _kept_fields.fields = (key, super().get_fields())
        for field in kept[1].values():
            field.source = None  # bound again, to this serializer, under the same name
        return dict(kept[1])


_kept_fields = threading.local()


def check_required(specs: list[FieldSpec], values: Mapping[str, Any]) -> None:
    """Every required field has a value in the record as it will be stored."""
    missing = {
        spec.name: ["This field is required."]
        for spec in specs
        if spec.required and is_blank(spec, values.get(spec.name))
    }
    if missing:
        raise serializers.ValidationError(missing)


# --- collections --------------------------------------------------------------------------------


class RuleField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, allow_blank=True, required=False, trim_whitespace=False, **kwargs)


class CollectionSerializer(serializers.Serializer):
    """Input of collection writes; output is `Collection.as_dict()`. Services validate the schema."""

    id = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200)
    fields = serializers.JSONField(required=False)
    list_rule = RuleField()
    view_rule = RuleField()
    create_rule = RuleField()
    update_rule = RuleField()
    delete_rule = RuleField()
    created = serializers.DateTimeField(read_only=True)
    updated = serializers.DateTimeField(read_only=True)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, Mapping):
            unknown = set(data) - {"name", "fields", *RULE_NAMES, "id", "created", "updated"}
            if unknown:
                raise serializers.ValidationError({key: ["Unknown key."] for key in sorted(unknown)})
        return super().to_internal_value(data)

    def to_representation(self, instance: Collection) -> dict[str, Any]:
        return instance.as_dict()


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


def user_summary(user: Any) -> dict[str, Any]:
    """`{"id" (a string), "username", "name" (full name, else username), "is_staff"}`."""
    return {
        "id": str(user.pk),
        "username": user.get_username(),
        "name": user.get_full_name().strip() or user.get_username(),
        "is_staff": bool(user.is_staff),
    }
