"""Targets: what to serve, where to subscribe and how to publish, for the reference and for FastCMS.

Every workload speaks to a target only through this interface, so both are measured the same way:
subscribers open `GET <path>` streams, the publisher sends one HTTP request per event whose JSON
body is `{"seq", "sent_at", "topic", "payload"}`, and an event matches a selective subscriber when
its `topic` is the one that subscriber asked for.
"""

from __future__ import annotations

import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bench.fastcms_setup import USERNAME, SetupError, create_superuser, setup_over_http
from bench.loadgen import BenchError
from bench.server import PROJECT_ROOT, ServerProcess, base_env

SETUP_TIMEOUT = 300.0


def _equals(field: str, value: str) -> str:
    """The live query `field = "value"` (the query language)."""
    return f'{field} = "{value}"'


class TargetUnavailable(BenchError):
    """The target cannot be measured at all (e.g. its SSE endpoint does not exist); skip its workloads."""


class Target(ABC):
    """Base adapter. Subclasses set `name`, `app` and `ready_path` and the subscribe/publish details."""

    name: str
    app: str  # the uvicorn import string
    ready_path: str  # any HTTP answer on it means the server is up

    def prepare(self, workdir: Path) -> None:
        """One-time setup before the first server start (nothing by default)."""
        return None

    def env(self) -> dict[str, str]:
        """Environment of the server process."""
        return base_env()

    @abstractmethod
    def fanout_path(self) -> str:
        """A subscription that receives every published event."""

    @abstractmethod
    def match_path(self) -> str:
        """A subscription that receives events of topic `hot` (and only those)."""

    @abstractmethod
    def extra_paths(self, count: int) -> list[str]:
        """`count` subscriptions that receive none of the events of topic `hot`."""

    @abstractmethod
    def publish_request(self, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """(path, headers) of the POST that publishes `body` as one event."""

    def publish(self, client: httpx.Client, body: dict[str, Any]) -> None:
        """Publish one event; BenchError unless the server answers 2xx."""
        path, headers = self.publish_request(body)
        response = client.post(path, json=body, headers=headers)
        if not response.is_success:
            raise BenchError(f"{self.name}: POST {path} answered {response.status_code}: {response.text[:300]}")

    def probe(self, base_url: str, timeout: float = 15.0) -> None:
        """Open one stream on `fanout_path()` and read up to its `connected` event; BenchError otherwise."""
        path = self.fanout_path()
        try:
            with (
                httpx.Client(base_url=base_url, timeout=timeout) as client,
                client.stream("GET", path, headers={"Accept": "text/event-stream"}) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    self.refused(path, response.status_code, response.text)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise TargetUnavailable(f"{self.name}: GET {path} answered 200 with Content-Type {content_type!r}")
                deadline = time.monotonic() + timeout
                for line in response.iter_lines():
                    if line.strip() == "event: connected":
                        return
                    if time.monotonic() > deadline:
                        break
                raise TargetUnavailable(f"{self.name}: GET {path} sent no `event: connected` within {timeout:.0f} s")
        except httpx.HTTPError as exc:
            raise TargetUnavailable(f"{self.name}: GET {path} failed: {type(exc).__name__}: {exc}") from exc

    def refused(self, path: str, status: int, body: str) -> None:
        """Raise the error for a stream that was refused with `status`."""
        raise TargetUnavailable(f"{self.name}: GET {path} answered {status}: {body[:300]}")


class ReferenceTarget(Target):
    """`bench.reference:app`: `/events[?topic=]` and `POST /publish`."""

    name = "reference"
    app = "bench.reference:app"
    ready_path = "/ready"  # a JSON 404, which is an answer

    def fanout_path(self) -> str:
        return "/events"

    def match_path(self) -> str:
        return "/events?topic=hot"

    def extra_paths(self, count: int) -> list[str]:
        return [f"/events?topic=t-{k}" for k in range(count)]

    def publish_request(self, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        return "/publish?collection=bench", {}


class FastCMSTarget(Target):
    """`fastcms.asgi:application` on a fresh SQLite database prepared by `prepare()` (commands and HTTP only).

    Subscribers are anonymous (the collections' list rule is `""`) on `/api/v1/realtime/<name>`,
    selective ones with `?query=topic="<value>"`; events are records created with
    `POST /api/v1/collections/bench/records/` by the staff user `bench` (`Authorization: Token`).
    """

    name = "fastcms"
    app = "fastcms.asgi:application"
    ready_path = "/api/v1/"
    collection = "bench"
    other_collections = 5  # other_0 .. other_4: half the non-matching subscribers go there

    def __init__(self) -> None:
        self.token = ""
        self.database = ""

    def env(self) -> dict[str, str]:
        return base_env(
            DJANGO_SETTINGS_MODULE="fastcms.settings",
            DATABASE_URL=self.database,
            DEBUG="false",
            SECRET_KEY="bench",  # noqa: S106 - a throwaway server on a throwaway database
            ALLOWED_HOSTS="127.0.0.1,localhost",
            REDIS_URL="",  # in-process delivery, like the reference
            LOG_LEVEL="WARNING",
            FASTCMS_SSE_MAX_PER_CLIENT="100000",  # all subscribers come from one machine
            FASTCMS_SSE_MAX_CONNECTIONS="100000",
            FASTCMS_SSE_OPENS_PER_MINUTE="1000000",
        )

    def prepare(self, workdir: Path) -> None:
        """`migrate` a new SQLite file in `workdir` and create the staff user (commands); then, on a server
        started for the purpose, sign in and create the collections over HTTP (`bench.fastcms_setup`)."""
        self.database = f"sqlite:///{workdir / 'fastcms.sqlite3'}"
        env = self.env()
        names = [self.collection, *(f"other_{k}" for k in range(self.other_collections))]
        command = [sys.executable, "manage.py", "migrate", "--noinput", "-v0"]
        try:
            done = subprocess.run(
                command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise TargetUnavailable(f"fastcms: migrate did not finish within {SETUP_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            raise TargetUnavailable(f"fastcms: migrate failed ({done.returncode}):\n{done.stderr[-2000:]}")
        try:
            create_superuser(env)
            with ServerProcess(self.app, env, workdir / "fastcms-setup.log", self.ready_path) as server:
                self.token = setup_over_http(server.base_url, names)
        except (SetupError, BenchError) as exc:
            raise TargetUnavailable(f"fastcms: {exc}") from exc

    def fanout_path(self) -> str:
        return f"/api/v1/realtime/{self.collection}"

    def match_path(self) -> str:
        return f"/api/v1/realtime/{self.collection}?query={quote(_equals('topic', 'hot'))}"

    def extra_paths(self, count: int) -> list[str]:
        # Half on other collections, half on equality queries that never match: both must cost nothing.
        half = count // 2
        others = [f"/api/v1/realtime/other_{k % self.other_collections}" for k in range(half)]
        queries = [
            f"/api/v1/realtime/{self.collection}?query={quote(_equals('topic', f't-{k}'))}" for k in range(count - half)
        ]
        return others + queries

    def publish_request(self, body: dict[str, Any]) -> tuple[str, dict[str, str]]:
        return f"/api/v1/collections/{self.collection}/records/", {
            "Authorization": f"Token {self.token}",
            "Accept": "application/json",
        }

    def refused(self, path: str, status: int, body: str) -> None:
        if status == 404:
            raise TargetUnavailable(
                f"fastcms: GET {path} answered 404: the SSE endpoint is not there yet "
                f"(collection {self.collection!r} exists: the bench created it as user {USERNAME!r}). "
                f"Body: {body[:200]}"
            )
        super().refused(path, status, body)


TARGETS: dict[str, type[Target]] = {"reference": ReferenceTarget, "fastcms": FastCMSTarget}
