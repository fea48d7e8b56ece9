"""The query language: syntax, errors with positions, coercion, null rules and macros."""

from __future__ import annotations

from typing import Any

import pytest

from collections_app.query import FALSE, TRUE, Auth, QueryError, compile_text, parse
from collections_app.schema import load_fields

FIELDS = {
    spec.name: spec
    for spec in load_fields(
        [
            {"name": "title", "type": "text"},
            {"name": "status", "type": "select", "options": {"values": ["draft", "published"]}},
            {"name": "price", "type": "number"},
            {"name": "featured", "type": "bool"},
            {"name": "active", "type": "bool"},
            {"name": "author", "type": "text"},
            {"name": "owner", "type": "user"},
            {"name": "day", "type": "date"},
            {"name": "at", "type": "datetime"},
            {"name": "deleted_at", "type": "datetime"},
            {"name": "meta", "type": "json"},
            {"name": "secret", "type": "text", "hidden": True},
        ]
    )
}
ALICE = Auth(id="7", username="alice")


def matches(query: str, record: dict[str, Any], **kwargs: Any) -> bool:
    kwargs.setdefault("fields", FIELDS)
    return compile_text(query, **kwargs).matches(record)


def error_of(query: str, **kwargs: Any) -> QueryError:
    kwargs.setdefault("fields", FIELDS)
    with pytest.raises(QueryError) as caught:
        compile_text(query, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("query", "record", "expected"),
    [
        ("status=published", {"status": "published"}, True),
        ("status=published", {"status": "draft"}, False),
        ("price>100", {"price": 150}, True),
        ("price>100", {"price": 100}, False),
        ("active=true", {"active": True}, True),
        ("active=true", {"active": False}, False),
        ("author=john", {"author": "john"}, True),
        (
            'status = "published" && (price >= 10 || featured = true)',
            {"status": "published", "price": 5, "featured": True},
            True,
        ),
        ('status = "published" && (price >= 10 || featured = true)', {"status": "published", "price": 5}, False),
        ('title ~ "django"', {"title": "Learning Django fast"}, True),
        ('title !~ "django"', {"title": "Learning Django fast"}, False),
        ("deleted_at = null", {}, True),
        ("deleted_at = null", {"deleted_at": None}, True),
        ("deleted_at = null", {"deleted_at": "2026-01-01T00:00:00.000000Z"}, False),
        ("deleted_at != null", {"deleted_at": "2026-01-01T00:00:00.000000Z"}, True),
    ],
)
def test_spec_examples(query: str, record: dict[str, Any], expected: bool) -> None:
    assert matches(query, record) is expected


def test_owner_macro_matches_the_callers_id() -> None:
    assert matches("owner = @request.auth.id", {"owner": "7"}, auth=ALICE)
    assert not matches("owner = @request.auth.id", {"owner": "8"}, auth=ALICE)


@pytest.mark.parametrize("op", ["=", "!=", ">", ">=", "<", "<=", "~", "!~"])
def test_field_macro_comparisons_are_false_for_anonymous_callers(op: str) -> None:
    assert compile_text(f"author {op} @request.auth.id", fields=FIELDS) is FALSE


def test_anonymous_auth_id_is_null() -> None:
    assert compile_text("@request.auth.id = null", fields=FIELDS) is TRUE
    assert compile_text("@request.auth.id != null", fields=FIELDS) is FALSE
    assert compile_text("@request.auth.id != null", fields=FIELDS, auth=ALICE) is TRUE
    assert compile_text("@request.auth.username = alice", fields=FIELDS, auth=ALICE) is TRUE


def test_right_side_bare_word_is_a_literal_not_a_field() -> None:
    assert matches("title=price", {"title": "price", "price": 3})
    assert matches("id=abc123def456ghi", {"id": "abc123def456ghi"})


def test_bare_number_on_a_text_field_is_the_string() -> None:
    assert matches("title = 123", {"title": "123"})
    assert matches("title = 1e2", {"title": "1e2"})
    assert not matches("title = 1e2", {"title": "100"})


def test_quoted_number_coerces_to_a_number_field() -> None:
    assert matches('price = "5"', {"price": 5})
    assert matches("price = 5.0", {"price": 5})


@pytest.mark.parametrize("literal", ["abc", "NaN", "Infinity", "-inf", "true", '"5x"', "1e999"])
def test_non_numbers_on_a_number_field_are_errors(literal: str) -> None:
    error = error_of(f"price>{literal}")
    assert error.position == 6
    assert error.code == "invalid_query"


def test_numbers_compare_as_numbers_not_text() -> None:
    assert matches("price > 9", {"price": 10})
    assert not matches("price > 9", {"price": "10"})  # a string value is not a number: null


def test_text_equality_is_case_sensitive_and_contains_is_not() -> None:
    assert not matches("title = hello", {"title": "Hello"})
    assert matches("title ~ HELLO", {"title": "say hello"})


def test_null_rules() -> None:
    assert matches("price != 5", {})  # null differs from a value
    assert not matches("price != null", {})
    for op in (">", ">=", "<", "<="):
        assert not matches(f"price {op} 5", {})
    assert not matches('title ~ "x"', {})
    assert matches('title !~ "x"', {})


def test_dates_compare_chronologically() -> None:
    assert matches("at > 2026-01-01T10:00:00+02:00", {"at": "2026-01-01T09:00:00.000000Z"})
    assert not matches("at > 2026-01-01T12:00:00+02:00", {"at": "2026-01-01T09:00:00.000000Z"})
    assert matches('day >= "2026-02-01"', {"day": "2026-02-15"})
    assert matches("created < 2030-01-01", {"created": "2026-11-25T10:30:00.000000Z"})


def test_bool_and_json_fields_accept_only_their_values() -> None:
    assert matches('active = "true"', {"active": True})
    assert error_of("active = 1").position == 9
    assert error_of("meta = 1").position == 7
    assert matches("meta = null", {"meta": None})
    assert matches("meta != null", {"meta": {"a": 1}})
    assert error_of("active > true").position == 7


@pytest.mark.parametrize(
    ("query", "position", "fragment"),
    [
        ("nope = 1", 0, "unknown field"),
        ("price >", 7, "expected a value"),
        ("price", 5, "expected an operator"),
        ("(price > 1", 0, "never closed"),
        ("price > 1)", 9, "unexpected ')'"),
        ("price == 1", 7, "unexpected '='"),
        ("price & 1", 6, "unknown operator '&'"),
        ("price ! 1", 6, "unknown operator '!'"),
        ('title = "abc', 8, "unterminated"),
        ('title = "a\\nb"', 10, "invalid escape"),
        ("title = a\tb", 9, "U+0009"),
        ("title = a\nb", 9, "U+000A"),
        ("title = a\x7fb", 9, "U+007F"),
        ("price > 1 price > 2", 10, "expected '&&'"),
        ("title ~ @request.foo", 8, "unknown macro"),
        ("price > null", 6, "null can only"),
        ("price ~ 5", 6, "cannot be used"),
        ('"price" = 5', 0, "expected a field name"),
        ("&& price = 1", 0, "expected a field name"),
        ("secret = x", 0, "unknown field"),
    ],
)
def test_errors_carry_a_position(query: str, position: int, fragment: str) -> None:
    error = error_of(query)
    assert error.position == position
    assert fragment in error.detail
    assert error.as_dict() == {"detail": error.detail, "code": "invalid_query", "position": position}


def test_whole_query_limits() -> None:
    assert error_of("title = " + "x" * 2041).position is None
    assert compile_text("title = " + "x" * 2040, fields=FIELDS)
    many = " && ".join(["price > 1"] * 33)
    assert "at most 32" in error_of(many).detail
    assert compile_text(" && ".join(["price > 1"] * 32), fields=FIELDS)
    assert "deeper than 16" in error_of("(" * 17 + "price > 1" + ")" * 17).detail
    assert compile_text("(" * 16 + "price > 1" + ")" * 16, fields=FIELDS)


def test_empty_or_all_space_query_is_no_filter() -> None:
    assert parse("") is None
    assert parse("    ") is None
    assert compile_text("   ", fields=FIELDS) is TRUE


def test_escapes_in_strings() -> None:
    assert matches(r'title = "say \"hi\" \\o/"', {"title": 'say "hi" \\o/'})
    assert matches(r"title = 'it\'s'", {"title": "it's"})


def test_hidden_fields_are_allowed_for_staff_and_rules() -> None:
    assert matches("secret = x", {"secret": "x"}, allow_hidden=True)


def test_lenient_mode_makes_foreign_comparisons_false() -> None:
    lenient = {"fields": FIELDS, "lenient": True}
    assert compile_text("nope = 1", **lenient) is FALSE
    assert compile_text("price = abc", **lenient) is FALSE
    assert compile_text("secret = x", **lenient) is FALSE
    assert compile_text("price ~ 5", **lenient) is FALSE
    assert compile_text("nope = 1 || price > 5", **lenient).matches({"price": 6})
    with pytest.raises(QueryError):
        compile_text("price >", **lenient)


def test_unicode_bare_words_and_non_ascii_case() -> None:
    assert matches("title = café", {"title": "café"})
    # ~ folds ASCII letters only, identically in Python, SQLite and PostgreSQL.
    assert matches("title ~ CAFé", {"title": "café"})
    assert not matches("title ~ CAFÉ", {"title": "café"})
