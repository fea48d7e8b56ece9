"""The REST API under /api/v1/."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from collections_app.views import CollectionViewSet, RecordViewSet, TokenView

router = DefaultRouter()
router.register("collections", CollectionViewSet, basename="collection")

record_list = RecordViewSet.as_view({"get": "list", "post": "create"})
record_detail = RecordViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("collections/<str:collection_name>/records/", record_list, name="record-list"),
    path("collections/<str:collection_name>/records/<str:pk>/", record_detail, name="record-detail"),
    re_path(r"^auth/token/?$", TokenView.as_view(), name="auth-token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("realtime.urls")),
    path("", include("presence.urls")),
    path("", include(router.urls)),
]
