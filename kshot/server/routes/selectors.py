"""``GET /v1/selectors``: the registered selectors and their parameters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from kshot.selector.base import available_selectors
from kshot.server.deps import ReadAccess
from kshot.server.responses import READ, errors
from kshot.server.schemas import SelectorsResponse

__all__ = ["router"]

router = APIRouter(
    prefix="/v1",
    tags=["selectors"],
    dependencies=[ReadAccess],
    responses=errors(READ),
)


@router.get("/selectors", response_model=SelectorsResponse)
def selectors() -> dict[str, Any]:
    """Names, descriptions and parameter schemas of every registered selector."""
    return {"selectors": [cls.schema() for cls in available_selectors().values()]}
