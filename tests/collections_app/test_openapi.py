"""OpenAPI: each collection's records as typed operations, following schema changes at once."""

from __future__ import annotations

from typing import Any

import pytest
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

from collections_app import services
from collections_app.models import Collection

PRODUCTS = "/api/v1/collections/products/records/"


def schema_of(client: APIClient) -> dict[str, Any]:
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_each_collection_has_typed_record_operations(staff_api: APIClient, products: Collection) -> None:
    schema = schema_of(staff_api)
    validate_schema(schema)
    operations = {method: op for method, op in schema["paths"][PRODUCTS].items()}
    assert set(operations) == {"get", "post"}
    assert set(schema["paths"][PRODUCTS + "{id}/"]) == {"get", "put", "patch", "delete"}
    assert operations["post"]["tags"] == ["products"]
    assert operations["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProductsRecordRequest"
    }
    assert operations["post"]["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProductsRecord"
    }
    assert "query" in [parameter["name"] for parameter in operations["get"]["parameters"]]
    request = schema["components"]["schemas"]["ProductsRecordRequest"]
    assert request["required"] == ["title"]
    assert request["additionalProperties"] is False
    fields = request["properties"]
    assert fields["title"] == {"type": "string", "maxLength": 200}
    assert fields["price"] == {"type": "number", "minimum": 0, "nullable": True}
    assert fields["active"]["type"] == "boolean"
    assert fields["status"]["enum"] == ["draft", "published"]
    assert fields["released"]["format"] == "date"
    assert "secret" in fields  # staff see hidden fields
    record = schema["components"]["schemas"]["ProductsRecord"]
    assert record["required"][:4] == ["id", "collection", "created", "updated"]
    assert record["properties"]["created"]["format"] == "date-time"


def test_schema_follows_a_new_field(staff_api: APIClient, products: Collection) -> None:
    before = schema_of(staff_api)["components"]["schemas"]["ProductsRecordRequest"]["properties"]
    assert "stock" not in before
    services.collection_update(
        collection=products, changes={"fields": [*products.fields, {"name": "stock", "type": "number"}]}
    )
    after = schema_of(staff_api)["components"]["schemas"]["ProductsRecordRequest"]["properties"]
    assert after["stock"] == {"type": "number", "nullable": True}


def test_anonymous_callers_see_what_rules_let_them_do(anon: APIClient, make_collection: Any, products: Any) -> None:
    make_collection("internal", [{"name": "note", "type": "text"}])  # every rule null: staff only
    schema = schema_of(anon)
    validate_schema(schema)
    assert "/api/v1/collections/internal/records/" not in schema["paths"]
    assert "InternalRecord" not in schema["components"]["schemas"]
    assert "secret" not in schema["components"]["schemas"]["ProductsRecord"]["properties"]  # hidden
    assert set(schema["paths"][PRODUCTS]) == {"get", "post"}  # list "", create: signed-in users


def test_staff_only_operations_are_left_out_for_others(alice_api: APIClient, make_collection: Any) -> None:
    make_collection("notes", [{"name": "text", "type": "text"}], list_rule="", view_rule="")
    schema = schema_of(alice_api)
    assert set(schema["paths"]["/api/v1/collections/notes/records/"]) == {"get"}
    assert set(schema["paths"]["/api/v1/collections/notes/records/{id}/"]) == {"get"}


def test_token_endpoint_is_typed(anon: APIClient, db: None) -> None:
    schema = schema_of(anon)
    operation = schema["paths"]["/api/v1/auth/token/"]["post"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert request == "CredentialsRequest"
    assert set(schema["components"]["schemas"][request]["properties"]) == {"username", "password"}
    response = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    token = schema["components"]["schemas"][response]
    assert set(token["properties"]) == {"token", "user"}
    user = schema["components"]["schemas"][token["properties"]["user"]["$ref"].rsplit("/", 1)[1]]
    assert set(user["properties"]) == {"id", "username", "name", "is_staff"}
    assert "TokenRequestRequest" not in schema["components"]["schemas"]


def test_example_bodies_are_valid_records(staff_api: APIClient, products: Collection) -> None:
    """ "Try it out" starts from the request's example: it must be accepted as it is."""
    schemas = schema_of(staff_api)["components"]["schemas"]
    example = schemas["ProductsRecordRequest"]["example"]
    response = staff_api.post(PRODUCTS, example, format="json")
    assert response.status_code == 201, response.json()
    patch = schemas["PatchedProductsRecordRequest"]["example"]
    assert staff_api.patch(f"{PRODUCTS}{response.json()['id']}/", patch, format="json").status_code == 200


@pytest.mark.parametrize(
    "fields",
    [
        [{"name": "code", "type": "text", "required": True, "options": {"min_length": 9, "max_length": 12}}],
        [{"name": "n", "type": "number", "required": True, "options": {"max": -5}}],
        [{"name": "n", "type": "number", "required": True, "options": {"min": 3, "integer": True}}],
        [{"name": "when", "type": "datetime", "required": True}, {"name": "url", "type": "url"}],
    ],
)
def test_examples_fit_their_options(staff_api: APIClient, make_collection: Any, fields: list[dict[str, Any]]) -> None:
    make_collection("things", fields)
    example = schema_of(staff_api)["components"]["schemas"]["ThingsRecordRequest"]["example"]
    response = staff_api.post("/api/v1/collections/things/records/", example, format="json")
    assert response.status_code == 201, (example, response.json())


def test_schema_without_a_request_reads_no_collection(products: Collection) -> None:
    """The deploy check generates the schema before any database may answer."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    assert PRODUCTS not in schema["paths"]
    assert "/api/v1/collections/{collection_name}/records/" in schema["paths"]
