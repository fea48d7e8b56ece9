"""The transactional outbox of the Redis event backend.

An event of a database write is stored here in the write's own transaction, so it exists exactly
when the change does; a relay (`realtime.backends.redis_relay`) moves it to the Redis log and
deletes it. Rows left by a worker that died, or kept while Redis was away, are relayed by any
live worker. The in-process backend does not use this table.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """One event waiting to be appended to the Redis log (in id order: a record's commit order)."""

    id = models.BigAutoField(primary_key=True)
    # The log it goes to (`FASTCMS_REDIS_PREFIX`): relays of other deployments sharing the
    # database leave it alone.
    log = models.CharField(max_length=100)
    # Unique across the cluster and across database restores: the log records it so a row relayed
    # twice (the relay died before deleting it) is appended once.
    key = models.CharField(max_length=40)
    type = models.CharField(max_length=40)  # the event's type: record, collection or internal
    payload = models.TextField()  # the event as JSON (`Event.to_wire`)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "outbox event"

    def __str__(self) -> str:
        return f"outbox event {self.id} ({self.key})"
