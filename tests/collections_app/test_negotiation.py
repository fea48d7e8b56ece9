"""Remembered content negotiation chooses exactly what DRF's chooses."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from collections_app.browsable import BrowsableAPIRenderer
from collections_app.negotiation import MAX_HEADER, RememberingContentNegotiation

HEADERS = [
    None,
    "*/*",
    "application/json",
    "text/html",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/json; indent=4",
    "application/*",
    "text/*;q=0.5, application/json",
]


def request_with(accept: str | None, query: str = "") -> Request:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    return Request(APIRequestFactory().get(f"/api/v1/collections/{query}", **headers))


def choose(negotiation: Any, accept: str | None, query: str = "") -> tuple[type, str]:
    renderers = [JSONRenderer(), BrowsableAPIRenderer()]
    renderer, media_type = negotiation.select_renderer(request_with(accept, query), renderers)
    assert renderer in renderers  # one of this request's own instances
    return type(renderer), media_type


@pytest.mark.parametrize("accept", HEADERS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api"])
def test_the_same_choice_as_drf_first_and_again(accept: str | None, query: str) -> None:
    RememberingContentNegotiation.chosen.clear()
    expected = outcome(DefaultContentNegotiation(), accept, query)
    assert outcome(RememberingContentNegotiation(), accept, query) == expected
    assert outcome(RememberingContentNegotiation(), accept, query) == expected  # remembered


def outcome(negotiation: Any, accept: str | None, query: str) -> Any:
    try:
        return choose(negotiation, accept, query)
    except NotAcceptable:
        return "406"


def test_refusals_are_not_remembered_and_long_headers_not_kept() -> None:
    RememberingContentNegotiation.chosen.clear()
    with pytest.raises(NotAcceptable):
        choose(RememberingContentNegotiation(), "image/png")
    assert RememberingContentNegotiation.chosen == {}
    long_header = "application/json;q=1," + "x/y," * MAX_HEADER
    assert choose(RememberingContentNegotiation(), long_header)[0] is JSONRenderer
    assert RememberingContentNegotiation.chosen == {}


def test_the_map_stays_bounded() -> None:
    from collections_app import negotiation

    RememberingContentNegotiation.chosen.clear()
    for n in range(negotiation.MAX_REMEMBERED + 10):
        choose(RememberingContentNegotiation(), f"application/json;v={n}")
    assert len(RememberingContentNegotiation.chosen) <= negotiation.MAX_REMEMBERED
