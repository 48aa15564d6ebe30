"""``/openapi.json``, ``/docs`` and ``/redoc``, behind the read key like every other read.

With ``auth="all"`` they need ``Authorization: Bearer <key>`` too, since the API's shape is
itself something the setting keeps private; a browser sends no such header, so there the
interactive pages need a proxy that adds it (or fetch ``/openapi.json`` with the key).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from kshot.server.deps import ReadAccess
from kshot.server.responses import finish_openapi

__all__ = ["OPENAPI_URL", "router"]

#: Where the OpenAPI document is served.
OPENAPI_URL = "/openapi.json"

router = APIRouter(include_in_schema=False, dependencies=[ReadAccess])


@router.get(OPENAPI_URL)
def openapi(request: Request) -> dict[str, Any]:
    """The OpenAPI document of this server."""
    schema: dict[str, Any] = request.app.openapi()
    return finish_openapi(schema)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API documentation (Swagger UI)."""
    return get_swagger_ui_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - docs")


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """API documentation (ReDoc)."""
    return get_redoc_html(openapi_url=OPENAPI_URL, title=f"{request.app.title} - ReDoc")
