"""The error responses each route documents in OpenAPI, and the JSON answer of the hot routes.

Every error body is :class:`~kshot.server.schemas.ErrorResponse`. The sets below follow where each
error comes from: the middleware (413 on any request; 400, 408, 415 on a body), uvicorn's
connection limit (503 as text), the auth dependencies (401, 403), validation (422) and the index
(404, 503 while it loads). The error content is spelled out as ``application/json`` (not given as
a ``model``, which FastAPI would file under the route's own media type, text for ``/metrics``);
:func:`finish_openapi` adds its schema to the document and removes FastAPI's own 422 schema,
which describes a body this server never sends.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import Response
from pydantic import BaseModel

from kshot.server.schemas import ErrorResponse

__all__ = [
    "BODY",
    "COLLECTION",
    "CONFLICT",
    "EXAMPLE",
    "INDEX",
    "PROXY",
    "READ",
    "WRITE",
    "errors",
    "finish_openapi",
    "json_response",
    "request_body",
]

_DESCRIPTIONS = {
    400: "The body is not valid JSON, not UTF-8, or nests too deeply (the message says where).",
    401: "The API key is missing or wrong (send 'Authorization: Bearer <key>').",
    403: "Writes are disabled on this server (read-only, or no key and no anonymous writes).",
    404: "Not found: no example with this id, no such collection, or a route this server was "
    "not started with (the message says which and how to start it).",
    409: "Conflict: a collection of that name already exists.",
    408: "The request body did not arrive within the server's body timeout.",
    413: "The request body is larger than the server's max_body_bytes.",
    415: "The request body is not sent as 'content-type: application/json'.",
    422: "The request is well-formed JSON but a field is invalid or over a server limit.",
    502: "The upstream model endpoint could not be reached or answered with something unusable.",
    504: "The upstream model endpoint did not answer within the upstream timeout.",
    503: "The index is still loading (JSON, with Retry-After), or the server is at its connection "
    "limit (plain text, from uvicorn).",
}

_ERROR_REF = "#/components/schemas/ErrorResponse"

#: Every route: any request may declare a body over the limit; uvicorn may refuse a connection.
ANY = (413, 503)
#: Routes behind the read key (``auth="all"``).
READ = (401,)
#: Routes that read a JSON body.
BODY = (400, 408, 415, 422)
#: Routes that need the loaded index.
INDEX = (503,)
#: The OpenAI-compatible routes: served only with an upstream or a local model (404 otherwise).
PROXY = (404, 502, 504)
#: Write routes.
WRITE = (401, 403)
#: Routes that address one example by id.
EXAMPLE = (404,)
#: Routes under ``/v1/collections/{collection}``: no such collection.
COLLECTION = (404,)
#: Routes that create something named: the name is taken.
CONFLICT = (409,)


def _plain(value: object) -> object:
    item = getattr(value, "item", None)  # a numpy scalar (a score) as its Python number
    if callable(item):
        return item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_response(content: dict[str, Any], status_code: int = 200) -> Response:
    """``content`` as JSON bytes, encoded once.

    A route that returns a dict under a ``response_model`` has FastAPI validate the dict into
    the model and dump it again before encoding; the selection and prompt routes build their
    dicts from kshot's own frozen records (whose shape the response models describe in
    OpenAPI, and tests pin), so they return this instead. The encoding is Starlette's
    ``JSONResponse``'s.
    """
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain
    ).encode("utf-8")
    return Response(body, status_code, media_type="application/json")


def errors(*groups: tuple[int, ...], passthrough: bool = False) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can fail in the ways ``groups`` (and :data:`ANY`) name.

    ``passthrough`` routes answer with the upstream's own status and body, whatever they are:
    OpenAPI's ``default`` response says so rather than pretending to know the upstream's codes.
    """
    codes = sorted({code for group in (ANY, *groups) for code in group})
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        content: dict[str, Any] = {"application/json": {"schema": {"$ref": _ERROR_REF}}}
        if code == 503:
            content["text/plain"] = {"schema": {"type": "string"}}
        out[code] = {"description": _DESCRIPTIONS[code], "content": content}
    if passthrough:
        out["default"] = {
            "description": "The upstream's own answer: its status, headers and body (an error "
            "in OpenAI's shape, {'error': {'message', 'type', ...}}), passed through unchanged.",
            "content": {"application/json": {"schema": {}}},
        }
    return out


#: Request bodies documented by hand (routes that read the raw body to forward it unchanged).
_REQUEST_MODELS: dict[str, type[BaseModel]] = {}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra=`` of a route that reads its JSON body itself but checks it as ``model``.

    :func:`finish_openapi` adds the model's schema to the document's components.
    """
    _REQUEST_MODELS[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def finish_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the error schema; drop FastAPI's default 422 (``HTTPValidationError``)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            default = responses.get("422", {}).get("content", {}).get("application/json", {})
            if default.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    models: dict[str, type[BaseModel]] = {"ErrorResponse": ErrorResponse, **_REQUEST_MODELS}
    for name, model in models.items():
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[name] = model_schema
    return schema
