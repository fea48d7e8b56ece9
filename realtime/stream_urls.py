"""The URLs `realtime.handler.StreamHandler` resolves: the streams only, so a GET on
`/api/v1/realtime/tokens` is the stream of a collection named "tokens", never the token endpoint."""

from django.urls import include, path

from realtime.urls import stream_patterns

urlpatterns = [path("api/v1/", include(stream_patterns))]

# The project's error pages: JSON under /api/, so a stream's 500 is JSON too.
handler400 = "fastcms.errors.json_or_html_400"
handler403 = "fastcms.errors.json_or_html_403"
handler404 = "fastcms.errors.json_or_html_404"
handler500 = "fastcms.errors.json_or_html_500"
