"""OpenAPI for records: each collection's records as operations of their own, typed from its fields.

drf-spectacular describes the views; `add_collection_operations` (a postprocessing hook) then adds,
for every collection the caller may use, `/api/v1/collections/<name>/records/` and its detail path
under a tag of the collection's name, with request and response schemas built from the fields. The
schema is generated per request, so it follows schema changes at once. Staff see every collection
and hidden fields; others see the collections and operations their rules do not reserve to staff.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from collections_app.models import Collection
from collections_app.rules import is_staff
from collections_app.schema import FieldSpec

RECORDS_PATH = "/api/v1/collections/{name}/records/"
GENERIC_LIST = "/api/v1/collections/{collection_name}/records/"
GENERIC_DETAIL = "/api/v1/collections/{collection_name}/records/{id}/"
# (method, detail path?, rule that must not be staff-only, operation id suffix, summary)
OPERATIONS = [
    ("get", False, "list_rule", "list", "List {name} records"),
    ("post", False, "create_rule", "create", "Create a {name} record"),
    ("get", True, "view_rule", "retrieve", "Read a {name} record"),
    ("put", True, "update_rule", "update", "Replace a {name} record's values"),
    ("patch", True, "update_rule", "partial_update", "Change some of a {name} record's values"),
    ("delete", True, "delete_rule", "destroy", "Delete a {name} record"),
]
ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail", "code"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": "Messages per field (`non_field_errors` for the body as a whole).",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
QUERY_PARAMETERS = [
    {
        "name": "query",
        "in": "query",
        "schema": {"type": "string"},
        "description": 'A filter in the query language, e.g. `status = "published" && price > 100`.',
    },
    {
        "name": "ordering",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Comma-separated field names, `-` for descending, e.g. `-created`.",
    },
    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
]

LEADING_TAGS = [
    {"name": "auth", "description": "A token for a username and password."},
    {"name": "collections", "description": "Schemas and access rules (staff only)."},
]
TRAILING_TAGS = [
    {"name": "records of any collection", "description": "The same operations for a collection named in the path."},
    {"name": "realtime", "description": "Server-Sent Event streams of changes and presence."},
    {"name": "presence", "description": "Who is connected."},
]

CREDENTIALS = inline_serializer(
    "Credentials",
    fields={"username": serializers.CharField(), "password": serializers.CharField(style={"input_type": "password"})},
)
TOKEN = inline_serializer(
    "Token",
    fields={
        "token": serializers.CharField(help_text="Send as `Authorization: Token <token>` (or `Bearer <token>`)."),
        "user": inline_serializer(
            "TokenUser",
            fields={
                "id": serializers.CharField(),
                "username": serializers.CharField(),
                "name": serializers.CharField(help_text="Full name, else the username."),
                "is_staff": serializers.BooleanField(),
            },
        ),
    },
)


class TokenScheme(OpenApiAuthenticationExtension):
    """The API token as a bearer token, so "Authorize" in the docs takes the token alone."""

    target_class = "collections_app.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The token from `POST /api/v1/auth/token`; `Authorization: Token <token>` works too.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    """The Django session (the admin's sign-in), as drf-spectacular describes DRF's own."""

    target_class = "collections_app.authentication.SessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}


# --- schemas from fields -----------------------------------------------------------------------


def component_prefix(name: str) -> str:
    """`blog_posts` -> `BlogPosts`."""
    return "".join(part.capitalize() for part in name.split("_")) or "Collection"


def field_schema(spec: FieldSpec) -> dict[str, Any]:
    """The JSON schema of one field's value."""
    options = spec.options
    schema: dict[str, Any]
    if spec.type == "text":
        schema = {"type": "string"}
        names = {"min_length": "minLength", "max_length": "maxLength", "pattern": "pattern"}
        schema.update({target: options[key] for key, target in names.items() if key in options})
    elif spec.type == "number":
        schema = {"type": "integer" if options.get("integer") else "number"}
        names = {"min": "minimum", "max": "maximum"}
        schema.update({target: options[key] for key, target in names.items() if key in options})
    elif spec.type == "bool":
        schema = {"type": "boolean"}
    elif spec.type in ("email", "url", "date", "datetime"):
        formats = {"email": "email", "url": "uri", "date": "date", "datetime": "date-time"}
        schema = {"type": "string", "format": formats[spec.type]}
    elif spec.type == "select":
        schema = {"type": "string", "enum": list(options["values"])}
    elif spec.type == "relation":
        schema = {"type": "string", "description": f"The id of a `{options['collection']}` record."}
    elif spec.type == "user":
        schema = {"type": "string", "description": "A user id."}
    else:  # json: any value
        schema = {"description": "Any JSON value."}
    if not spec.required:
        schema["nullable"] = True
    if spec.unique:
        schema["description"] = (schema.get("description", "") + " Unique.").strip()
    if spec.hidden:
        schema["description"] = (schema.get("description", "") + " Hidden: only staff see it.").strip()
    if spec.indexed:
        schema["description"] = (
            schema.get("description", "") + " Indexed: filters and ordering on it are fast."
        ).strip()
    return schema


def example_value(spec: FieldSpec) -> Any:
    """A value of the field for "Try it out", when one can be made up (None otherwise)."""
    options = spec.options
    if spec.type == "text":
        if "pattern" in options:
            return None
        return "example"[: options.get("max_length", 7)].ljust(options.get("min_length", 0), "x")
    if spec.type == "number":
        if "min" in options:
            return options["min"]
        return options["max"] if options.get("max", 1) < 1 else 1
    return {
        "bool": True,
        "email": "someone@example.com",
        "url": "https://example.com/",
        "date": "2026-01-01",
        "datetime": "2026-01-01T12:00:00Z",
        "select": options.get("values", [None])[0],
        "json": {"key": "value"},
    }.get(spec.type)


def record_schemas(collection: Collection, specs: list[FieldSpec]) -> dict[str, dict[str, Any]]:
    """Components for one collection: the record, its request bodies and its page of results."""
    prefix = component_prefix(collection.name)
    values = {spec.name: field_schema(spec) for spec in specs}
    example = {spec.name: value for spec in specs if (value := example_value(spec)) is not None}
    return {
        f"{prefix}Record": {
            "type": "object",
            "description": f"A record of `{collection.name}`: system fields, then every field (null when unset).",
            "properties": {
                "id": {"type": "string", "readOnly": True},
                "collection": {"type": "string", "readOnly": True, "enum": [collection.name]},
                "created": {"type": "string", "format": "date-time", "readOnly": True},
                "updated": {"type": "string", "format": "date-time", "readOnly": True},
                **values,
            },
            "required": ["id", "collection", "created", "updated", *values],
        },
        f"{prefix}RecordRequest": {
            "type": "object",
            "properties": values,
            "required": [spec.name for spec in specs if spec.required],
            "additionalProperties": False,
            "example": example,
        },
        f"Patched{prefix}RecordRequest": {
            "type": "object",
            "properties": values,
            "additionalProperties": False,
            "example": {key: value for key, value in list(example.items())[:1]},
        },
        f"Paginated{prefix}RecordList": {
            "type": "object",
            "properties": {
                "count": {"type": "integer"},
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
                "results": {"type": "array", "items": {"$ref": f"#/components/schemas/{prefix}Record"}},
            },
            "required": ["count", "next", "previous", "results"],
        },
    }


# --- operations --------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    described = {400: "Invalid values or query", 401: "Not authenticated", 403: "A rule refuses it", 404: "Not found"}
    return {str(code): _json(VALIDATION_ERROR if code == 400 else _ref("Error"), described[code]) for code in codes}


def operation(collection: Collection, method: str, detail: bool, suffix: str, summary: str) -> dict[str, Any]:
    prefix, name = component_prefix(collection.name), collection.name
    op: dict[str, Any] = {
        "operationId": f"records_{name}_{suffix}",
        "summary": summary.format(name=name),
        "tags": [name],
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}] if detail else [],
    }
    if suffix == "list":
        op["parameters"] = [*QUERY_PARAMETERS]
        op["responses"] = {
            "200": _json(_ref(f"Paginated{prefix}RecordList"), "A page of records"),
            **_errors(400, 401, 403),
        }
    elif suffix == "destroy":
        op["responses"] = {"204": {"description": "Deleted"}, **_errors(401, 403, 404)}
    else:
        body = f"Patched{prefix}RecordRequest" if suffix == "partial_update" else f"{prefix}RecordRequest"
        if method != "get":
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        status = "201" if suffix == "create" else "200"
        codes = (401, 404) if suffix == "retrieve" else (400, 401, 403, 404) if detail else (400, 401, 403)
        op["responses"] = {status: _json(_ref(f"{prefix}Record"), "The record"), **_errors(*codes)}
    return op


def visible_collections(user: Any) -> list[tuple[Collection, bool]]:
    """(collection, show hidden fields) for every collection `user` may do something with."""
    collections = Collection.objects.order_by("name")
    if is_staff(user):
        return [(collection, True) for collection in collections]
    return [(c, False) for c in collections if any(getattr(c, op[2]) is not None for op in OPERATIONS)]


def add_collection_operations(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: per-collection record operations and schemas.

    Collections are data, so they are read for a request's caller only; without a request (the
    deploy system check, `manage.py spectacular`) the schema has the generic record paths alone.
    """
    paths, schemas = result.setdefault("paths", {}), result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    security = copy.deepcopy(paths.get(GENERIC_LIST, {}).get("get", {}).get("security"))
    _describe_generic_paths(paths)
    tags: list[dict[str, str]] = []
    collections = visible_collections(request.user) if request is not None else []
    for collection, show_hidden in collections:
        specs = [spec for spec in collection.field_specs if show_hidden or not spec.hidden]
        schemas.update(record_schemas(collection, specs))
        for method, detail, rule, suffix, summary in OPERATIONS:
            if not show_hidden and getattr(collection, rule) is None:
                continue  # staff only: not an operation of this caller
            path = RECORDS_PATH.format(name=collection.name) + ("{id}/" if detail else "")
            op = operation(collection, method, detail, suffix, summary)
            if security is not None:
                op["security"] = copy.deepcopy(security)
            paths.setdefault(path, {})[method] = op
        tags.append({"name": collection.name, "description": f"Records of the `{collection.name}` collection."})
    result["tags"] = [*LEADING_TAGS, *tags, *TRAILING_TAGS]
    return result


def _describe_generic_paths(paths: dict[str, Any]) -> None:
    """The `{collection_name}` paths, for any collection: untyped bodies, generic records."""
    record = {"type": "object", "additionalProperties": True, "description": "A record: system fields and values."}
    for path in (GENERIC_LIST, GENERIC_DETAIL):
        for method, op in paths.get(path, {}).items():
            op["tags"] = ["records of any collection"]
            if method in ("post", "put", "patch"):
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
                }
            if method == "delete":
                continue
            status = "201" if method == "post" else "200"
            if method == "get" and path == GENERIC_LIST:
                page = {
                    "type": "object",
                    "properties": {"count": {"type": "integer"}, "results": {"type": "array", "items": record}},
                }
                op["responses"] = {status: _json(page, "A page of records")}
            else:
                op["responses"] = {status: _json(record, "The record")}
