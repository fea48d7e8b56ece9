"""Load the demo collections (`posts`, `products`, `users`) with a few records. Idempotent."""

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from collections_app import services
from collections_app.models import Collection

PUBLIC_READ = {"list_rule": "", "view_rule": ""}

DEMO: list[dict[str, Any]] = [
    {
        "name": "posts",
        "fields": [
            {"name": "title", "type": "text", "required": True, "options": {"max_length": 200}},
            {"name": "content", "type": "text"},
            {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
            {"name": "author", "type": "text"},
            {"name": "featured", "type": "bool"},
            {"name": "price", "type": "number", "options": {"min": 0}},
        ],
        **PUBLIC_READ,
        "records": [
            {"title": "Hello, FastCMS", "content": "Live data over SSE.", "status": "published", "author": "john"},
            {"title": "Draft ideas", "content": "Not yet.", "status": "draft", "author": "jane"},
            {
                "title": "Live queries",
                "content": "?query=status=published",
                "status": "published",
                "author": "jane",
                "featured": True,
            },
        ],
    },
    {
        "name": "products",
        "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "price", "type": "number", "required": True, "options": {"min": 0}},
            {"name": "active", "type": "bool"},
            {"name": "category", "type": "select", "options": {"values": ["books", "tools", "games"]}},
        ],
        **PUBLIC_READ,
        "records": [
            {"name": "Field guide", "price": 25, "active": True, "category": "books"},
            {"name": "Workbench", "price": 450, "active": True, "category": "tools"},
            {"name": "Board game", "price": 60, "active": False, "category": "games"},
        ],
    },
    {
        "name": "users",
        "fields": [
            {"name": "name", "type": "text", "required": True},
            {"name": "active", "type": "bool"},
        ],
        **PUBLIC_READ,
        "records": [{"name": "John Doe", "active": True}, {"name": "Jane Roe", "active": False}],
    },
]


class Command(BaseCommand):
    help = "Create the demo collections and records unless they already exist."

    def handle(self, *args: Any, **options: Any) -> None:
        for spec in DEMO:
            definition = {key: value for key, value in spec.items() if key != "records"}
            with transaction.atomic():
                if Collection.objects.filter(name=spec["name"]).exists():
                    self.stdout.write(f"{spec['name']}: exists, left as it is")
                    continue
                collection = services.collection_create(**definition)
                for row in spec["records"]:
                    services.record_create(collection=collection, data=row)
            self.stdout.write(f"{spec['name']}: created with {len(spec['records'])} records")
