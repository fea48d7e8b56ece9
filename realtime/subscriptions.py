"""Multiplexed streams: one stream carrying several labelled live queries (`?subscribe=`).

`?subscribe={"posts": {"collection": "posts", "query": "status=published"}, "all": {"collection":
"*", "query": ""}}` opens one stream for every label. Each label is a `Subscription`: it is checked
and matched exactly as a stream of its own would be (its collection's list rule for the caller,
its live query; `"*"` as the all-collections stream), and `LabelIndex` indexes it like one. An
event goes into the queue of the stream that owns the labels once, naming every label it matched.
Ordinary streams never meet this code: the bus looks here only while multiplexed streams exist.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collections_app.query import TRUE, Auth, Condition, Node, QueryError, compile_query, parse
from collections_app.rules import rule_condition_for
from realtime.events import (
    COLLECTION_TYPES,
    ID_ONLY,
    PRESENCE_TYPES,
    PUBLIC,
    RECORD_TYPES,
    RECORD_UPDATED,
    CollectionInfo,
    Event,
)
from realtime.subscribers import CollectionIndex, Subscriber

LABEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_SUBSCRIPTIONS = 20
MAX_SUBSCRIBE_LENGTH = 16384  # longer URLs are refused by the HTTP server before us anyway
ALL = "*"  # the collection of a label that follows every collection, as /api/v1/realtime does
UNDECIDED = object()


class SubscribeError(Exception):
    """A `subscribe` parameter refused before the stream starts, naming the label at fault."""

    def __init__(
        self, detail: str, label: str | None = None, *, status: int = 400, code: str = "invalid_parameter", **extra: Any
    ) -> None:
        super().__init__(detail)
        self.detail = f"subscribe[{label}]: {detail}" if label is not None else f"subscribe: {detail}"
        self.status, self.code = status, code
        self.extra = {**extra, "label": label} if label is not None else extra


# --- the parameter ------------------------------------------------------------------------------


def parse_subscribe(text: str) -> list[tuple[str, str, str]]:
    """`subscribe` as (label, collection, query) in the order given; SubscribeError when malformed.

    A JSON object of 1 to 20 labels (`^[A-Za-z0-9_-]{1,32}$`), each mapping to
    `{"collection": <name or "*">, "query": <query or "">}` (`query` may be left out).
    """
    if len(text) > MAX_SUBSCRIBE_LENGTH:
        raise SubscribeError(f"longer than {MAX_SUBSCRIBE_LENGTH} characters")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise SubscribeError("not valid JSON") from None
    if not isinstance(value, dict):
        raise SubscribeError('must be a JSON object: {"<label>": {"collection": "<name>", "query": "<query>"}}')
    if not value:
        raise SubscribeError("names no subscription")
    if len(value) > MAX_SUBSCRIPTIONS:
        raise SubscribeError(f"at most {MAX_SUBSCRIPTIONS} subscriptions per stream ({len(value)} given)")
    parsed = []
    for label, spec in value.items():
        if not LABEL_RE.match(label):
            raise SubscribeError(f"label {label[:40]!r} must be 1 to 32 letters, digits, '_' or '-'")
        if not isinstance(spec, dict):
            raise SubscribeError('must be an object {"collection": "<name>", "query": "<query>"}', label)
        unknown = sorted(set(spec) - {"collection", "query"})
        if unknown:
            raise SubscribeError(f"unknown key {unknown[0][:40]!r} (expected 'collection' and 'query')", label)
        collection, query = spec.get("collection"), spec.get("query", "")
        if not isinstance(collection, str) or not collection:
            raise SubscribeError('"collection" must be a collection name or "*"', label)
        if query is None:
            query = ""
        if not isinstance(query, str):
            raise SubscribeError('"query" must be a string', label)
        if not (_is_text(collection) and _is_text(query)):
            raise SubscribeError("text must be valid Unicode (no lone surrogates)", label)
        parsed.append((label, collection, query))
    return parsed


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(slots=True)
class LabelPlan:
    """One label of a multiplexed stream, checked: its collection (None for "*") and query."""

    label: str
    collection: CollectionInfo | None
    query: Node | None
    compiled: tuple[Condition | None, Condition] | None = field(default=None)


def check_subscriptions(
    text: str, *, user: Any, auth: Auth, staff: bool, find: Callable[[str], CollectionInfo | None]
) -> list[LabelPlan]:
    """Each label checked as its own stream would be, in order: 404, 400, then 403 (401 anonymous).

    `find` looks a collection up by name (None when there is none).
    """
    plans = []
    for label, name, query_text in parse_subscribe(text):
        info = None if name == ALL else find(name)
        if name != ALL and info is None:
            raise SubscribeError(f"Collection '{name}' not found.", label, status=404, code="not_found")
        try:
            tree = parse(query_text) if query_text else None
            query = compile_query(tree, fields=info.field_map, auth=auth, allow_hidden=staff) if info else None
        except QueryError as exc:
            raise SubscribeError(exc.detail, label, code=exc.code, position=exc.position) from None
        compiled = None
        if info is not None:
            rule = rule_condition_for(info, "list_rule", auth=auth, staff=staff)
            if rule is None:
                if not user.is_authenticated:
                    detail, status, code = "Authentication credentials were not provided.", 401, "not_authenticated"
                else:
                    detail, status, code = "Only staff may list this collection.", 403, "permission_denied"
                raise SubscribeError(detail, label, status=status, code=code)
            compiled = (rule, query)
        plans.append(LabelPlan(label=label, collection=info, query=tree, compiled=compiled))
    return plans


# --- matching -----------------------------------------------------------------------------------


class Subscription(Subscriber):
    """One label of a multiplexed stream: matched like a stream of its own, delivered into `stream`.

    Only its matching half is used (rules, live query, index key, kind); its frames go to the
    queue of `stream`, the `Subscriber` that owns it.
    """

    __slots__ = ("label", "stream")

    def __init__(self, *, stream: Subscriber, plan: LabelPlan) -> None:
        super().__init__(
            client_id=stream.client_id,
            auth=stream.auth,
            staff=stream.staff,
            query=plan.query,
            collection=plan.collection,
            client_key=stream.client_key,
            compiled=plan.compiled,
        )
        self.label = plan.label
        self.stream = stream

    def decide(self, event: Event, info: CollectionInfo) -> tuple[str, bool] | None:
        """(form, left) for a record event, or None when this label must not receive it.

        `left` is true when an update took the record out of this label's live query (or out of
        the caller's view): the client drops it.
        """
        form = self.form_for(event, info)
        if form is None:
            return None
        if form == ID_ONLY:
            return form, True
        if event.type != RECORD_UPDATED:
            return form, False
        rule, query = self.conditions(info)
        record = event.data
        return form, not ((rule is TRUE or (rule is not None and rule.matches(record))) and query.matches(record))

    def decide_other(self, event: Event, info: CollectionInfo | None) -> bool:
        """Whether this label receives a collection or presence event."""
        if event.type in PRESENCE_TYPES:
            return self.collection_id is None
        if info is None or self.collection_id not in (None, info.id):
            return False
        return self.staff or info.list_rule is not None


Hits = dict[Subscriber, tuple[str, list[str], list[str]]]


def _hit(hits: Hits, label: Subscription, form: str, left: bool) -> None:
    """Collect `label` for its stream (a record has one form per stream: one caller, one rule)."""
    hit = hits.get(label.stream)
    if hit is None:
        hit = hits[label.stream] = (form, [], [])
    hit[1].append(label.label)
    if left:
        hit[2].append(label.label)


class LabelIndex:
    """The labels of this process's multiplexed streams: per collection (indexed by required
    equality, as ordinary streams are) and the `"*"` labels."""

    __slots__ = ("by_collection", "everywhere")

    def __init__(self) -> None:
        self.by_collection: dict[str, CollectionIndex] = {}
        self.everywhere: set[Subscription] = set()

    def __bool__(self) -> bool:
        return bool(self.by_collection or self.everywhere)

    def add(self, stream: Subscriber) -> None:
        for label in stream.subscriptions:
            if label.collection_id is None:
                self.everywhere.add(label)
            else:
                self.by_collection.setdefault(label.collection_id, CollectionIndex()).add(label)

    def remove(self, stream: Subscriber) -> None:
        for label in stream.subscriptions:
            self.drop(label)

    def drop(self, label: Subscription) -> None:
        """Forget one label, and take it from its stream's labels."""
        stream = label.stream
        stream.subscriptions = tuple(item for item in stream.subscriptions if item is not label)
        if label.collection_id is None:
            self.everywhere.discard(label)
            return
        index = self.by_collection.get(label.collection_id)
        if index is not None:
            index.discard(label)
            if not index.scan and not index.eq:
                del self.by_collection[label.collection_id]

    def unindex(self, collection_id: str) -> None:
        index = self.by_collection.get(collection_id)
        if index is not None:
            index.unindex()

    def of_collection(self, collection_id: str) -> list[Subscription]:
        index = self.by_collection.get(collection_id)
        return list(index.everyone()) if index is not None else []

    def hits(self, event: Event, info: CollectionInfo | None) -> Hits:
        """Per stream: (form, labels, left labels) of a live event, each label decided once per kind."""
        hits: Hits = {}
        index = self.by_collection.get(info.id) if info is not None else None
        if event.type in RECORD_TYPES and info is not None:
            decided: dict[str, Any] = {}
            candidates: Iterable[Subscription] = index.candidates(event, info) if index else ()
            for label in (*candidates, *self.everywhere):
                decision = decided.get(label.kind, UNDECIDED)
                if decision is UNDECIDED:
                    decision = decided[label.kind] = label.decide(event, info)
                if decision is not None:
                    _hit(hits, label, *decision)
        elif event.type in COLLECTION_TYPES or event.type in PRESENCE_TYPES:
            audience = self.everywhere if index is None else (*index.everyone(), *self.everywhere)
            for label in audience:
                if label.decide_other(event, info):
                    _hit(hits, label, PUBLIC, False)
        return hits


def labelled_frame(
    event: Event,
    form: str,
    info: CollectionInfo | None,
    labels: list[str],
    left: list[str],
    shared: dict[tuple[Any, ...], bytes] | None = None,
) -> bytes:
    """The event's frame for one stream's labels (sorted); `shared` lends the frames of one
    dispatch to every stream with the same labels."""
    key = (form, tuple(sorted(labels)), tuple(sorted(left)))
    frame = shared.get(key) if shared is not None else None
    if frame is None:
        frame = event.labelled_frame(form, info, key[1], key[2])
        if shared is not None:
            shared[key] = frame
    return frame


def replay_frame(stream: Subscriber, event: Event, current: CollectionInfo | None) -> bytes | None:
    """A history event for a multiplexed stream, with its labels as the rules are now (`current`
    is the newest known version of the event's collection)."""
    hits: Hits = {}
    for label in stream.subscriptions:
        if event.type in RECORD_TYPES:
            decision = (
                label.decide(event, current)
                if current is not None and label.collection_id in (None, current.id)
                else None
            )
            if decision is not None:
                _hit(hits, label, *decision)
        elif label.decide_other(event, current):
            _hit(hits, label, PUBLIC, False)
    if not hits:
        return None
    form, labels, left = hits[stream]
    schema = event.schema if event.type in COLLECTION_TYPES else current
    return labelled_frame(event, form, schema, labels, left)
