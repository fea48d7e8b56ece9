"""The collections as this process's bus knows them, so opening a stream mostly needs no query."""

from __future__ import annotations

import time

from realtime.conf import realtime_settings
from realtime.events import CollectionInfo


class CollectionRegistry:
    """The collections as this process's bus knows them: kept current by collection events and
    re-read from the database every FASTCMS_COLLECTIONS_REFRESH seconds (for changes made by
    processes that do not share the bus), so opening a stream mostly needs no query."""

    def __init__(self) -> None:
        self.by_id: dict[str, CollectionInfo] = {}
        self.by_name: dict[str, CollectionInfo] = {}
        self.loaded_at: float | None = None

    def get(self, collection_id: str) -> CollectionInfo | None:
        return self.by_id.get(collection_id)

    def named(self, name: str) -> CollectionInfo | None:
        return self.by_name.get(name) if not self.stale() else None

    def stale(self) -> bool:
        return (
            self.loaded_at is None or time.monotonic() - self.loaded_at >= realtime_settings.FASTCMS_COLLECTIONS_REFRESH
        )

    def remember(self, info: CollectionInfo) -> bool:
        """Keep `info` unless a later version is known; True when it replaced an older one."""
        known = self.by_id.get(info.id)
        if known is not None and known.version >= info.version:
            return False
        if known is not None and self.by_name.get(known.name) is known:
            del self.by_name[known.name]
        self.by_id[info.id] = info
        self.by_name[info.name] = info
        return known is not None

    def forget(self, collection_id: str) -> None:
        known = self.by_id.pop(collection_id, None)
        if known is not None and self.by_name.get(known.name) is known:
            del self.by_name[known.name]

    def replace_all(self, infos: list[CollectionInfo], read_at: float) -> None:
        """The database's collections, read at `read_at` (events dispatched since stay newer)."""
        current = {info.id for info in infos}
        for collection_id in list(self.by_id):
            if collection_id not in current:
                self.forget(collection_id)
        for info in infos:
            self.remember(info)
        self.loaded_at = read_at
