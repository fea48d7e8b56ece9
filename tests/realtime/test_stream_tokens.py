"""Stream tokens: short-lived, signed, stream endpoints only, and dead with the credentials."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.core import signing
from rest_framework.test import APIClient

from realtime.tokens import SALT, issue_stream_token, user_for_stream_token
from tests.conftest import http_for
from tests.live import Server, SSEClient

TOKENS = "/api/v1/realtime/tokens"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def stream_token(server: Server, user: User) -> dict[str, Any]:
    with http_for(server, user) as api:
        response = api.post(TOKENS)
    assert response.status_code == 200, response.text
    return response.json()


def open_with(server: Server, token: str, path: str = "/api/v1/realtime") -> SSEClient:
    return SSEClient(f"{server.url}{path}?{httpx.QueryParams(token=token)}")


def test_an_authenticated_caller_gets_a_stream_token(live: Server, alice: User) -> None:
    before = time.time()
    body = stream_token(live, alice)
    assert set(body) == {"token", "expires"}
    assert ISO_UTC.match(body["expires"])
    expires = datetime.strptime(body["expires"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    assert before + 299 <= expires <= time.time() + 301
    anonymous = httpx.post(f"{live.url}{TOKENS}", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "not_authenticated"
    with http_for(live, alice) as api:
        stream = api.get(TOKENS)  # a GET there is the stream of a collection named "tokens"
    assert (stream.status_code, stream.json()["detail"]) == (404, "Collection 'tokens' not found.")


def test_a_session_gets_a_stream_token_too(alice: User) -> None:
    client = APIClient()
    client.force_login(alice)
    response = client.post(TOKENS)
    assert response.status_code == 200
    assert user_for_stream_token(response.json()["token"]) == alice


def test_a_stream_token_opens_streams_and_presence_and_is_never_logged(
    live: Server, alice: User, make_named_collection: Any
) -> None:
    make_named_collection("posts", [{"name": "title", "type": "text"}], list_rule="")
    token = stream_token(live, alice)["token"]
    for path in ("/api/v1/realtime", "/api/v1/realtime/posts"):
        with open_with(live, token, path) as stream:
            assert stream.status == 200
            assert stream.next().json["data"]["user_id"] == str(alice.pk)
    assert httpx.get(f"{live.url}/api/v1/presence", params={"token": token}, timeout=10).status_code == 200
    assert token not in live.output()
    assert token.split(":")[-1] not in live.output()


def test_a_stream_token_is_refused_everywhere_else(live: Server, alice: User) -> None:
    token = stream_token(live, alice)["token"]
    for scheme in ("Token", "Bearer"):
        response = httpx.get(f"{live.url}/api/v1/collections/", headers={"Authorization": f"{scheme} {token}"})
        assert response.status_code == 401
    renewed = httpx.post(f"{live.url}{TOKENS}", headers={"Authorization": f"Token {token}"}, timeout=10)
    assert renewed.status_code == 401  # a stream token never buys another one


def test_a_stream_token_expires(live_servers: Any, transactional_db: None, alice: User) -> None:
    server = live_servers(FASTCMS_STREAM_TOKEN_SECONDS="1")
    body = stream_token(server, alice)
    with open_with(server, body["token"]) as stream:
        assert stream.status == 200
    time.sleep(1.2)
    with open_with(server, body["token"]) as stream:
        assert stream.status == 401
        assert stream.json_error()["code"] == "authentication_failed"


@pytest.mark.parametrize("change", ["deactivated", "password", "staff"])
def test_a_stream_token_dies_with_the_credentials_it_was_issued_for(live: Server, alice: User, change: str) -> None:
    token = stream_token(live, alice)["token"]
    if change == "deactivated":
        alice.is_active = False
    elif change == "password":
        alice.set_password("a new one")
    else:
        alice.is_staff = True
    alice.save()
    with open_with(live, token) as stream:
        assert stream.status == 401


@pytest.mark.django_db
def test_forged_and_foreign_tokens_are_refused(alice: User, settings: Any) -> None:
    token, _ = issue_stream_token(alice)
    assert user_for_stream_token(token) == alice
    payload, signature = token.rsplit(":", 1)
    forged = signing.Signer(salt=SALT).sign_object({"u": str(alice.pk), "f": "0" * 32, "e": time.time() + 60})
    other_salt = signing.Signer(salt="elsewhere").sign_object({"u": str(alice.pk), "f": "x", "e": time.time() + 60})
    for bad in (f"{payload}:{signature[::-1]}", forged, other_salt, "a:b", ":", f"{payload}x:{signature}"):
        with pytest.raises(Exception, match="Invalid or expired stream token"):
            user_for_stream_token(bad)
    settings.FASTCMS_STREAM_TOKEN_SECONDS = -1
    expired, _ = issue_stream_token(alice)
    with pytest.raises(Exception, match="Invalid or expired stream token"):
        user_for_stream_token(expired)


def test_a_collection_named_tokens_keeps_its_stream(live: Server, alice: User, make_named_collection: Any) -> None:
    make_named_collection("tokens", [{"name": "title", "type": "text"}], list_rule="")
    with SSEClient(f"{live.url}{TOKENS}") as stream:
        assert stream.next().json["data"]["collection"] == "tokens"
    assert set(stream_token(live, alice)) == {"token", "expires"}
