"""Browser fixtures (one Chromium per test module, a fresh context per test) and a TCP proxy in
front of the tests' Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.e2e.browsing import Pages, launch
from tests.live import Server, SSEClient
from tests.proxy import TCPProxy

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


@pytest.fixture
def proxy() -> Any:
    """A TCP proxy in front of the tests' Redis (`proxy.url`), to pass, refuse or black-hole it."""
    target = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    proxy = TCPProxy(target.port or 6379, target.hostname or "127.0.0.1").start()
    yield proxy
    proxy.stop()


@pytest.fixture
def clients() -> Any:
    """Open SSE clients (`clients(url, **kwargs)`), closed after the test."""
    opened: list[SSEClient] = []

    def open_(url: str, **kwargs: Any) -> SSEClient:
        client = SSEClient(url, **kwargs)
        opened.append(client)
        return client

    yield open_
    for client in opened:
        client.close()
