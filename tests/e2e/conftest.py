from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.proxy import TCPProxy


@pytest.fixture
def proxy() -> Any:
    """A TCP proxy in front of the tests' Redis (`proxy.url`), to pass, refuse or black-hole it."""
    target = urlsplit(settings.REDIS_URL or "redis://127.0.0.1:6379/0")
    proxy = TCPProxy(target.port or 6379, target.hostname or "127.0.0.1").start()
    yield proxy
    proxy.stop()
