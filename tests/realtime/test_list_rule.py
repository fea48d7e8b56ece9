"""Streams judge records by the list rule only, never the view rule, live and on replay; an update
that takes a record out of a subscriber's list rule reaches it as `data: {"id"}`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from tests.conftest import http_for
from tests.live import Server
from tests.realtime.conftest import PRODUCT_FIELDS

NOTES = "/api/v1/collections/notes/records/"


def test_a_record_leaving_the_list_rule_arrives_as_its_id_live_and_on_replay(
    live: Server, open_stream: Any, make_named_collection: Any, staff_http: Any, alice: User, bob: User
) -> None:
    # Everyone may view any note, but lists (and streams) show only one's own.
    make_named_collection("notes", PRODUCT_FIELDS, list_rule="owner = @request.auth.id", view_rule="")
    marker = staff_http.get(NOTES).headers["x-last-event-id"]
    live_streams = [open_stream(live, path, user=alice) for path in ("/api/v1/realtime/notes", "/api/v1/realtime")]
    for stream in live_streams:
        stream.next()
    note = staff_http.post(NOTES, json={"name": "mine", "owner": str(alice.pk), "secret": "s"}).json()
    staff_http.patch(f"{NOTES}{note['id']}/", json={"name": "renamed"})
    staff_http.patch(f"{NOTES}{note['id']}/", json={"owner": str(bob.pk)})  # out of Alice's list rule
    staff_http.patch(f"{NOTES}{note['id']}/", json={"name": "bob's now"})  # never hers again
    with http_for(live, alice) as as_alice:
        assert as_alice.get(f"{NOTES}{note['id']}/").status_code == 200  # she may still view it
    replays = [
        open_stream(live, path, user=alice, last_event_id=marker)
        for path in ("/api/v1/realtime/notes", "/api/v1/realtime")
    ]
    for replay in replays:
        assert replay.next().json["data"]["recovered"] is True
    for stream in live_streams + replays:
        received = [e.json for e in stream.drain(1) if e.event.startswith("record.")]
        assert [(e["type"], e["record_id"]) for e in received] == [
            ("record.created", note["id"]),
            ("record.updated", note["id"]),
            ("record.updated", note["id"]),
        ], stream.url
        created, renamed, handed = (e["data"] for e in received)
        assert (created["name"], renamed["name"]) == ("mine", "renamed")
        assert "secret" not in created
        assert handed == {"id": note["id"]}


def test_the_view_rule_never_filters_a_stream(
    live: Server, open_stream: Any, make_named_collection: Any, staff_http: Any, alice: User, bob: User
) -> None:
    # Everyone may list the notes, only the owner may view one: streams follow the list rule.
    make_named_collection("notes", PRODUCT_FIELDS, list_rule="", view_rule="owner = @request.auth.id")
    marker = staff_http.get(NOTES).headers["x-last-event-id"]
    as_bob = open_stream(live, "/api/v1/realtime/notes", user=bob)
    as_bob.next()
    note = staff_http.post(NOTES, json={"name": "alice's", "owner": str(alice.pk)}).json()
    staff_http.patch(f"{NOTES}{note['id']}/", json={"name": "still alice's"})
    with http_for(live, bob) as as_bob_http:
        assert as_bob_http.get(f"{NOTES}{note['id']}/").status_code == 404  # he may not view it
    replay = open_stream(live, "/api/v1/realtime/notes", user=bob, last_event_id=marker)
    assert replay.next().json["data"]["recovered"] is True
    for stream in (as_bob, replay):
        received = [e.json["data"] for e in stream.drain(1) if e.event.startswith("record.")]
        assert [data["name"] for data in received] == ["alice's", "still alice's"]
