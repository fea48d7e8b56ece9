"""Django admin for collections (fields as rows, rules) and their records (forms from the schema).

Every save and delete goes through `services`, so admin writes are validated like REST writes
and emit the same events.
"""

from django.contrib import admin

from collections_app.admin.collections import CollectionAdmin
from collections_app.admin.records import RecordAdmin
from collections_app.models import Record

admin.site.register(Record, RecordAdmin)

__all__ = ["CollectionAdmin", "RecordAdmin"]
