"""Changes -> events, published only after the transaction commits.

Every write through the services (REST, admin, Python code) lands here exactly once: created and
deleted objects and collection changes through the model signals, a record update through the
service's `record_changed` (which carries the record's previous state, so a record leaving a live
query is delivered), `bulk_create` through `records_bulk_created`. A record updated with
`Record.save()` outside the services publishes nothing. A rolled-back transaction runs no
on-commit callback, so it publishes nothing.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from collections_app.models import Collection, Record
from collections_app.serializers import record_representation
from collections_app.signals import record_changed, records_bulk_created
from realtime.bus import get_bus
from realtime.events import (
    COLLECTION_CREATED,
    COLLECTION_DELETED,
    COLLECTION_UPDATED,
    PUBLIC,
    RECORD_CREATED,
    RECORD_DELETED,
    RECORD_UPDATED,
    STAFF,
    CollectionInfo,
    Event,
)


def publish_on_commit(event: Event) -> None:
    """Serialise now (off the event loop); the event is published when the surrounding
    transaction commits (with Redis it is stored in that transaction: see `realtime.models`)."""
    event.body(STAFF)
    event.body(PUBLIC)
    get_bus().publish_on_commit(event)


def record_event(
    event_type: str, record: Record, info: CollectionInfo, previous: dict[str, Any] | None = None
) -> Event:
    """A record event; `previous` is the record as it was before an update."""
    specs = list(info.fields)
    return Event(
        type=event_type,
        collection=info.name,
        record_id=record.id,
        data=record_representation(record.as_dict(), specs, show_hidden=True),
        previous=record_representation(previous, specs, show_hidden=True) if previous is not None else None,
        schema=info,
    )


@receiver(post_save, sender=Record, dispatch_uid="realtime.record_saved")
def record_saved(sender: Any, instance: Record, created: bool, **kwargs: Any) -> None:
    if created:  # updates come with their previous state from `record_changed`
        publish_on_commit(record_event(RECORD_CREATED, instance, CollectionInfo.of(instance.collection)))


@receiver(record_changed, dispatch_uid="realtime.record_changed")
def record_updated(sender: Any, record: Record, previous: dict[str, Any], **kwargs: Any) -> None:
    info = CollectionInfo.of(record.collection)
    publish_on_commit(record_event(RECORD_UPDATED, record, info, previous))


@receiver(post_delete, sender=Record, dispatch_uid="realtime.record_deleted")
def record_deleted(sender: Any, instance: Record, origin: Any = None, **kwargs: Any) -> None:
    if isinstance(origin, Collection):
        return  # deleting a collection sends one collection.deleted, not one event per record
    publish_on_commit(record_event(RECORD_DELETED, instance, CollectionInfo.of(instance.collection)))


@receiver(records_bulk_created, dispatch_uid="realtime.records_bulk_created")
def records_created(sender: Any, collection: Collection, records: list[Record], **kwargs: Any) -> None:
    info = CollectionInfo.of(collection)
    for record in records:
        publish_on_commit(record_event(RECORD_CREATED, record, info))


@receiver(post_save, sender=Collection, dispatch_uid="realtime.collection_saved")
def collection_saved(sender: Any, instance: Collection, created: bool, **kwargs: Any) -> None:
    instance.refresh_schema()
    info = CollectionInfo.of(instance)
    event_type = COLLECTION_CREATED if created else COLLECTION_UPDATED
    publish_on_commit(Event(type=event_type, collection=info.name, record_id=None, data=info.as_dict(), schema=info))


@receiver(post_delete, sender=Collection, dispatch_uid="realtime.collection_deleted")
def collection_deleted(sender: Any, instance: Collection, **kwargs: Any) -> None:
    info = CollectionInfo.of(instance)
    publish_on_commit(
        Event(type=COLLECTION_DELETED, collection=info.name, record_id=None, data=info.as_dict(), schema=info)
    )
