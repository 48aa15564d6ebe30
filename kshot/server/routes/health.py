"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from kshot.server.deps import ReadAccess, StateDep
from kshot.server.errors import ApiError
from kshot.server.responses import INDEX, READ, errors
from kshot.server.schemas import HealthResponse

__all__ = ["router"]

router = APIRouter(tags=["service"])

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz", response_model=HealthResponse, responses=errors())
def healthz() -> dict[str, str]:
    """Liveness: the process answers (never needs a key)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=HealthResponse,
    dependencies=[ReadAccess],
    responses=errors(READ, INDEX),
)
def readyz(state: StateDep) -> dict[str, str]:
    """Readiness: 200 once the index and token counter are loaded, 503 before."""
    if not state.ready:
        raise ApiError(503, "not_ready", "the index is still loading", headers={"Retry-After": "1"})
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[ReadAccess],
    responses=errors(READ),
)
def metrics(state: StateDep) -> PlainTextResponse:
    """Prometheus metrics: request counts and latency histograms per route, index size."""
    index = state.index
    text = state.metrics.render(
        [
            (
                "kshot_index_examples",
                "Examples in the served index.",
                lambda: float(len(index)) if index is not None else 0.0,
            ),
            ("kshot_ready", "1 when the index is loaded.", lambda: float(state.ready)),
            ("kshot_writes_total", "Writes accepted since start-up.", lambda: float(state.writes)),
        ]
    )
    return PlainTextResponse(text, media_type=_CONTENT_TYPE)
