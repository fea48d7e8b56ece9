"""Events and their Server-Sent Events framing.

An event is serialised once per distinct visible form (staff, public, id-only) and schema
version, never once per subscriber. Its JSON is built without the id, which is spliced in front
when the id is known, so the publishing thread can do the serialising before the bus assigns ids.
An event caches the forms of one schema version at a time (the newest asked for), so its caches
stay bounded however often its collection changes; `footprint` estimates what it holds.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collections_app.models import RULE_NAMES, Collection
from collections_app.schema import FieldSpec, load_fields
from collections_app.serializers import record_representation
from collections_app.values import format_datetime

RECORD_CREATED, RECORD_UPDATED, RECORD_DELETED = "record.created", "record.updated", "record.deleted"
COLLECTION_CREATED, COLLECTION_UPDATED, COLLECTION_DELETED = (
    "collection.created",
    "collection.updated",
    "collection.deleted",
)
USER_JOINED, USER_LEFT = "user.joined", "user.left"
# Internal: a user's credentials changed; every process ends that user's open streams. Never sent to
# or replayed for a client. data: {"user_id": "<id>"}.
AUTH_REVOKED = "auth.revoked"
RECORD_TYPES = frozenset({RECORD_CREATED, RECORD_UPDATED, RECORD_DELETED})
COLLECTION_TYPES = frozenset({COLLECTION_CREATED, COLLECTION_UPDATED, COLLECTION_DELETED})
PRESENCE_TYPES = frozenset({USER_JOINED, USER_LEFT})
INTERNAL_TYPES = frozenset({AUTH_REVOKED})

# The visible forms of a record event's data.
STAFF, PUBLIC, ID_ONLY = "staff", "public", "id"


def now_iso() -> str:
    return format_datetime(datetime.now(UTC))


# One encoder for every event: `json.dumps` with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


# What a parsed JSON item costs beyond its text: the object and its slot in a list or dict.
ITEM_COST = 64
# An event's fixed cost: the object, its cache dicts, its id and timestamp, a history entry.
EVENT_COST = 1024


def parsed_size(text: str | bytes) -> int:
    """An estimate of the memory a JSON text takes once parsed: its size, plus ITEM_COST for every
    item (each `,` `:` `[` counts one) and three for every object (`{`: a dict is larger).

    Cheap (four scans in C, a few ms for 2 MB). Measured on 2 MB documents of every shape it is 1x
    (long strings) to 8x (long lists of `true` or small numbers) the real size; on random small
    documents never below 0.8x. An estimate from the serialised text, not a measurement: walking
    the objects would cost more than serialising them.
    """
    if isinstance(text, str):
        items = text.count(",") + text.count(":") + text.count("[") + 3 * text.count("{")
        return sys.getsizeof(text) + ITEM_COST * items
    items = text.count(b",") + text.count(b":") + text.count(b"[") + 3 * text.count(b"{")
    return len(text) + ITEM_COST * items


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
    has_hidden: bool = field(init=False, hash=False, compare=False)

    def __post_init__(self) -> None:
        # Without hidden fields the public form of a record is the staff form: built and kept once.
        object.__setattr__(self, "has_hidden", any(spec.hidden for spec in self.fields))

    @classmethod
    def of(cls, collection: Collection) -> CollectionInfo:
        specs = tuple(load_fields(collection.fields))
        return shared(
            cls(
                id=collection.id,
                name=collection.name,
                version=format_datetime(collection.updated),
                fields=specs,
                created=format_datetime(collection.created),
                field_map={spec.name: spec for spec in specs},
                **{rule: getattr(collection, rule) for rule in RULE_NAMES},
            )
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectionInfo:
        """The inverse of `as_dict` (events crossing processes carry their collection)."""
        specs = tuple(load_fields(data["fields"]))
        return shared(
            cls(
                id=data["id"],
                name=data["name"],
                version=data["updated"],
                fields=specs,
                created=data["created"],
                field_map={spec.name: spec for spec in specs},
                **{rule: data.get(rule) for rule in RULE_NAMES},
            )
        )

    def same_as(self, other: CollectionInfo) -> bool:
        """Whether `other` describes the same version of the same collection, field for field."""
        return (
            self.id == other.id
            and self.version == other.version
            and self.name == other.name
            and self.created == other.created
            and self.fields == other.fields
            and all(getattr(self, rule) == getattr(other, rule) for rule in RULE_NAMES)
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


_shared_infos: dict[str, CollectionInfo] = {}  # collection id -> its newest info built here
MAX_SHARED_INFOS = 1024


def shared(info: CollectionInfo) -> CollectionInfo:
    """An equal info built before, else `info` (kept for the next): the events of one collection
    version share one schema object instead of holding a copy each."""
    known = _shared_infos.get(info.id)
    if known is not None and known.same_as(info):
        return known
    if len(_shared_infos) >= MAX_SHARED_INFOS and info.id not in _shared_infos:
        _shared_infos.clear()  # deleted collections' entries: start over rather than grow
    _shared_infos[info.id] = info
    return info


def _cache(cache: dict[tuple[str, str], Any], key: tuple[str, str], value: Any) -> None:
    """Keep `value` under (form, version), dropping the forms of any other schema version."""
    if cache and next(iter(cache))[1] != key[1]:
        cache.clear()
    cache[key] = value


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

    def _key(self, form: str, schema: CollectionInfo | None) -> tuple[str, str]:
        if form == PUBLIC and (schema is None or not schema.has_hidden or self.type not in RECORD_TYPES):
            form = STAFF  # the same JSON: one copy serves both
        return (form, schema.version if schema else "")

    def body(self, form: str = PUBLIC, schema: CollectionInfo | None = None) -> str:
        """The JSON envelope without its id (cached per form, for one schema version at a time)."""
        schema = schema or self.schema
        key = self._key(form, schema)
        body = self.bodies.get(key)
        if body is None:
            envelope = {
                "type": self.type,
                "collection": self.collection,
                "record_id": self.record_id,
                "data": self.payload(key[0], schema),
                "timestamp": self.timestamp,
            }
            body = dumps(envelope)
            _cache(self.bodies, key, body)
        return body

    def frame(self, form: str = PUBLIC, schema: CollectionInfo | None = None) -> bytes:
        """The SSE message: `id:`, `event:` and one `data:` line (cached as `body` is)."""
        schema = schema or self.schema
        key = self._key(form, schema)
        frame = self.frames.get(key)
        if frame is None:
            body = self.body(key[0], schema)
            envelope = '{"id":' + dumps(self.id) + "," + body[1:]
            frame = f"id: {self.id}\nevent: {self.type}\ndata: {envelope}\n\n".encode()
            _cache(self.frames, key, frame)
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

    def footprint(self, wire: str | bytes | None = None) -> int:
        """An estimate of the bytes this event holds while kept: its parsed data and previous state,
        and its serialised bodies plus as much again for the frames built from them.

        `wire` is the text the event was parsed from (another process's event): its bodies are
        not built yet, and will be about as large. Otherwise the bodies are built now if none is
        (the serialising is needed for delivery anyway). The schema is not counted: events of one
        collection version share it.
        """
        if wire is not None:
            return EVENT_COST + parsed_size(wire) + 2 * len(wire)
        if not self.bodies:
            self.body()
        bodies = {id(body): body for body in self.bodies.values()}.values()
        size = EVENT_COST + parsed_size(max(bodies, key=len))  # the widest body holds all of `data`
        size += 2 * sum(sys.getsizeof(body) for body in bodies)
        if self.previous is not None:
            size += _previous_size(self.previous, self.data)
        return size

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


def _previous_size(previous: dict[str, Any], data: dict[str, Any]) -> int:
    """The memory of an update's previous state beyond the values it shares with the new one."""
    size = sys.getsizeof(previous)
    for name, value in previous.items():
        if value is None or isinstance(value, bool) or value is data.get(name):
            continue  # a singleton, or the very object the new record holds (a field not changed)
        if isinstance(value, str):
            size += sys.getsizeof(value)
        elif isinstance(value, (dict, list)):
            size += parsed_size(dumps(value))
        else:
            size += ITEM_COST
    return size


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
