"""The browsable API: typed HTML forms per collection, form input typed back, titles, log in.

A signed-in browser posts these forms with Django's CSRF token, as multipart form data; the same
forms are driven in Chromium in tests/e2e/test_cms_browser.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import QueryDict
from django.test import Client
from rest_framework import serializers

from collections_app import services
from collections_app.browsable import form_values
from collections_app.models import Collection

LIST = "/api/v1/collections/products/records/"


@pytest.fixture
def browser_client(staff: User) -> Client:
    """A signed-in browser: session cookie, and CSRF checks as in production."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    return client


def csrf_token(client: Client, url: str) -> str:
    page = client.get(url, HTTP_ACCEPT="text/html").content.decode()
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]


def test_list_page_has_a_typed_form(browser_client: Client, products: Collection) -> None:
    html = browser_client.get(LIST, HTTP_ACCEPT="text/html").content.decode()
    assert "<title>Products records \N{EN DASH} FastCMS API</title>" in html
    assert "<h1>Products records</h1>" in html
    assert '<a href="/api/v1/collections/products/">Collection products</a>' in html  # a breadcrumb
    form = html[html.index('id="post-object-form"') :]
    assert '<input name="price" class="form-control" type="number"' in form
    assert '<input type="checkbox" name="active" value="true"' in form
    assert '<select class="form-control" name="status">' in form
    assert 'type="date"' in form  # released
    assert '<textarea name="meta"' in form
    assert '<textarea name="meta" class="form-control" rows="4">null' not in form  # empty, not "null"


def test_html_form_creates_a_record_with_typed_values(browser_client: Client, products: Collection) -> None:
    form = {
        "csrfmiddlewaretoken": csrf_token(browser_client, LIST),
        "title": "Lamp",
        "price": "150",
        "active": "true",
        "status": "published",
        "released": "2026-05-06",
        "owner": "",
        "secret": "",
        "meta": '{"a": [1, 2]}',
    }
    response = browser_client.post(LIST, form, HTTP_ACCEPT="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["price"] == 150
    assert body["active"] is True
    assert body["meta"] == {"a": [1, 2]}
    assert body["owner"] is None


def test_html_form_update_unchecks_a_bool(browser_client: Client, products: Collection) -> None:
    record = services.record_create(collection=products, data={"title": "Lamp", "price": 9.5, "active": True})
    url = f"{LIST}{record.pk}/"
    page = browser_client.get(url, HTTP_ACCEPT="text/html").content.decode()
    put_form = page[page.index('id="put-object-form"') :]
    assert 'value="Lamp"' in put_form  # the update form shows the record
    assert 'name="active" value="true" checked' in put_form
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    # The page's script sends the form as multipart with the PUT method; an unchecked box is absent.
    response = browser_client.put(
        url,
        data=f"title=Lamp&price=12.25&csrfmiddlewaretoken={token}",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200, response.content
    assert response.json()["active"] is False
    assert response.json()["price"] == 12.25


def test_bad_form_values_are_field_errors(browser_client: Client, products: Collection) -> None:
    token = csrf_token(browser_client, LIST)
    response = browser_client.post(LIST, {"csrfmiddlewaretoken": token, "title": "X", "price": "abc", "meta": "{"})
    assert response.status_code == 400
    assert set(response.json()) == {"meta"}  # the JSON is read first; price would be refused next
    response = browser_client.post(LIST, {"csrfmiddlewaretoken": token, "title": "X", "price": "abc"})
    assert response.json() == {"price": ["A valid number is required."]}
    unknown = browser_client.post(LIST, {"csrfmiddlewaretoken": token, "title": "X", "nope": "1"})
    assert unknown.json() == {"nope": ["Unknown field."]}  # csrfmiddlewaretoken is not a field


def test_form_posts_without_the_csrf_token_are_refused(browser_client: Client, products: Collection) -> None:
    response = browser_client.post(LIST, {"title": "X"})
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF Failed")  # the reason, not "not authenticated"
    assert not products.records.exists()


@pytest.mark.parametrize(
    ("field", "text", "value"),
    [
        ("price", "3", 3),
        ("price", "-2.5", -2.5),
        ("price", "1e3", 1000.0),
        ("price", "", None),
        ("price", "abc", "abc"),  # left for the schema to refuse
        ("active", "on", True),
        ("active", "false", False),
        ("meta", "[1]", [1]),
        ("meta", "", None),
        ("status", "", None),
        ("title", "", ""),  # required text: empty stays empty, and is refused as blank
        ("secret", "", None),
    ],
)
def test_form_values_are_typed_per_field(products: Collection, field: str, text: str, value: Any) -> None:
    data = QueryDict(mutable=True)
    data[field] = text
    assert form_values(products, data, partial=True)[field] == value


def test_json_bodies_pass_through_and_unchecked_boxes_are_false(products: Collection) -> None:
    assert form_values(products, {"price": "3"}, partial=False) == {"price": "3"}
    data = QueryDict("title=A&csrfmiddlewaretoken=x")
    assert form_values(products, data, partial=False) == {"title": "A", "active": False}
    assert form_values(products, data, partial=True) == {"title": "A"}  # PATCH leaves it as it is
    with pytest.raises(serializers.ValidationError):
        form_values(products, QueryDict("meta={"), partial=True)


def test_api_root_describes_the_api(browser_client: Client, products: Collection) -> None:
    html = browser_client.get("/api/v1/", HTTP_ACCEPT="text/html").content.decode()
    assert "The default basic root view" not in html
    assert "<h1>FastCMS API</h1>" in html
    body = browser_client.get("/api/v1/", HTTP_ACCEPT="application/json").json()
    assert body["records"] == {"products": "http://testserver/api/v1/collections/products/records/"}
    assert body["login"] == "http://testserver/api/v1/auth/login/"
    assert set(body) >= {"collections", "auth_token", "realtime", "presence", "schema", "docs"}


def test_anonymous_401_page_offers_to_log_in(client: Client, staff: User) -> None:
    response = client.get("/api/v1/collections/", HTTP_ACCEPT="text/html")
    assert response.status_code == 401
    html = response.content.decode()
    assert 'href="/api/v1/auth/login/?next=/api/v1/collections/"' in html
    login = client.get("/api/v1/auth/login/?next=/api/v1/collections/")
    assert login.status_code == 200
    assert "FastCMS API" in login.content.decode()
    signed_in = client.post(
        "/api/v1/auth/login/", {"username": "staff", "password": "staff-pass", "next": "/api/v1/collections/"}
    )
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/api/v1/collections/"
    assert client.get("/api/v1/collections/", HTTP_ACCEPT="application/json").status_code == 200


def test_collection_pages_are_named(browser_client: Client, products: Collection) -> None:
    html = browser_client.get("/api/v1/collections/products/", HTTP_ACCEPT="text/html").content.decode()
    assert "<h1>Collection products</h1>" in html
    assert "Collection Instance" not in html


def test_a_refused_form_comes_back_filled_in_as_sent(browser_client: Client, products: Collection) -> None:
    token = csrf_token(browser_client, LIST)
    sent = {"csrfmiddlewaretoken": token, "title": "Kept title", "price": "abc", "status": "draft"}
    response = browser_client.post(LIST, sent, HTTP_ACCEPT="text/html")
    assert response.status_code == 400
    form = response.content.decode().split('id="post-object-form"', 1)[1]
    assert '<input name="title" class="form-control" type="text"  value="Kept title" >' in form
    assert '<input name="price" class="form-control" type="number"  value="abc" >' in form
    assert re.search(r'<option value="draft"\s+selected\s*>', form)
    assert "A valid number is required." in form  # the error beside its field
    refused_by_the_service = dict(sent, price="-3")  # a valid number, below the schema's minimum
    form = browser_client.post(LIST, refused_by_the_service, HTTP_ACCEPT="text/html").content.decode()
    form = form.split('id="post-object-form"', 1)[1]
    assert 'value="-3"' in form
    assert "Ensure this value is greater than or equal to 0." in form
    record = services.record_create(collection=products, data={"title": "Lamp", "price": 2})
    url = f"{LIST}{record.pk}/"
    refused = browser_client.put(
        url,
        data=f"title=Renamed&price=nope&csrfmiddlewaretoken={token}",
        content_type="application/x-www-form-urlencoded",
        HTTP_X_CSRFTOKEN=token,
        HTTP_ACCEPT="text/html",
    )
    assert refused.status_code == 400
    assert 'value="Renamed"' in refused.content.decode().split('id="put-object-form"', 1)[1]
    # JSON clients get the same errors as before; nothing was written.
    assert browser_client.post(LIST, sent, HTTP_ACCEPT="application/json").json() == {
        "price": ["A valid number is required."]
    }
    assert browser_client.get(url, HTTP_ACCEPT="application/json").json()["title"] == "Lamp"


def test_a_refused_form_draws_what_was_sent_as_text(browser_client: Client, products: Collection) -> None:
    token = csrf_token(browser_client, LIST)
    markup = '"><script>alert(1)</script>'
    sent = {"csrfmiddlewaretoken": token, "title": markup, "price": "-1", "released": markup}
    html = browser_client.post(LIST, sent, HTTP_ACCEPT="text/html").content.decode()
    form = html.split('id="post-object-form"', 1)[1]
    assert "<script>alert(1)</script>" not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in form
