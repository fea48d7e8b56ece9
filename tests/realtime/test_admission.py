"""Stream admission: open streams and stream opens per client (429), in this process and on live
servers; a malformed entry in the Redis log is skipped, live and on resume."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from django.conf import settings

from realtime.admission import AdmissionError, LocalAdmission
from tests.live import Server, SSEClient

RECORDS = "/api/v1/collections/products/records/"


def admit(admission: LocalAdmission, client_key: str, stream_id: str) -> None:
    asyncio.run(admission.admit(client_key, stream_id))


def test_open_streams_per_client_are_limited_and_released(settings: Any) -> None:
    settings.FASTCMS_SSE_MAX_PER_CLIENT = 2
    admission = LocalAdmission()
    admit(admission, "ip:1", "a")
    admit(admission, "ip:1", "b")
    admit(admission, "ip:2", "c")  # another client has its own count
    with pytest.raises(AdmissionError) as refused:
        admit(admission, "ip:1", "d")
    assert (refused.value.status, refused.value.code, refused.value.retry_after) == (429, "too_many_connections", None)
    admission.release("ip:1", "a")
    admit(admission, "ip:1", "e")


def test_opens_per_minute_are_limited_with_a_retry_after(settings: Any) -> None:
    settings.FASTCMS_SSE_OPENS_PER_MINUTE = 3
    admission = LocalAdmission()
    for stream_id in "abc":
        admit(admission, "user:7", stream_id)
        admission.release("user:7", stream_id)  # closing does not give an open back
    with pytest.raises(AdmissionError) as refused:
        admit(admission, "user:7", "d")
    assert refused.value.code == "too_many_connections"
    assert 1 <= refused.value.retry_after <= 60
    assert refused.value.response()["Retry-After"] == str(refused.value.retry_after)
    admit(admission, "user:8", "e")


def test_too_many_opens_a_minute_is_a_429_with_retry_after(live_servers: Any, transactional_db: None) -> None:
    server = live_servers(FASTCMS_SSE_OPENS_PER_MINUTE="2")
    url = f"{server.url}/api/v1/realtime"
    source = "127.0.0.81"  # an address of its own: the limit is per IP for anonymous streams
    for _ in range(2):
        with SSEClient(url, source=source) as stream:
            assert stream.status == 200
    refused = SSEClient(url, source=source)
    assert refused.status == 429
    assert refused.json_error()["code"] == "too_many_connections"
    assert 1 <= int(refused.response_headers["retry-after"]) <= 60
    with SSEClient(url, source="127.0.0.82") as other:
        assert other.status == 200


@pytest.mark.redis
def test_a_malformed_log_entry_is_skipped_live_and_on_resume(
    live: Server, open_stream: Any, staff_http: Any, make_named_collection: Any
) -> None:
    make_named_collection("products", [{"name": "name", "type": "text"}], list_rule="")
    stream = open_stream(live, "/api/v1/realtime/products")
    stream.next()
    staff_http.post(RECORDS, json={"name": "one"})
    marker = stream.next_of("record.created").id
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        log = f"{settings.FASTCMS_REDIS_PREFIX}:events"
        client.xadd(log, {"e": "not json"})
        client.xadd(log, {"k": "r", "e": '{"type": "record.created", "data": 7}'})
    finally:
        client.close()
    staff_http.post(RECORDS, json={"name": "two"})
    assert stream.next_of("record.created").json["data"]["name"] == "two"  # live delivery goes on
    resumed = open_stream(live, "/api/v1/realtime/products", last_event_id=marker)
    assert resumed.status == 200
    assert resumed.next().json["data"]["recovered"] is True
    assert resumed.next_of("record.created").json["data"]["name"] == "two"
    assert "skipping malformed event log entry" in live.output()


def test_a_redis_connection_closed_under_the_client_is_a_503_not_a_500() -> None:
    """Under uvloop, redis-py writing to a connection the server already closed raises
    RuntimeError; a new stream must get the outage's 503 (the next call reconnects)."""
    from realtime.backends.redis_admission import RedisAdmission

    admission = RedisAdmission("redis://127.0.0.1:1/0", "test-closed")

    async def closed_transport(**kwargs: Any) -> Any:  # every time: Redis itself is away
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")

    admission.admit_script = closed_transport
    with pytest.raises(AdmissionError) as refused:
        admit(admission, "ip:9", "a")
    assert (refused.value.status, refused.value.code) == (503, "realtime_unavailable")


def test_stream_paths_answer_errors_with_the_projects_json_pages() -> None:
    from django.urls import get_resolver

    from fastcms import errors

    resolver = get_resolver("realtime.stream_urls")
    assert resolver.resolve_error_handler(500) is errors.json_or_html_500
    assert resolver.resolve_error_handler(404) is errors.json_or_html_404


def test_a_connection_closed_while_idle_is_tried_once_more() -> None:
    from realtime.backends.redis_admission import RedisAdmission

    admission = RedisAdmission("redis://127.0.0.1:1/0", "test-stale")
    calls: list[int] = []

    async def stale_then_fine(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed")
        return [0, 0]

    admission.admit_script = stale_then_fine
    admit(admission, "ip:9", "a")  # admitted: the second call found a fresh connection
    assert len(calls) == 2
