"""Nobody appears under another person's account: anonymous callers may not take an account's id."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.contrib.auth.models import User

from tests.conftest import http_for, token_of
from tests.live import Server, SSEClient, wait_until
from tests.presence.test_presence import streams, users

__all__ = ["streams"]  # the fixture


def test_an_anonymous_caller_cannot_take_an_account_id(live: Server, streams: Any, alice: User) -> None:
    for spelling in (str(alice.pk), f" {alice.pk}", f"+{alice.pk}", f"0{alice.pk}"):
        spoof = streams(live, query=f"user_id={quote(spelling)}&user_name=Mallory")
        assert spoof.status == 403, spelling
        assert spoof.json_error()["code"] == "presence_forbidden"
    assert str(alice.pk) not in users(live)
    as_alice = streams(live, headers={"Authorization": f"Token {token_of(alice)}"})
    as_alice.next()
    assert wait_until(lambda: users(live).get(str(alice.pk), {}).get("user_name") == "Alice Liddell")


def test_anonymous_ids_that_are_no_account_stay_allowed(live: Server, streams: Any, alice: User) -> None:
    missing = User.objects.order_by("-pk").first().pk + 1000
    for user_id in ("guest-7", str(missing)):
        guest = streams(live, query=f"user_id={user_id}&user_name=Guest")
        assert guest.status == 200, user_id
        guest.next()
        assert wait_until(lambda user_id=user_id: users(live).get(user_id, {}).get("user_name") == "Guest")


def test_staff_speaking_for_an_account_show_its_name(live: Server, streams: Any, alice: User, staff: User) -> None:
    kiosk = streams(live, headers={"Authorization": f"Token {token_of(staff)}"}, query=f"user_id={alice.pk}")
    assert kiosk.status == 200
    kiosk.next()
    assert wait_until(lambda: users(live).get(str(alice.pk), {}).get("user_name") == "Alice Liddell")


def test_the_refusal_comes_before_the_stream_on_the_one_collection_path(live: Server, alice: User, staff: User) -> None:
    with http_for(live, staff) as api:
        notes = {"name": "notes", "fields": [{"name": "name", "type": "text"}], "list_rule": ""}
        assert api.post("/api/v1/collections/", json=notes).status_code == 201
    spoof = SSEClient(f"{live.url}/api/v1/realtime/notes?user_id={alice.pk}")
    try:
        assert spoof.status == 403
        assert spoof.json_error() == {
            "detail": "user_id is an account's id: sign in as that user to appear under it.",
            "code": "presence_forbidden",
        }
    finally:
        spoof.close()
