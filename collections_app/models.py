"""Collections (a schema and access rules) and their records (values in a JSONField)."""

from __future__ import annotations

import hashlib
import secrets
import string
from functools import cached_property
from typing import Any

from django.db import models
from django.utils import timezone

from collections_app.prepared import PreparedInsert
from collections_app.schema import FieldSpec, load_fields
from collections_app.values import format_datetime

ID_ALPHABET = string.ascii_lowercase + string.digits
ID_LENGTH = 15
RULE_NAMES = ("list_rule", "view_rule", "create_rule", "update_rule", "delete_rule")


def new_id() -> str:
    """15 random characters from [a-z0-9]."""
    # One call for all the randomness, not one per character; 128 bits make the modulo bias nil.
    number = secrets.randbits(128) % 36**ID_LENGTH
    chars = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(ID_ALPHABET[digit])
    return "".join(chars)


def stamp(instance: Collection | Record) -> None:
    """`updated` = now on every save; on the first save `created` too, at the same instant."""
    if instance._state.adding:
        instance.created = instance.created or timezone.now()
        instance.updated = instance.created
    else:
        instance.updated = timezone.now()


class Collection(models.Model):
    id = models.CharField(primary_key=True, max_length=ID_LENGTH, default=new_id, editable=False)
    name = models.CharField(max_length=63, unique=True)
    fields = models.JSONField(default=list, blank=True)
    # null: staff only; "": everyone; anything else: a query that must hold.
    list_rule = models.TextField(null=True, blank=True, default=None)  # noqa: DJ001 (null means staff only)
    view_rule = models.TextField(null=True, blank=True, default=None)  # noqa: DJ001 (null means staff only)
    create_rule = models.TextField(null=True, blank=True, default=None)  # noqa: DJ001 (null means staff only)
    update_rule = models.TextField(null=True, blank=True, default=None)  # noqa: DJ001 (null means staff only)
    delete_rule = models.TextField(null=True, blank=True, default=None)  # noqa: DJ001 (null means staff only)
    created = models.DateTimeField(editable=False)
    updated = models.DateTimeField(editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        stamp(self)
        super().save(*args, **kwargs)

    @cached_property
    def field_specs(self) -> list[FieldSpec]:
        return load_fields(self.fields)

    @cached_property
    def field_map(self) -> dict[str, FieldSpec]:
        return {spec.name: spec for spec in self.field_specs}

    @property
    def hidden_names(self) -> frozenset[str]:
        return frozenset(spec.name for spec in self.field_specs if spec.hidden)

    def refresh_schema(self) -> None:
        """Forget cached field specs after `fields` changed."""
        self.__dict__.pop("field_specs", None)
        self.__dict__.pop("field_map", None)

    def as_dict(self) -> dict[str, Any]:
        """The collection as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "fields": [spec.as_dict() for spec in self.field_specs],
            **{rule: getattr(self, rule) for rule in RULE_NAMES},
            "created": format_datetime(self.created),
            "updated": format_datetime(self.updated),
        }


class Record(models.Model):
    id = models.CharField(primary_key=True, max_length=ID_LENGTH, default=new_id, editable=False)
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="records")
    data = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(editable=False)
    updated = models.DateTimeField(editable=False)

    class Meta:
        indexes = [models.Index(fields=["collection", "created"], name="record_collection_created")]

    def __str__(self) -> str:
        """`<collection name>/<id>`, as the admin's titles and messages name a record."""
        return f"{self.collection.name}/{self.id}" if self.collection_id else self.id

    def save(self, *args: Any, **kwargs: Any) -> None:
        stamp(self)
        super().save(*args, **kwargs)

    def insert(self) -> None:
        """`save(force_insert=True)` of a new record, faster: the INSERT is compiled once."""
        stamp(self)
        _insert_record(self)

    def as_dict(self, specs: list[FieldSpec] | None = None) -> dict[str, Any]:
        """The record as a flat dict: system fields, then the values of `specs` (default: all data)."""
        values = dict(self.data) if specs is None else {s.name: self.data.get(s.name) for s in specs}
        return {
            "id": self.id,
            "collection": self.collection.name,
            "created": format_datetime(self.created) if self.created else None,
            "updated": format_datetime(self.updated) if self.updated else None,
            **values,
        }


_insert_record = PreparedInsert(Record)


class UniqueValue(models.Model):
    """One value of a `unique` field; the database constraint makes concurrent duplicates fail."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="+")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="unique_values")
    field = models.CharField(max_length=63)
    value_hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "field", "value_hash"], name="unique_field_value")]

    def __str__(self) -> str:
        return f"{self.collection_id}.{self.field}={self.value_hash[:12]}"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()
