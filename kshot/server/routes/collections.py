"""``/v1/collections``: list and create collections; the index routes under each one.

REST shape: a collection is a path segment, ``/v1/collections/{collection}/select`` and so on
for every route that reads or writes an index (select, prompt, their batches, examples, index).
The same route bodies serve ``/v1/...`` (the default collection) and the collection paths:
:func:`in_collection` re-mounts a router's routes under the collection prefix with one more
dependency that resolves the name, so a request body means the same thing on both. A path
segment rather than a body field, because the examples routes are GETs and DELETEs with no body,
and because access rules and logs can then tell collections apart by URL alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from kshot.server.collections import create_empty
from kshot.server.deps import CollectionAccess, ReadAccess, StateDep, WriteAccess
from kshot.server.errors import ApiError
from kshot.server.responses import BODY, COLLECTION, CONFLICT, INDEX, READ, WRITE, errors
from kshot.server.settings import COLLECTION_NAME

__all__ = ["PREFIX", "in_collection", "router"]

#: Where the routes of one collection live.
PREFIX = "/v1/collections/{collection}"

router = APIRouter(prefix="/v1/collections", tags=["collections"])


class CollectionInfo(BaseModel):
    """One collection as ``GET /v1/collections`` lists it."""

    name: str
    count: int
    encoder: str
    dimension: int
    factory: str
    read_only: bool


class CollectionsResponse(BaseModel):
    """The collections this server holds, by name."""

    collections: list[CollectionInfo]


class CreateCollectionRequest(BaseModel):
    """A new, empty collection: its name, encoder and (optionally) FAISS factory."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: Annotated[str, Field(pattern=f"^{COLLECTION_NAME.pattern}$")]
    """A slug: 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit."""
    encoder: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    """The encoder of a served collection, or 'hashing:<dim>'; default: the default one's."""
    factory: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    """A FAISS factory string (default: exact 'Flat' search, right for a small collection)."""


@router.get(
    "",
    response_model=CollectionsResponse,
    dependencies=[ReadAccess],
    responses=errors(READ, INDEX),
)
def list_collections(state: StateDep) -> dict[str, Any]:
    """Every collection this server holds: name, example count, encoder, read-only or not."""
    if not state.ready:
        raise ApiError(
            503, "not_ready", "the server is still loading", headers={"Retry-After": "1"}
        )
    by_name = state.collections.by_name
    return {"collections": [by_name[name].info() for name in sorted(by_name)]}


@router.post(
    "",
    response_model=CollectionInfo,
    status_code=201,
    dependencies=[WriteAccess],
    responses=errors(WRITE, BODY, INDEX, CONFLICT),
)
async def create_collection(body: CreateCollectionRequest, state: StateDep) -> dict[str, Any]:
    """Create an empty collection under the server's collections_dir, writable at once.

    It is durable when the response returns: a restarted server serves it again.
    """
    settings = state.settings
    if settings.collections_dir is None:
        raise ApiError(
            403,
            "collections_disabled",
            "this server creates no collections: start it with KSHOT_COLLECTIONS_DIR=<dir> "
            "(--collections-dir DIR) to create them there",
        )
    if not state.ready:
        raise ApiError(
            503, "not_ready", "the server is still loading", headers={"Retry-After": "1"}
        )
    encoder = body.encoder
    if encoder is None:
        if state.index is None:
            raise ApiError(
                422,
                "validation_error",
                "encoder: this server has no default collection to take the encoder from; "
                "give one ('hashing:<dim>' or a sentence-transformers model name)",
            )
        encoder = state.index.encoder_name
    root: Path = settings.collections_dir
    created = await anyio.to_thread.run_sync(
        lambda: create_empty(
            state.collections, root, body.name, encoder=encoder, factory=body.factory
        )
    )
    state.count_write()
    return created.info()


def in_collection(source: APIRouter) -> APIRouter:
    """``source``'s ``/v1/...`` routes again under ``/v1/collections/{collection}/...``.

    Each keeps its endpoint, models, status and dependencies, and gains the dependency that
    resolves the collection (after the access checks, so an unauthorised client learns no
    names) and the 404 it answers for an unknown one.
    """
    mounted = APIRouter()
    for route in source.routes:
        if not isinstance(route, APIRoute):
            continue
        mounted.add_api_route(
            PREFIX + route.path.removeprefix("/v1"),
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            tags=["collections", *route.tags],
            dependencies=[*route.dependencies, CollectionAccess],
            summary=route.summary,
            description=route.description,
            responses={**route.responses, **errors(COLLECTION)},
            name=f"{route.name}_in_collection",
            response_class=route.response_class,
            openapi_extra=route.openapi_extra,
        )
    return mounted
