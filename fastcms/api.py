"""The REST API under /api/v1/, and its root page."""

from __future__ import annotations

from typing import Any

from django.urls import include, path, re_path, reverse
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import routers
from rest_framework.request import Request
from rest_framework.response import Response

from collections_app.views import CollectionViewSet, RecordViewSet, TokenView
from fastcms.views import listable_collection_names


class APIRootView(routers.APIRootView):
    """FastCMS: collections with typed fields and access rules, their records, and live updates.

    * **Collections** (staff): schemas and rules. **Records**: one list per collection, with
      `?query=` (e.g. `price > 100 && active = true`), `?ordering=-price`, `?page=` and `?page_size=`.
    * **Authentication**: `POST auth/token` with a username and password gives a token; send it as
      `Authorization: Token <token>`. The browsable API and the admin use the session (log in above).
    * **Real-time**: `GET realtime` and `realtime/<collection>` are Server-Sent Event streams;
      `presence` lists who is connected. **Docs**: the OpenAPI schema and its interactive page.
    """

    def get_view_name(self) -> str:
        return "FastCMS API"

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
