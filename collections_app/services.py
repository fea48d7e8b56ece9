"""Writes. REST views, the admin and Python code change collections and records only here.

Each function runs in a transaction and announces what it changed with a signal, which other
apps turn into events once the transaction commits: model signals for created and deleted
objects, `collections_app.signals.record_changed` for a record update (with the record's previous
state) and `records_bulk_created` for `records_bulk_create` (`bulk_create` sends no model signals).

`user=None` means a trusted caller (Python code): no access rule is checked. Otherwise the
collection's rules apply: Http404 when the caller may not view the record, PermissionDenied when
a rule does not hold.

Invalid input raises Django's `ValidationError` with a `{"field": ["message"]}` dict; the API
layer and the admin translate it for their callers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.http import Http404
from django.utils import timezone
from rest_framework import serializers

from collections_app import indexes, signals
from collections_app.models import RULE_NAMES, Collection, Record, UniqueValue
from collections_app.rules import rule_condition, validate_rules
from collections_app.schema import FieldSpec, FieldValueError, check_name, check_value, parse_fields, unique_key
from collections_app.serializers import ValidatingRecordSerializer, check_required
from collections_app.values import user_pk

MAX_REPORTED = 5


# --- collections -------------------------------------------------------------------------------


def _validate_definition(
    *, name: Any, fields: Any, rules: Mapping[str, Any], instance: Collection | None
) -> list[FieldSpec]:
    errors: dict[str, list[str]] = {}
    if message := check_name(name, "Collection name"):
        errors["name"] = [message]
    elif Collection.objects.filter(name=name).exclude(pk=getattr(instance, "pk", None)).exists():
        errors["name"] = [f"A collection named '{name}' already exists."]
    elif instance is not None and name != instance.name and (users := _relation_sources(instance.name)):
        errors["name"] = [f"Cannot rename: relation fields point to this collection ({', '.join(users)})."]
    for rule in RULE_NAMES:
        if rules.get(rule) is not None and not isinstance(rules[rule], str):
            errors[rule] = ["Must be a string or null."]
    try:
        specs = parse_fields(fields)
    except ValidationError as exc:
        errors.update(exc.message_dict)
        specs = []
    targets = {s.options["collection"] for s in specs if s.type == "relation"} - {name}
    known = set(Collection.objects.filter(name__in=targets).values_list("name", flat=True))
    for target in sorted(targets - known):
        errors.setdefault("fields", []).append(f"Relation target collection '{target}' does not exist.")
    if "fields" not in errors:
        try:
            validate_rules({r: rules.get(r) for r in RULE_NAMES if r not in errors}, {s.name: s for s in specs})
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    return specs


def _relation_sources(target: str) -> list[str]:
    """Names of the fields (`collection.field`) that relate to collection `target`."""
    return [
        f"{collection.name}.{spec.name}"
        for collection in Collection.objects.all()
        for spec in collection.field_specs
        if spec.type == "relation" and spec.options.get("collection") == target and collection.name != target
    ]


def collection_check(
    *, collection: Collection | None, name: Any, fields: Any, rules: Mapping[str, Any]
) -> list[FieldSpec]:
    """Validate a collection definition (and, for a change, its stored records) without writing.

    Raises ValidationError. Services call it; the admin calls it to show errors on its form.
    """
    specs = _validate_definition(name=name, fields=fields, rules=rules, instance=collection)
    if collection is not None:
        _check_stored_records(collection, collection.field_specs, specs)
        _check_unique_candidates(collection, collection.field_specs, specs)
    return specs


@transaction.atomic
def collection_create(
    *,
    name: str,
    fields: list[dict[str, Any]] | None = None,
    list_rule: str | None = None,
    view_rule: str | None = None,
    create_rule: str | None = None,
    update_rule: str | None = None,
    delete_rule: str | None = None,
) -> Collection:
    """Create a collection; rules left out are null (staff only)."""
    rules = {
        "list_rule": list_rule,
        "view_rule": view_rule,
        "create_rule": create_rule,
        "update_rule": update_rule,
        "delete_rule": delete_rule,
    }
    specs = collection_check(collection=None, name=name, fields=[] if fields is None else fields, rules=rules)
    collection = Collection(name=name, fields=[s.as_dict() for s in specs], **rules)
    collection.save()
    indexes.sync_indexes(collection.pk, specs)
    return collection


@transaction.atomic
def collection_update(*, collection: Collection, changes: Mapping[str, Any]) -> Collection:
    """Replace the given top-level keys (`name`, `fields`, rules); `fields` is replaced whole.

    Rejected (ValidationError) when a stored record would break the new schema.
    """
    unknown = set(changes) - {"name", "fields", *RULE_NAMES}
    if unknown:
        raise ValidationError({key: ["Unknown key."] for key in sorted(unknown)})
    if "fields" in changes:  # before the row lock (see collections_app.indexes); a refusal rolls it back
        indexes.sync_for_definition(collection.pk, changes["fields"])
    locked = Collection.objects.select_for_update().get(pk=collection.pk)
    name = changes.get("name", locked.name)
    fields = changes.get("fields", locked.fields)
    rules = {rule: changes.get(rule, getattr(locked, rule)) for rule in RULE_NAMES}
    specs = collection_check(collection=locked, name=name, fields=fields, rules=rules)
    _rebuild_unique_values(locked, locked.field_specs, specs)
    locked.name = name
    locked.fields = [s.as_dict() for s in specs]
    for rule, value in rules.items():
        setattr(locked, rule, value)
    locked.save()
    locked.refresh_schema()
    return locked


def _changed_specs(old: list[FieldSpec], new: list[FieldSpec]) -> list[FieldSpec]:
    """Fields whose stored values must be re-validated: new ones, or with new type/options/flags."""
    before = {s.name: s for s in old}
    return [
        s
        for s in new
        if s.name not in before
        or (before[s.name].type, before[s.name].value_options, before[s.name].required)
        != (s.type, s.value_options, s.required)
    ]


def _check_stored_records(collection: Collection, old: list[FieldSpec], new: list[FieldSpec]) -> None:
    changed = _changed_specs(old, new)
    if not changed:
        return
    problems: list[str] = []
    references: dict[str, set[str]] = {}
    for record_id, data in collection.records.values_list("id", "data").iterator(chunk_size=2000):
        for spec in changed:
            value = data.get(spec.name)
            if value is None:
                if spec.required:
                    problems.append(f"record {record_id} has no value for required field '{spec.name}'")
                continue
            try:
                normalized = check_value(spec, value)
            except FieldValueError as exc:
                problems.append(f"record {record_id}: field '{spec.name}' value {value!r} does not fit: {exc}")
                continue
            if normalized != value or type(normalized) is not type(value):
                problems.append(f"record {record_id}: field '{spec.name}' value {value!r} is not a {spec.type}")
            elif spec.type in ("relation", "user"):
                references.setdefault(spec.name, set()).add(value)
        if len(problems) > MAX_REPORTED:
            break
    for spec in changed:
        missing = _missing_references(spec, references.get(spec.name, set()))
        problems.extend(f"field '{spec.name}': '{value}' does not exist" for value in sorted(missing)[:MAX_REPORTED])
    if problems:
        raise ValidationError(
            {"fields": [f"Stored records do not fit the new schema: {p}." for p in problems[:MAX_REPORTED]]}
        )


def _missing_references(spec: FieldSpec, values: set[str]) -> set[str]:
    if not values:
        return set()
    if spec.type == "relation":
        found = Record.objects.filter(collection__name=spec.options["collection"], pk__in=values)
        return values - set(found.values_list("pk", flat=True))
    pks = [pk for pk in map(user_pk, values) if pk is not None]
    found = {str(pk) for pk in get_user_model().objects.filter(pk__in=pks).values_list("pk", flat=True)}
    return values - found


def _newly_unique(old: list[FieldSpec], new: list[FieldSpec]) -> tuple[set[str], list[FieldSpec]]:
    """(names whose unique values are kept as stored, fields whose unique values must be built)."""
    before = {s.name: s for s in old}
    keep = {
        s.name for s in new if s.unique and s.name in before and before[s.name].unique and before[s.name].type == s.type
    }
    return keep, [s for s in new if s.unique and s.name not in keep]


def _unique_rows(collection: Collection, spec: FieldSpec) -> list[UniqueValue]:
    rows, seen = [], set()
    for record_id, data in collection.records.values_list("id", "data").iterator(chunk_size=2000):
        key = unique_key(spec, data.get(spec.name))
        if key is None:
            continue
        if key in seen:
            raise ValidationError({"fields": [f"Field '{spec.name}' cannot be unique: stored records repeat {key!r}."]})
        seen.add(key)
        rows.append(
            UniqueValue(collection=collection, record_id=record_id, field=spec.name, value_hash=UniqueValue.hash(key))
        )
    return rows


def _check_unique_candidates(collection: Collection, old: list[FieldSpec], new: list[FieldSpec]) -> None:
    for spec in _newly_unique(old, new)[1]:
        _unique_rows(collection, spec)


def _rebuild_unique_values(collection: Collection, old: list[FieldSpec], new: list[FieldSpec]) -> None:
    keep, build = _newly_unique(old, new)
    UniqueValue.objects.filter(collection=collection).exclude(field__in=keep).delete()
    for spec in build:
        try:
            with transaction.atomic():
                UniqueValue.objects.bulk_create(_unique_rows(collection, spec), batch_size=1000)
        except IntegrityError:
            raise ValidationError(
                {"fields": [f"Field '{spec.name}' cannot be unique: stored records repeat a value."]}
            ) from None


@transaction.atomic
def collection_delete(*, collection: Collection) -> None:
    """Delete a collection and its records; one `collection.deleted` event, none per record."""
    if users := _relation_sources(collection.name):
        raise ValidationError({"detail": [f"Relation fields point to this collection: {', '.join(users)}."]})
    indexes.drop_indexes(collection.pk)
    # Raw deletes send no per-record signals (and skip loading every record into memory).
    UniqueValue.objects.filter(collection=collection)._raw_delete(UniqueValue.objects.db)
    Record.objects.filter(collection=collection)._raw_delete(Record.objects.db)
    collection.delete()


# --- records -----------------------------------------------------------------------------------


def _django_error(exc: serializers.ValidationError) -> ValidationError:
    """The record serializer's error as Django's, with the same fields and messages."""
    detail = exc.detail
    return ValidationError(detail if isinstance(detail, dict) else {"non_field_errors": detail})


def validate_record_values(collection: Collection, data: Any, *, partial: bool) -> dict[str, Any]:
    """Field values of a request body checked against the schema (ValidationError if bad)."""
    serializer = ValidatingRecordSerializer(data=data, partial=partial, context={"collection": collection})
    if not serializer.is_valid():
        raise _django_error(serializers.ValidationError(serializer.errors))
    return dict(serializer.validated_data)


def _check_required(collection: Collection, values: Mapping[str, Any]) -> None:
    try:
        check_required(collection.field_specs, values)
    except serializers.ValidationError as exc:
        raise _django_error(exc) from None


def record_check(*, collection: Collection, data: Any, record: Record | None = None) -> dict[str, Any]:
    """Validate a full record body without writing (the admin shows these errors on its form)."""
    values = validate_record_values(collection, data, partial=False)
    _check_required(collection, values)
    for spec in collection.field_specs:
        key = unique_key(spec, values.get(spec.name)) if spec.unique else None
        taken = UniqueValue.objects.filter(
            collection=collection, field=spec.name, value_hash=UniqueValue.hash(key or "")
        )
        if key is not None and taken.exclude(record_id=getattr(record, "pk", None)).exists():
            raise ValidationError({spec.name: ["A record with this value already exists."]})
    return values


def _require(condition: Any, *, not_found: bool = False) -> None:
    if condition is None or condition is False:
        raise (
            Http404("Record not found.")
            if not_found
            else PermissionDenied("The collection's rule does not allow this.")
        )


def _allowed(collection: Collection, rule: str, user: Any, record: Record) -> bool:
    condition = rule_condition(collection, rule, user)
    return condition is not None and condition.matches(record.as_dict())


def _sync_unique_values(collection: Collection, record: Record, *, replace: bool) -> None:
    specs = [s for s in collection.field_specs if s.unique]
    if replace:
        UniqueValue.objects.filter(record=record).delete()
    for spec in specs:
        key = unique_key(spec, record.data.get(spec.name))
        if key is None:
            continue
        try:
            with transaction.atomic():
                UniqueValue.objects.create(
                    collection=collection, record=record, field=spec.name, value_hash=UniqueValue.hash(key)
                )
        except IntegrityError:
            raise ValidationError({spec.name: ["A record with this value already exists."]}) from None


def record_create(*, collection: Collection, data: Any, user: Any = None) -> Record:
    """Validate and store a new record; `user` (when given) must pass the create rule."""
    if user is not None:
        _require(rule_condition(collection, "create_rule", user))
    values = validate_record_values(collection, data, partial=False)
    with transaction.atomic():
        record = Record(collection=collection, data=values)
        record.insert()
        _sync_unique_values(collection, record, replace=False)
        if user is not None:
            _require(_allowed(collection, "create_rule", user, record))
    return record


def _locked(record: Record) -> Record:
    try:
        current = record.collection.records.select_for_update().get(pk=record.pk)
    except Record.DoesNotExist:
        raise Http404("Record not found.") from None
    current.collection = record.collection
    return current


def record_update(*, record: Record, data: Any, user: Any = None, partial: bool = False) -> Record:
    """PUT (partial=False) replaces every field value; PATCH (partial=True) merges the given ones."""
    collection = record.collection
    with transaction.atomic():
        current = _locked(record)
        if user is not None:
            _require(_allowed(collection, "view_rule", user, current), not_found=True)
            _require(_allowed(collection, "update_rule", user, current))
        values = validate_record_values(collection, data, partial=partial)
        new_data = {**current.data, **values} if partial else values
        _check_required(collection, new_data)
        previous = current.as_dict()
        current.data = new_data
        current.save()
        _sync_unique_values(collection, current, replace=True)
        if user is not None:
            _require(_allowed(collection, "update_rule", user, current))
        signals.record_changed.send(sender=Record, record=current, previous=previous)
    return current


def record_delete(*, record: Record, user: Any = None) -> None:
    collection = record.collection
    with transaction.atomic():
        current = _locked(record)
        if user is not None:
            _require(_allowed(collection, "view_rule", user, current), not_found=True)
            _require(_allowed(collection, "delete_rule", user, current))
        current.delete()


def records_bulk_create(*, collection: Collection, rows: Iterable[Any]) -> list[Record]:
    """Create many records in one transaction (trusted callers); publishes one event per record."""
    now = timezone.now()
    records = [
        Record(
            collection=collection, data=validate_record_values(collection, row, partial=False), created=now, updated=now
        )
        for row in rows
    ]
    with transaction.atomic():
        Record.objects.bulk_create(records, batch_size=500)
        for record in records:
            _sync_unique_values(collection, record, replace=False)
        signals.records_bulk_created.send(sender=Record, collection=collection, records=records)
    return records
