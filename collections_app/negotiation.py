"""Content negotiation with each (Accept header, format, renderers) choice made once.

DRF parses the `Accept` header into media types and matches them against every renderer on each
request, about a tenth of a millisecond; API clients send the same few headers again and again.
The choice is remembered in a bounded map (at most MAX_REMEMBERED entries of headers of at most
MAX_HEADER characters, so at most about 1 MB); a choice that fails (406, unknown format) is never
remembered.
"""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation

MAX_REMEMBERED = 1024
MAX_HEADER = 512


class RememberingContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, remembered per (Accept, ?format, suffix, renderer classes)."""

    chosen: dict[tuple[Any, ...], tuple[int, str]] = {}

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> Any:
        accept = request.headers.get("accept", "*/*")
        if len(accept) > MAX_HEADER:
            return super().select_renderer(request, renderers, format_suffix)
        query_format = request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        key = (accept, query_format, format_suffix, tuple(type(renderer) for renderer in renderers))
        known = self.chosen.get(key)
        if known is not None:
            return renderers[known[0]], known[1]
        renderer, media_type = super().select_renderer(request, renderers, format_suffix)
        if len(self.chosen) >= MAX_REMEMBERED:
            self.chosen.clear()
        self.chosen[key] = (renderers.index(renderer), media_type)
        return renderer, media_type
