"""Browser fixtures: one Chromium per test module, a fresh context (cookies, storage) per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browsing import Pages, launch
from tests.live import Server

try:
    from playwright.sync_api import Browser
except ImportError:
    Browser = object


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def pages(browser: Browser, live: Server) -> Iterator[Pages]:
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 860})
    yield Pages(live, context)
    context.close()
