"""Static files: hashed, compressed names after `collectstatic`; plain names before it."""

from __future__ import annotations

from typing import Any

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticFilesStorage(CompressedManifestStaticFilesStorage):
    """WhiteNoise's manifest storage that never fails a page because `collectstatic` did not run.

    Without a manifest entry the plain URL is used, and WhiteNoise serves it from the apps
    (WHITENOISE_USE_FINDERS), so the admin and the API docs work either way.
    """

    manifest_strict = False

    def url(self, name: Any, force: bool = False) -> str:
        try:
            return super().url(name, force)
        except ValueError:
            return f"{self.base_url}{name}"
