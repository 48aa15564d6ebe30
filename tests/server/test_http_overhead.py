"""What keeps a request's own cost small: no thread hop per dependency, JSON encoded once.

The figures are benchmarks (``benchmarks/proxy_overhead.py``, ``kshot bench speed --http``);
these tests pin the structure behind them, and that the faster paths answer what the slower
ones did.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from kshot.server.schemas import (
    PromptBatchResponse,
    PromptResponse,
    SelectBatchResponse,
    SelectResponse,
)


def _dependants(routes: list[Any]) -> list[tuple[str, Dependant]]:
    """Every endpoint's dependency tree (FastAPI >= 0.16x keeps included routers as nodes)."""
    out = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append((route.path, route.dependant))
        elif hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                if getattr(context, "dependant", None) is not None:
                    out.append((context.path, context.dependant))
    return out


def _calls(dependant: Dependant) -> list[Any]:
    out = []
    for sub in dependant.dependencies:
        out.append(sub.call)
        out.extend(_calls(sub))
    return out


def test_no_route_runs_a_dependency_in_the_thread_pool(client: TestClient) -> None:
    # FastAPI runs a plain ``def`` dependency in a worker thread: two thread wake-ups each.
    endpoints = _dependants(client.app.routes)  # type: ignore[attr-defined]
    assert len(endpoints) > 20
    assert any(_calls(dependant) for _, dependant in endpoints)
    sync = {
        f"{path}: {getattr(call, '__qualname__', call)}"
        for path, dependant in endpoints
        for call in _calls(dependant)
        if not inspect.iscoroutinefunction(call)
    }
    assert not sync


def test_the_json_answers_are_what_their_response_models_describe(client: TestClient) -> None:
    cases = [
        ("/v1/select", {"query": "block my card", "k": 3}, SelectResponse),
        ("/v1/select:batch", {"queries": ["block my card", "a loan"], "k": 2}, SelectBatchResponse),
        ("/v1/prompt", {"query": "block my card", "k": 2, "format": "chat"}, PromptResponse),
        ("/v1/prompt:batch", {"queries": ["my card", "a loan"], "k": 2}, PromptBatchResponse),
    ]
    for path, body, model in cases:
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        data = r.json()
        # What FastAPI's own validation and dump of the route's dict would have sent.
        assert model.model_validate(data).model_dump(mode="json") == data
