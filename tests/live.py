"""Real servers and a real SSE client for the stream tests.

`Server` runs `uvicorn fastcms.asgi:application` in a subprocess on the test database (the tests
commit their data: `django_db(transaction=True)`). `SSEClient` reads a stream in a thread and
parses it as a browser's EventSource does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings as django_settings

ROOT = Path(__file__).resolve().parent.parent


def wait_until(check: Any, timeout: float = 5) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


def unique_name(base: str) -> str:
    """A collection name no other test uses: servers outlive tests and remember collections by name
    (tests empty the tables between them, which no event reports)."""
    return f"{base}_{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The test database as a URL for the server processes."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings["USER"] or "postgres"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    )


class Server:
    """A uvicorn process serving FastCMS; `env` overrides settings (FASTCMS_* and others)."""

    def __init__(self, env: dict[str, str] | None = None, workers: int = 1, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.gettempdir()) / f"fastcms-test-server-{self.port}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.server_settings",
            "FASTCMS_ENV_FILE": "/nonexistent",
            "DEBUG": "false",
            "SECRET_KEY": "tests-only-secret-key",
            "ALLOWED_HOSTS": "*",
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "FASTCMS_REDIS_PREFIX": django_settings.FASTCMS_REDIS_PREFIX,
            # Every test's streams come from 127.0.0.1: only the tests of this limit set it lower.
            "FASTCMS_SSE_OPENS_PER_MINUTE": "100000",
            **(env or {}),
        }
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "fastcms.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        return command

    def start(self) -> Server:
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/api/v1/presence", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> float:
        """Signal the server and wait for it to exit; returns the seconds it took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        return time.monotonic() - started

    def threads(self) -> int:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@dataclass
class SSEEvent:
    event: str
    data: str
    id: str | None
    received: float = field(default_factory=time.time)  # when the client read it (wall clock)

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEClient:
    """An EventSource-like reader in a thread: `next()` returns events (pings too, as `: ping`)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    source: str | None = None  # local address to connect from (per-IP limits)
    events: queue.Queue[Any] = field(default_factory=queue.Queue)
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    ended: threading.Event = field(default_factory=threading.Event)
    opened: threading.Event = field(default_factory=threading.Event)
    retry: int | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.connection = http.client.HTTPConnection(
            parts.hostname, parts.port, timeout=30, source_address=(self.source, 0) if self.source else None
        )
        self.connection.connect()
        self.connection.sock.settimeout(None)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if not self.opened.wait(15):
            raise TimeoutError(f"no response from {self.url}")

    def _read(self) -> None:
        try:
            self.connection.request("GET", self.path, headers={"Accept": "text/event-stream", **self.headers})
            response = self.connection.getresponse()
            self.status = response.status
            self.response_headers = {k.lower(): v for k, v in response.getheaders()}
            if response.status != 200:
                self.body = response.read()
                return
            self.opened.set()
            fields: dict[str, str] = {}
            while True:
                raw = response.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in fields or "event" in fields:
                        self.events.put(
                            SSEEvent(fields.get("event", "message"), fields.get("data", ""), fields.get("id"))
                        )
                    fields = {}
                elif line.startswith(":"):
                    self.events.put(SSEEvent(": ping", line, None))
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "retry":
                        self.retry = int(value)
                    elif name == "data" and "data" in fields:
                        fields["data"] += "\n" + value
                    else:
                        fields[name] = value
        except Exception:  # noqa: S110  (the connection ended: closed by either side)
            pass
        finally:
            self.connection.close()
            self.opened.set()
            self.ended.set()

    def json_error(self) -> Any:
        return json.loads(self.body)

    def next(self, timeout: float = 10, skip_pings: bool = True) -> SSEEvent:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no event within {timeout}s on {self.url}")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"no event within {timeout}s on {self.url}") from None
            if skip_pings and event.event == ": ping":
                continue
            return event

    def next_of(self, *types: str, timeout: float = 10) -> SSEEvent:
        """The next event of one of `types`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(timeout=max(0.01, deadline - time.monotonic()))
            if event.event in types:
                return event

    def next_for(self, *types: str, user_id: str, timeout: float = 10) -> SSEEvent:
        """The next presence event of `types` about `user_id` (other tests' users are ignored)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_of(*types, timeout=max(0.01, deadline - time.monotonic()))
            if event.json["data"].get("user_id") == user_id:
                return event

    def drain(self, wait: float = 0.5) -> list[SSEEvent]:
        """Every event that arrives within `wait` seconds (pings excluded)."""
        found = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event.event != ": ping":
                found.append(event)
        return found

    def close(self) -> None:
        """Drop the connection (as a browser tab closing does)."""
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.connection.close()
        self.thread.join(timeout=5)

    def __enter__(self) -> SSEClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
