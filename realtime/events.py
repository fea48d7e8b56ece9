"""Events and their Server-Sent Events framing.

An event is serialised once per distinct visible form (staff, public, id-only) and schema
version, never once per subscriber. Its JSON is built without the id, which is spliced in front
when the id is known, so the publishing thread can do the serialising before the bus assigns ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collections_app.models import RULE_NAMES, Collection
from collections_app.schema import FieldSpec, format_datetime, load_fields
from collections_app.serializers import record_representation

RECORD_CREATED, RECORD_UPDATED, RECORD_DELETED = "record.created", "record.updated", "record.deleted"
COLLECTION_CREATED, COLLECTION_UPDATED, COLLECTION_DELETED = (
    "collection.created",
    "collection.updated",
    "collection.deleted",
)
USER_JOINED, USER_LEFT = "user.joined", "user.left"
RECORD_TYPES = frozenset({RECORD_CREATED, RECORD_UPDATED, RECORD_DELETED})
COLLECTION_TYPES = frozenset({COLLECTION_CREATED, COLLECTION_UPDATED, COLLECTION_DELETED})
PRESENCE_TYPES = frozenset({USER_JOINED, USER_LEFT})

# The visible forms of a record event's data.
STAFF, PUBLIC, ID_ONLY = "staff", "public", "id"


def now_iso() -> str:
    return format_datetime(datetime.now(UTC))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True, eq=False)
class CollectionInfo:
    """What streams need of a collection, frozen at one version: its schema and rules."""

    id: str
    name: str
    version: str  # the collection's `updated`, canonical text: later versions sort later
    fields: tuple[FieldSpec, ...]
    list_rule: str | None
    view_rule: str | None
    create_rule: str | None
    update_rule: str | None
    delete_rule: str | None
    created: str
    field_map: dict[str, FieldSpec] = field(hash=False, compare=False)

    @classmethod
    def of(cls, collection: Collection) -> CollectionInfo:
        specs = tuple(load_fields(collection.fields))
        return cls(
            id=collection.id,
            name=collection.name,
            version=format_datetime(collection.updated),
            fields=specs,
            created=format_datetime(collection.created),
            field_map={spec.name: spec for spec in specs},
            **{rule: getattr(collection, rule) for rule in RULE_NAMES},
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionInfo:
        """The inverse of `as_dict` (events crossing processes carry their collection)."""
        specs = tuple(load_fields(data["fields"]))
        return cls(
            id=data["id"],
            name=data["name"],
            version=data["updated"],
            fields=specs,
            created=data["created"],
            field_map={spec.name: spec for spec in specs},
            **{rule: data.get(rule) for rule in RULE_NAMES},
        )

    def as_dict(self) -> dict[str, Any]:
        """The collection as the REST API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "fields": [spec.as_dict() for spec in self.fields],
            **{rule: getattr(self, rule) for rule in RULE_NAMES},
            "created": self.created,
            "updated": self.version,
        }


@dataclass(slots=True, eq=False)
class Event:
    """One change. `data` is the payload; for record events, the record with every field.

    `schema` is the collection as it was when the change was made (record and collection events);
    `previous` is the record before an update, so a record leaving a live query is delivered.
    """

    type: str
    collection: str | None
    record_id: str | None
    data: dict[str, Any]
    timestamp: str = field(default_factory=now_iso)
    schema: CollectionInfo | None = None
    previous: dict[str, Any] | None = None
    id: str | None = None
    bodies: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    frames: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)

    @property
    def collection_id(self) -> str | None:
        return self.schema.id if self.schema else None

    def payload(self, form: str, schema: CollectionInfo | None) -> dict[str, Any]:
        """`data` as a subscriber sees it: hidden fields only for staff, id only when out of view."""
        if self.type not in RECORD_TYPES or schema is None:
            return self.data
        if form == ID_ONLY:
            return {"id": self.record_id}
        return record_representation(self.data, list(schema.fields), show_hidden=form == STAFF)

    def body(self, form: str = PUBLIC, schema: CollectionInfo | None = None) -> str:
        """The JSON envelope without its id (cached per form and schema version)."""
        schema = schema or self.schema
        key = (form, schema.version if schema else "")
        body = self.bodies.get(key)
        if body is None:
            envelope = {
                "type": self.type,
                "collection": self.collection,
                "record_id": self.record_id,
                "data": self.payload(form, schema),
                "timestamp": self.timestamp,
            }
            body = self.bodies[key] = dumps(envelope)
        return body

    def frame(self, form: str = PUBLIC, schema: CollectionInfo | None = None) -> bytes:
        """The SSE message: `id:`, `event:` and one `data:` line (cached per form and schema)."""
        schema = schema or self.schema
        key = (form, schema.version if schema else "")
        frame = self.frames.get(key)
        if frame is None:
            body = self.body(form, schema)
            envelope = '{"id":' + dumps(self.id) + "," + body[1:]
            frame = self.frames[key] = f"id: {self.id}\nevent: {self.type}\ndata: {envelope}\n\n".encode()
        return frame

    def labelled_frame(
        self, form: str, schema: CollectionInfo | None, labels: tuple[str, ...], left: tuple[str, ...]
    ) -> bytes:
        """The frame of a multiplexed stream: the envelope plus `subscriptions` (the labels it is
        sent for) and `left` (those whose live query, or view, the record has just left).

        Built from the cached body, but not cached itself: label sets are per stream, and an
        event kept in history must not keep one frame per stream (the caller shares frames
        among the streams of one dispatch).
        """
        body = self.body(form, schema)
        extra = f',"subscriptions":{dumps(labels)},"left":{dumps(left)}}}'
        envelope = '{"id":' + dumps(self.id) + "," + body[1:-1] + extra
        return f"id: {self.id}\nevent: {self.type}\ndata: {envelope}\n\n".encode()

    def to_wire(self) -> str:
        """The event as JSON for other processes (without its id, which the log assigns)."""
        return dumps(
            {
                "type": self.type,
                "collection": self.collection,
                "record_id": self.record_id,
                "data": self.data,
                "timestamp": self.timestamp,
                "previous": self.previous,
                "schema": self.schema.as_dict() if self.schema else None,
            }
        )

    @classmethod
    def from_wire(cls, event_id: str, text: str | bytes) -> Event:
        wire = json.loads(text)
        schema = wire.get("schema")
        return cls(
            type=wire["type"],
            collection=wire["collection"],
            record_id=wire["record_id"],
            data=wire["data"],
            timestamp=wire["timestamp"],
            previous=wire.get("previous"),
            schema=CollectionInfo.from_dict(schema) if schema else None,
            id=event_id,
        )


def retry_frame(milliseconds: int) -> bytes:
    return f"retry: {milliseconds}\n\n".encode()


def connected_frame(data: dict[str, Any], collection: str | None, labels: tuple[str, ...] | None = None) -> bytes:
    """`connected` has no `id:` line, so the browser keeps its last event id.

    On a multiplexed stream (`labels` given) its envelope lists every label in `subscriptions`.
    """
    envelope = {
        "id": None,
        "type": "connected",
        "collection": collection,
        "record_id": None,
        "data": data,
        "timestamp": now_iso(),
    }
    if labels is not None:
        envelope["subscriptions"] = list(labels)
        envelope["left"] = []
    return f"event: connected\ndata: {dumps(envelope)}\n\n".encode()


PING_FRAME = b": ping\n\n"
