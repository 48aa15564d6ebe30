"""``GET /v1/index``: what the served index holds."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kshot.server.deps import IndexDep, ReadAccess
from kshot.server.responses import INDEX, READ, errors
from kshot.server.schemas import IndexInfo

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["index"],
    dependencies=[ReadAccess],
    responses=errors(READ, INDEX),
)


@router.get("/index", response_model=IndexInfo)
def index_info(index: IndexDep) -> dict[str, Any]:
    """Example count, labels, filterable fields, encoder, dimension and FAISS factory."""
    info = index.info()
    return {
        "count": info["count"],
        "labels": info["labels"],
        "fields": info["fields"],
        "encoder": info["encoder"],
        "dimension": info["dim"],
        "factory": info["factory"],
        "nprobe": info["nprobe"],
        "kshot_version": info["kshot_version"],
    }
