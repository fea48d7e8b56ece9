from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User

from tests.conftest import http_for, settle_events, token_of
from tests.live import Server, SSEClient, unique_name


@pytest.fixture
def open_stream() -> Any:
    """Open SSE streams (closed after the test): `open_stream(server, path, user=None, **params)`."""
    clients: list[SSEClient] = []

    def open_(
        server: Server,
        path: str = "/api/v1/realtime",
        user: User | None = None,
        headers: dict[str, str] | None = None,
        **params: Any,
    ) -> SSEClient:
        headers = dict(headers or {})
        if user is not None:
            headers["Authorization"] = f"Token {token_of(user)}"
        query = f"?{urlencode(params)}" if params else ""
        client = SSEClient(f"{server.url}{path}{query}", headers=headers)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.close()


@pytest.fixture
def staff_http(live: Server, staff: User) -> Any:
    with http_for(live, staff) as client:
        yield client


@pytest.fixture
def make_live_collection(staff_http: Any) -> Callable[..., dict[str, Any]]:
    """Create a collection through the live server's REST API, so the server's collection registry
    hears of it; the name is `base` plus a suffix no other test uses (servers outlive tests)."""

    def make(base: str, fields: list[dict[str, Any]], **rules: Any) -> dict[str, Any]:
        response = staff_http.post("/api/v1/collections/", json={"name": unique_name(base), "fields": fields, **rules})
        assert response.status_code == 201, response.text
        return response.json()

    return make


@pytest.fixture
def make_named_collection(live: Server, staff_http: Any) -> Callable[..., dict[str, Any]]:
    """Create a collection with exactly this name through the live server's REST API; once the
    server has read its event, a same-named collection of an earlier test is replaced in its
    registry."""

    def make(name: str, fields: list[dict[str, Any]], **rules: Any) -> dict[str, Any]:
        response = staff_http.post("/api/v1/collections/", json={"name": name, "fields": fields, **rules})
        assert response.status_code == 201, response.text
        settle_events(live)
        return response.json()

    return make


def records_of(collection: dict[str, Any]) -> str:
    return f"/api/v1/collections/{collection['name']}/records/"


def stream_of(collection: dict[str, Any]) -> str:
    return f"/api/v1/realtime/{collection['name']}"


PRODUCT_FIELDS = [
    {"name": "name", "type": "text", "required": True},
    {"name": "price", "type": "number"},
    {"name": "active", "type": "bool"},
    {"name": "owner", "type": "user"},
    {"name": "secret", "type": "text", "hidden": True},
]
