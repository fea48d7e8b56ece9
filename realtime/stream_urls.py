"""The URLs `realtime.handler.StreamHandler` resolves: the streams only, so a GET on
`/api/v1/realtime/tokens` is the stream of a collection named "tokens", never the token endpoint."""

from django.urls import include, path

from realtime.urls import stream_patterns

urlpatterns = [path("api/v1/", include(stream_patterns))]
