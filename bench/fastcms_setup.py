"""Prepare a FastCMS database for the benchmark (run by `bench.targets` in a subprocess, after `migrate`).

Creates (idempotently) the staff user `bench` with a token, and the collections named on the
command line, each with the fields in FIELDS, readable by everyone (list and view rule `""`) and
writable by staff only. Prints one JSON line: `{"token": "<key>"}`.

Usage: `python -m bench.fastcms_setup bench other_0 other_1 ...` with the bench's DATABASE_URL.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

FIELDS: list[dict[str, Any]] = [
    {"name": "seq", "type": "number", "options": {"integer": True}},
    {"name": "sent_at", "type": "number"},
    {"name": "topic", "type": "text"},
    {"name": "payload", "type": "text"},
]
USERNAME = "bench"


def main(names: list[str]) -> None:
    """Create the user, its token and the collections `names`; print the token as JSON."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fastcms.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from collections_app import services
    from collections_app.models import Collection

    user, _ = get_user_model().objects.get_or_create(
        username=USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=user)
    for name in names:
        if not Collection.objects.filter(name=name).exists():
            services.collection_create(name=name, fields=FIELDS, list_rule="", view_rule="")
    print(json.dumps({"token": token.key}))


if __name__ == "__main__":
    main(sys.argv[1:])
