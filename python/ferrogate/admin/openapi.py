"""The OpenAPI 3.1 document of the admin plane, generated from the route table.

Schemas come from the pydantic models (JSON Schema 2020-12, which OpenAPI 3.1 uses as is);
each operation lists its permission (``x-permission``), its errors in OpenAI's shape, and the
bearer security scheme (none for the document itself).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ferrogate import __version__
from ferrogate.admin.table import AdminRoute

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_ERRORS = {
    "400": "Invalid JSON or field (param names it)",
    "401": "Missing or incorrect credential",
    "403": "The caller's role lacks the permission",
    "404": "No such object (or not visible to the caller)",
    "409": "Conflict (duplicate name, object still referenced)",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document(routes: tuple[AdminRoute, ...], own_path: str) -> dict[str, Any]:
    """Build the document for ``routes`` (plus ``GET own_path``, the document itself)."""
    models: set[type[BaseModel]] = set()
    for r in routes:
        models.add(r.response)
        if r.request is not None:
            models.add(r.request)
    _, defs = models_json_schema(
        [(mdl, "validation") for mdl in sorted(models, key=lambda x: x.__name__)],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = _ERROR
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "operationId": r.handler.__name__,
            "summary": r.summary,
            "tags": [r.path.split("/")[3]],
            "x-permission": r.permission.value,
            "security": [{"bearer": []}],
            "responses": {
                str(r.status): {"description": "OK", "content": {"application/json": {"schema": _ref(r.response)}}},
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                    for code, text in _ERRORS.items()
                },
            },
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", r.path)
        ]
        if r.query is not None:
            for name, info in r.query.model_json_schema()["properties"].items():
                schema = {k: v for k, v in info.items() if k != "title"}
                params.append({"name": name, "in": "query", "required": False, "schema": schema})
        if params:
            op["parameters"] = params
        if r.request is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(r.request)}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    paths[own_path] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["meta"],
            "x-permission": "public",
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ferrogate admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
