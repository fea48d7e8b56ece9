"""Signals for writes that send no model signals of their own."""

from django.dispatch import Signal

# Sent inside the transaction of `services.records_bulk_create`: kwargs `collection`, `records`.
records_bulk_created = Signal()
