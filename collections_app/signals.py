"""Signals of the services, for changes that model signals do not describe.

Both are sent inside the write's transaction; receivers that act on committed data defer their
work with `transaction.on_commit`.
"""

from django.dispatch import Signal

# Sent by `services.records_bulk_create` (`bulk_create` sends no model signals): kwargs
# `collection`, `records`.
records_bulk_created = Signal()

# Sent by `services.record_update` once the record is saved: kwargs `record` (as saved) and
# `previous` (the record's `as_dict()` before the update).
record_changed = Signal()
