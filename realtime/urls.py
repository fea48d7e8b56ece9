from django.urls import path, re_path

from realtime import views
from realtime.tokens import StreamTokenView

# The streams; `realtime.stream_urls` serves them alone (see realtime.handler).
stream_patterns = [
    re_path(r"^realtime/?$", views.stream_all, name="realtime"),
    path("realtime/<str:name>", views.stream_collection, name="realtime-collection"),
    path("realtime/<str:name>/", views.stream_collection),
]

urlpatterns = [
    # Before the streams: `POST /api/v1/realtime/tokens` (a GET there is the stream of a collection
    # named "tokens", which `realtime.handler.StreamHandler` serves with `realtime.stream_urls`).
    re_path(r"^realtime/tokens/?$", StreamTokenView.as_view(), name="realtime-tokens"),
    *stream_patterns,
]
