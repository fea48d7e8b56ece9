"""Input no later step could handle is refused with a 400 naming the field, and nothing is stored:
invalid Unicode, NUL characters, over-deep json, over-long `in` lists, patterns RE2 cannot run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from collections_app import services
from collections_app.inputs import MAX_IN_VALUES, json_problem, text_problem, undecodable_parameters
from collections_app.models import Collection, Record
from collections_app.query import QueryError, parse
from collections_app.schema import FieldValueError, check_value, load_fields
from collections_app.values import user_pk

URL = "/api/v1/collections/products/records/"
SURROGATE = "\ud800"


def post_raw(client: APIClient, url: str, body: Any, method: str = "post") -> Any:
    """Send `body` as JSON text; json.dumps writes a lone surrogate as the escape `\\ud800`."""
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# --- units --------------------------------------------------------------------------------------


def test_text_problem_finds_lone_surrogates_and_nul() -> None:
    assert text_problem("plain é 😀") is None
    assert "U+D800" in text_problem("ab\ud800")
    assert "position 2" in text_problem("ab\ud800")
    assert "U+DFFF" in text_problem("\udfff")
    assert text_problem("a\x00") == "Null characters are not allowed."


def test_json_problem_names_the_path_and_bounds_depth() -> None:
    assert json_problem({"a": [1, {"b": "ok"}]}) is None
    assert str(json_problem({"a": [1, {"b": SURROGATE}]})).endswith("(at a[1].b)")
    assert "Invalid key" in str(json_problem({"a": {SURROGATE: 1}}))
    assert json_problem(nested(32)) is None
    assert "at most 32 levels" in str(json_problem(nested(33)))
    assert json_problem(nested(10_000)) is not None  # no recursion


def test_undecodable_parameters_are_named() -> None:
    assert undecodable_parameters("query=title%3D%22%C3%A9%22&page=2") == []
    assert undecodable_parameters("query=title%3D%22%ED%A0%80%22&page=2") == ["query"]  # a UTF-8 surrogate
    assert undecodable_parameters("a=%FF&b=%00&c=1") == ["a", "b"]
    assert undecodable_parameters(b"name=%E9") == ["name"]


def test_every_text_like_type_refuses_surrogates() -> None:
    specs = load_fields(
        [
            {"name": "text", "type": "text"},
            {"name": "email", "type": "email"},
            {"name": "url", "type": "url"},
            {"name": "select", "type": "select", "options": {"values": ["a"]}},
            {"name": "relation", "type": "relation", "options": {"collection": "x"}},
            {"name": "user", "type": "user"},
            {"name": "json", "type": "json"},
        ]
    )
    for spec in specs:
        with pytest.raises(FieldValueError, match="valid Unicode"):
            check_value(spec, f"a{SURROGATE}" if spec.type != "json" else {"k": [SURROGATE]})


def test_query_text_refuses_surrogates() -> None:
    with pytest.raises(QueryError) as caught:
        parse(f'title = "{SURROGATE}"')
    assert caught.value.position == 9


# --- records over REST --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": SURROGATE}, "title"),
        ({"title": "ok", "status": f"x{SURROGATE}"}, "status"),
        ({"title": "ok", "meta": {"deep": [{"er": SURROGATE}]}}, "meta"),
        ({"title": "ok", "meta": {SURROGATE: 1}}, "meta"),
        ({"title": "ok", SURROGATE: 1}, "\\ud800"),
        ({"title": "ok", "owner": "\udc00"}, "owner"),
        ({"title": "ok", "meta": nested(33)}, "meta"),
    ],
)
def test_invalid_text_or_depth_is_a_400_naming_the_field_and_stores_nothing(
    staff_api: APIClient, products: Collection, body: dict[str, Any], field: str
) -> None:
    response = post_raw(staff_api, URL, body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Record.objects.count() == 0
    assert staff_api.get(URL).status_code == 200


def test_json_nested_32_levels_is_stored_and_read_back(staff_api: APIClient, products: Collection) -> None:
    response = post_raw(staff_api, URL, {"title": "ok", "meta": nested(32)})
    assert response.status_code == 201, response.content
    record = staff_api.get(f"{URL}{response.json()['id']}/").json()
    assert record["meta"] == nested(32)


def test_a_document_nested_a_thousand_levels_is_a_400(staff_api: APIClient, products: Collection) -> None:
    for depth in (70, 1_000, 100_000):
        raw = '{"title": "ok", "meta": ' + "[" * depth + "]" * depth + "}"
        response = staff_api.post(URL, raw, content_type="application/json")
        assert response.status_code == 400, depth
        assert response.json()["code"] == "parse_error"
    assert Record.objects.count() == 0


def test_updates_refuse_surrogates_too(staff_api: APIClient, products: Collection) -> None:
    record = post_raw(staff_api, URL, {"title": "ok"}).json()
    for method in ("patch", "put"):
        response = post_raw(staff_api, f"{URL}{record['id']}/", {"title": f"x{SURROGATE}"}, method=method)
        assert response.status_code == 400
        assert "title" in response.json()
    assert staff_api.get(f"{URL}{record['id']}/").json()["title"] == "ok"


def test_services_refuse_surrogates_from_python_code(products: Collection) -> None:
    with pytest.raises(Exception, match="valid Unicode"):
        services.record_create(collection=products, data={"title": SURROGATE})
    assert Record.objects.count() == 0


def test_collection_definitions_refuse_surrogates(staff_api: APIClient, db: None) -> None:
    select = {"name": "s", "type": "select", "options": {"values": ["a", SURROGATE]}}
    for body in (
        {"name": "things", "fields": [select]},
        {"name": "things", "fields": [{"name": "t", "type": "text", "options": {SURROGATE: 1}}]},
        {"name": "things", "list_rule": f'id = "{SURROGATE}"'},
        {"name": f"x{SURROGATE}"},
    ):
        response = post_raw(staff_api, "/api/v1/collections/", body)
        assert response.status_code == 400, body
    assert not Collection.objects.exists()
    assert staff_api.get("/api/v1/collections/").status_code == 200


def test_token_request_refuses_surrogates_and_nul(anon: APIClient) -> None:
    for username in (SURROGATE, "a\x00"):
        response = post_raw(anon, "/api/v1/auth/token", {"username": username, "password": "x"})
        assert response.status_code == 400
        assert "username" in response.json()


# --- query strings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query_string",
    [
        "query=title%3D%22%ED%A0%80%22",  # a surrogate, UTF-8 encoded: not valid UTF-8
        "title=%ED%A0%80",
        "title__in=a,%FF",
        "title=%00",
        "ordering=%00",
        "%FF=1",
    ],
)
def test_query_parameters_that_are_not_valid_text_are_a_400(
    anon: APIClient, products: Collection, query_string: str
) -> None:
    response = anon.get(f"{URL}?{query_string}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_parameter"


def test_a_nul_in_the_path_is_a_404(staff_api: APIClient, products: Collection) -> None:
    for url in (f"{URL}%00/", "/api/v1/collections/%00/", "/api/v1/collections/a%00/records/"):
        response = staff_api.get(url)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_in_filters_take_at_most_100_values(anon: APIClient, products: Collection) -> None:
    values = ",".join(str(n) for n in range(MAX_IN_VALUES))
    assert anon.get(URL, {"price__in": values}).status_code == 200
    for count in (MAX_IN_VALUES + 1, 1_000, 5_000):
        response = anon.get(URL, {"price__in": ",".join(str(n) for n in range(count))})
        assert response.status_code == 400, count
        assert "price__in" in response.json()


def test_at_most_32_filter_parameters(anon: APIClient, make_collection: Any) -> None:
    fields = [{"name": f"f{n}", "type": "number"} for n in range(40)]
    make_collection("wide", fields, list_rule="")
    url = "/api/v1/collections/wide/records/"
    assert anon.get(url, {f"f{n}__gte": 0 for n in range(32)}).status_code == 200
    response = anon.get(url, {f"f{n}__gte": 0 for n in range(33)})
    assert response.status_code == 400
    assert "filters" in response.json()


# --- patterns -----------------------------------------------------------------------------------

PATTERN_FIELD = {"name": "slug", "type": "text", "options": {"pattern": "^([a-z0-9]+)+$"}}


@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)b", "(?<!a)b", "(?P<x>a)(?P=x)", "a{1000}{1000}", "["])
def test_patterns_re2_cannot_run_are_a_400_when_saved(staff_api: APIClient, db: None, pattern: str) -> None:
    field = {"name": "slug", "type": "text", "options": {"pattern": pattern}}
    response = staff_api.post("/api/v1/collections/", {"name": "pages", "fields": [field]}, format="json")
    assert response.status_code == 400
    assert "pattern" in response.json()["fields"][0]
    assert not Collection.objects.exists()


def test_patterns_match_as_before(staff_api: APIClient, make_collection: Any) -> None:
    make_collection("pages", [PATTERN_FIELD], create_rule="", list_rule="")
    url = "/api/v1/collections/pages/records/"
    assert staff_api.post(url, {"slug": "abc123"}, format="json").status_code == 201
    refused = staff_api.post(url, {"slug": "a" * 5_000 + "!"}, format="json")
    assert refused.status_code == 400
    assert "slug" in refused.json()


def test_a_stored_pattern_re2_cannot_run_refuses_writes_with_a_400(staff_api: APIClient, db: None) -> None:
    """A pattern saved before patterns ran on RE2 (never through the services now)."""
    field = {"name": "slug", "type": "text", "options": {"pattern": "(a)\\1"}}
    Collection.objects.create(name="legacy", fields=[field], create_rule="")
    response = staff_api.post("/api/v1/collections/legacy/records/", {"slug": "aa"}, format="json")
    assert response.status_code == 400
    assert "cannot be run" in response.json()["slug"][0]


# --- errors as JSON -----------------------------------------------------------------------------


def test_a_session_write_without_its_csrf_token_is_403_csrf_failed(staff: User, products: Collection) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post(URL, {"title": "x"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "csrf_failed"
    assert Record.objects.count() == 0
    assert client.get(URL).status_code == 200  # reads need no token


def test_a_body_over_the_upload_limit_is_413_json(staff_api: APIClient, products: Collection, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = post_raw(staff_api, URL, {"title": "x", "meta": "x" * 20_000})
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    form = staff_api.post(URL, {"title": "x", "meta": "x" * 20_000})  # multipart
    assert form.status_code == 413
    assert Record.objects.count() == 0
    assert post_raw(staff_api, URL, {"title": "x", "meta": "x" * 5_000}).status_code == 201


def test_a_host_not_allowed_is_400_json_under_api_only(anon: APIClient, products: Collection, settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["good.example"]
    response = anon.get(URL, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"detail": "The Host header is not one this server answers to.", "code": "invalid_host"}
    assert anon.get(URL, HTTP_HOST="good.example").status_code == 200
    page = anon.get("/admin/login/", HTTP_HOST="evil.example")
    assert page.status_code == 400
    assert page["Content-Type"].startswith("text/html")


def test_django_csrf_failures_and_403s_under_api_are_json(staff: User, db: None) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    refused = client.post("/api/v1/presence")  # a plain Django view: Django's CSRF middleware answers
    assert refused.status_code == 403
    assert refused.json()["code"] == "csrf_failed"
    page = client.post("/admin/logout/")
    assert page.status_code == 403
    assert page["Content-Type"].startswith("text/html")


def test_django_error_handlers_answer_json_under_api_only(rf: Any) -> None:
    from django.core.exceptions import PermissionDenied, SuspiciousOperation

    from fastcms.errors import json_or_html_400, json_or_html_403

    assert json_or_html_403(rf.get("/api/v1/x"), PermissionDenied()).status_code == 403
    assert json.loads(json_or_html_403(rf.get("/api/v1/x"), PermissionDenied()).content)["code"] == "permission_denied"
    assert json.loads(json_or_html_400(rf.get("/api/v1/x"), SuspiciousOperation()).content)["code"] == "bad_request"
    assert json_or_html_400(rf.get("/admin/"), SuspiciousOperation())["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("digits", ["²", "٣", "\uff11", "0x1", "1" * 19, " 1", "-1"])
def test_user_ids_are_ascii_digits_within_64_bits(staff_api: APIClient, make_collection: Any, digits: str) -> None:
    # "²" is a digit to `str.isdigit` that `int` refuses; "٣" and a full-width 1 are digits `int` reads as 3 and 1.
    make_collection("owned", [{"name": "owner", "type": "user"}])
    response = staff_api.post("/api/v1/collections/owned/records/", {"owner": digits}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"owner": [f"User '{digits}' does not exist."]}
    assert user_pk(digits) is None


def test_user_pk_reads_plain_ids() -> None:
    assert user_pk("1") == 1
    assert user_pk(42) == 42
    assert user_pk("9" * 18) == 10**18 - 1
