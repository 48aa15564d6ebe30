"""``POST /v1/select`` and ``POST /v1/select:batch``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from kshot.server.deps import IndexDep, ReadAccess, SettingsDep
from kshot.server.responses import BODY, INDEX, READ, errors, json_response
from kshot.server.schemas import (
    SelectBatchRequest,
    SelectBatchResponse,
    SelectRequest,
    SelectResponse,
)
from kshot.server.service import scored_rows, select_all

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["select"],
    dependencies=[ReadAccess],
    responses=errors(READ, BODY, INDEX),
)


@router.post("/select", response_model=SelectResponse)
def select(body: SelectRequest, index: IndexDep, settings: SettingsDep) -> Response:
    """Pick up to k examples for one query, best first."""
    found = select_all(
        index, settings, [body.query], k=body.k, selector=body.selector, params=body.params,
        filter=body.filter, exclude=body.exclude,
    )  # fmt: skip
    return json_response({"examples": scored_rows(found[0])})


@router.post("/select:batch", response_model=SelectBatchResponse)
def select_batch(body: SelectBatchRequest, index: IndexDep, settings: SettingsDep) -> Response:
    """Pick up to k examples for each of many queries (one encoder call)."""
    found = select_all(
        index, settings, body.queries, k=body.k, selector=body.selector, params=body.params,
        filter=body.filter, exclude=body.exclude,
    )  # fmt: skip
    return json_response({"results": [{"examples": scored_rows(f)} for f in found]})
