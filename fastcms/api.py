"""The REST API under /api/v1/, and its root page."""

from __future__ import annotations

import inspect
from typing import Any

from django.urls import include, path, re_path, reverse
from django.utils.html import format_html_join
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import routers
from rest_framework.request import Request
from rest_framework.response import Response

from collections_app.views import CollectionViewSet, RecordViewSet, TokenView
from fastcms.views import listable_collection_names


class APIRootView(routers.APIRootView):
    """FastCMS: collections with typed fields and access rules, their records, and live updates.

    Collections (staff) hold schemas and rules; each collection's records are a list of their own,
    filtered with ?query= (e.g. price > 100 && active = true), sorted with ?ordering=-price, paged
    with ?page= and ?page_size=. POST auth/token with a username and password gives a token, sent
    as "Authorization: Token <token>"; the browsable API and the admin use the session (log in at
    the top right). realtime and realtime/<collection> are Server-Sent Event streams; presence
    lists who is connected; docs is the interactive OpenAPI page.
    """

    def get_view_name(self) -> str:
        return "FastCMS API"

    def get_view_description(self, html: bool = False) -> str:
        """The docstring as paragraphs (its line breaks are only the source's wrapping)."""
        paragraphs = [" ".join(part.split()) for part in inspect.cleandoc(self.__doc__ or "").split("\n\n")]
        if html:
            return format_html_join("", "<p>{}</p>", ((paragraph,) for paragraph in paragraphs))
        return "\n\n".join(paragraphs)

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def url(name: str, **kwargs: str) -> str:
            return request.build_absolute_uri(reverse(name, kwargs=kwargs or None))

        return Response(
            {
                "collections": url("collection-list"),
                "records": {
                    name: url("record-list", collection_name=name) for name in listable_collection_names(request.user)
                },
                "auth_token": url("auth-token"),
                "login": url("rest_framework:login"),
                "realtime": url("realtime"),
                "presence": url("presence"),
                "schema": url("schema"),
                "docs": url("docs"),
            }
        )


class Router(routers.DefaultRouter):
    APIRootView = APIRootView


router = Router()
router.register("collections", CollectionViewSet, basename="collection")

record_list = RecordViewSet.as_view({"get": "list", "post": "create"})
record_detail = RecordViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("collections/<str:collection_name>/records/", record_list, name="record-list"),
    path("collections/<str:collection_name>/records/<str:pk>/", record_detail, name="record-detail"),
    re_path(r"^auth/token/?$", TokenView.as_view(), name="auth-token"),
    path("auth/", include("rest_framework.urls")),  # the browsable API's log in and log out
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("realtime.urls")),
    path("", include("presence.urls")),
    path("", include(router.urls)),
]
