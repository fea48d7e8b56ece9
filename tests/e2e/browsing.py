"""Chromium for the browser tests: Debian's build driven by Playwright, and pages that collect errors.

The browser tests skip when the `playwright` package or Debian's Chromium is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.live import ROOT, Server

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
except ImportError:  # only the browser tests need it; they skip without it
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 10_000


def launch() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright (skips the test when either is missing)."""
    if sync_playwright is None:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    # Playwright's sync API keeps its event loop marked as running in this thread, which Django
    # takes for an async context; the ORM is only ever called from this one thread here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        expect.set_options(timeout=WAIT_MS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Pages:
    """Pages of one browser context on the live server, with every console error they report."""

    server: Server
    context: Any
    errors: list[str] = field(default_factory=list)

    def new(self) -> Page:
        page = self.context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console.error: {message.text} @ {message.location.get('url')}")

    def console(self) -> Page:
        """A new page on the live console, loaded, with its presence list live."""
        page = self.new()
        page.goto("/")
        expect(page.locator("#presence-state")).to_have_text("live")
        return page


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as test-artifacts/<name>.png (to look at after a run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
