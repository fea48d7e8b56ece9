"""The admin site: Django's, with each collection's records as an entry of its own."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.http import urlencode

# The index and the sidebar list at most this many collections; the "Records" page has them all.
MAX_LISTED = 50


class AdminSite(admin.AdminSite):
    site_header = "FastCMS administration"
    site_title = "FastCMS admin"
    index_title = "Collections and records"

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        """Django's list, plus "Records by collection": one entry per collection, by name."""
        app_list = super().get_app_list(request, app_label)
        if app_label is None and request.user.has_perm("collections_app.view_record"):
            entries = records_by_collection(request.user.has_perm("collections_app.add_record"))
            if entries:
                app_list.append(
                    {
                        "name": "Records by collection",
                        "app_label": "records",
                        "app_url": reverse("admin:collections_app_record_changelist", current_app=self.name),
                        "has_module_perms": True,
                        "models": entries,
                    }
                )
        return app_list


def records_by_collection(can_add: bool) -> list[dict[str, Any]]:
    from collections_app.models import Collection

    changelist = reverse("admin:collections_app_record_changelist")
    add = reverse("admin:collections_app_record_add")
    entries = []
    for name in Collection.objects.order_by("name").values_list("name", flat=True)[:MAX_LISTED]:
        query = urlencode({"collection": name})
        entries.append(
            {
                "name": name,
                "object_name": f"records-{name}",
                "perms": {"add": can_add, "change": True, "delete": True, "view": True},
                "admin_url": f"{changelist}?{query}",
                "add_url": f"{add}?{query}" if can_add else None,
                "view_only": False,
            }
        )
    return entries
