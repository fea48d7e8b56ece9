"""Changes -> events, published only after the transaction commits.

Every write through the services (REST, admin, Python code) lands here exactly once: created and
deleted objects and collection changes through the model signals, a record update through the
service's `record_changed` (which carries the record's previous state, so a record leaving a live
query is delivered), `bulk_create` through `records_bulk_created`. A record updated with
`Record.save()` outside the services publishes nothing. A rolled-back transaction runs no
on-commit callback, so it publishes nothing.

Credentials: a user saved with another `is_active`, `is_staff`, `is_superuser` or password (the
admin, `set_password()` then `save()`), a user deleted, or a token deleted publishes the internal
`auth.revoked`, on which every process ends that user's open streams; the clients reconnect and
are judged on the new credentials. Changes that bypass `save()` (`QuerySet.update`) revoke
nothing: such streams end at their maximum age.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token, TokenProxy

from collections_app.models import Collection, Record
from collections_app.serializers import record_representation
from collections_app.signals import record_changed, records_bulk_created
from realtime.bus import get_bus
from realtime.events import (
    AUTH_REVOKED,
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


# --- credentials ----------------------------------------------------------------------------------

User = get_user_model()
CREDENTIAL_FIELDS = tuple(name for name in ("is_active", "is_staff", "is_superuser", "password") if hasattr(User, name))
_CHANGED = "_fastcms_credentials_changed"


def revoke_on_commit(user_id: Any) -> None:
    """End the user's open streams in every process once the transaction commits."""
    publish_on_commit(Event(type=AUTH_REVOKED, collection=None, record_id=None, data={"user_id": str(user_id)}))


@receiver(pre_save, sender=User, dispatch_uid="realtime.user_saving")
def user_saving(sender: Any, instance: Any, raw: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if raw or instance._state.adding or (update_fields is not None and not set(update_fields) & set(CREDENTIAL_FIELDS)):
        return  # a fixture, a new user (no stream yet), or a save of other fields (e.g. last_login)
    stored = sender._default_manager.filter(pk=instance.pk).values(*CREDENTIAL_FIELDS).first()
    if stored is not None and any(stored[name] != getattr(instance, name) for name in CREDENTIAL_FIELDS):
        setattr(instance, _CHANGED, True)  # published after the save (post_save), on commit


@receiver(post_save, sender=User, dispatch_uid="realtime.user_saved")
def user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.__dict__.pop(_CHANGED, False):
        revoke_on_commit(instance.pk)


@receiver(post_delete, sender=User, dispatch_uid="realtime.user_deleted")
def user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revoke_on_commit(instance.pk)


@receiver(post_delete, sender=Token, dispatch_uid="realtime.token_deleted")
@receiver(post_delete, sender=TokenProxy, dispatch_uid="realtime.token_proxy_deleted")  # the admin's
def token_deleted(sender: Any, instance: Token, **kwargs: Any) -> None:
    revoke_on_commit(instance.user_id)
