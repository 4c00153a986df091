"""The admin plane's OpenAPI document, as served: valid OpenAPI 3.1 (openapi-spec-validator), one
operation per route of the table with its permission, and schemas the real answers conform to.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from ferrogate.admin.api import OPENAPI_PATH
from ferrogate.admin.routes import ROUTES
from tests.e2e.test_admin_api import MASTER_KEY, Admin, running_gateway
from tests.support import Gateway

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("admin-openapi"), "sqlite", "admin_openapi") as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def doc(client: httpx.Client) -> dict[str, Any]:
    resp = client.get(OPENAPI_PATH)  # no credential
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    return body


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


def schema_validator(doc: dict[str, Any], name: str) -> Draft202012Validator:
    assert name in doc["components"]["schemas"], name
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    # the validator does catch a broken document (so the line above can fail)
    broken = copy.deepcopy(doc)
    broken["paths"]["/admin/v1/teams"]["get"]["parameters"][0]["in"] = "body"
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_every_route_is_an_operation_with_its_permission(doc: dict[str, Any]) -> None:
    operations = {(path, m) for path, item in doc["paths"].items() for m in item if m in HTTP_METHODS}
    assert operations == {(r.path, r.method.lower()) for r in ROUTES} | {(OPENAPI_PATH, "get")}
    op_ids = [item[m]["operationId"] for path, item in doc["paths"].items() for m in item if m in HTTP_METHODS]
    assert len(op_ids) == len(set(op_ids)) == len(ROUTES) + 1
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        assert op["x-permission"] == route.permission.value, route
        assert op["security"] == [{"bearer": []}], route
        assert {"401", "403", str(route.status)} <= set(op["responses"]), route
        ok = op["responses"][str(route.status)]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{route.response.__name__}"}, route
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", route.path)), route
        if route.query is not None:
            query = {p["name"] for p in op["parameters"] if p["in"] == "query"}
            wire = {field.alias or name for name, field in route.query.model_fields.items()}
            assert query == wire, route
    public = doc["paths"][OPENAPI_PATH]["get"]
    assert (public["x-permission"], public["security"]) == ("public", [])
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_request_bodies_reference_existing_schemas(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    with_body = [r for r in ROUTES if r.request is not None]
    assert len(with_body) >= 7
    for route in with_body:
        body = doc["paths"][route.path][route.method.lower()]["requestBody"]
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{route.request.__name__}", route  # type: ignore[union-attr]
        assert ref.rsplit("/", 1)[1] in schemas
        assert body["required"] is True
    for route in ROUTES:
        if route.request is None:
            assert "requestBody" not in doc["paths"][route.path][route.method.lower()], route
    dangling = {r for r in refs(doc) if r.rsplit("/", 1)[1] not in schemas or not r.startswith("#/components/schemas/")}
    assert dangling == set()


def test_schemas_say_what_requests_accept(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["TeamCreate"]["required"] == ["name"]
    assert schemas["TeamCreate"]["additionalProperties"] is False  # unknown fields are refused
    assert "key" in schemas["KeySecret"]["required"]
    for name in ("KeyOut", "KeySecret"):
        assert not {"key_hash", "previous_hash"} & set(schemas[name]["properties"]), name
    assert "key" not in schemas["KeyOut"]["properties"]


def test_real_answers_conform_to_the_document(doc: dict[str, Any], client: httpx.Client) -> None:
    admin = Admin(client, MASTER_KEY)
    team = admin.team()
    schema_validator(doc, "TeamOut").validate(team)
    schema_validator(doc, "TeamList").validate(admin.ok("GET", "/teams"))
    user = admin.user(team["id"])
    schema_validator(doc, "UserOut").validate(user)
    key = admin.key(team["id"], user_id=user["id"], expires_at="2999-01-01T00:00:00Z")
    schema_validator(doc, "KeySecret").validate(key)
    schema_validator(doc, "KeyList").validate(admin.ok("GET", "/keys"))
    schema_validator(doc, "KeyOut").validate(admin.ok("POST", f"/keys/{key['id']}/revoke"))
    schema_validator(doc, "UpstreamList").validate(admin.ok("GET", "/llm/upstreams"))
    schema_validator(doc, "ModelGroupList").validate(admin.ok("GET", "/llm/model_groups"))
    schema_validator(doc, "Error").validate(admin.call("GET", "/teams/team_0000000000000000").json())
    # and a request the schema refuses is refused by the server too
    bad = {"name": "x", "rpm": 0}
    assert not schema_validator(doc, "TeamCreate").is_valid(bad)
    assert admin.call("POST", "/teams", bad).status_code == 400
