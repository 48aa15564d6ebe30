"""The bare FastAPI peer of ``kshot serve``: the same in-process selection, nothing else.

``python -m kshot.bench.speed.http_peer INDEX_DIR PORT`` serves ``POST /v1/select`` as a
FastAPI app written the plain way would: a pydantic request model, a sync endpoint (run in
FastAPI's thread pool, like kshot's), the returned dict encoded by FastAPI, uvicorn's defaults.
The endpoint makes the call kshot's route makes (:func:`kshot.api.select_batch` over the same
index opened read-only), so the difference of the two round trips is what kshot's server adds:
its middleware, dependencies, limits and error handling.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from kshot.api import select_batch
from kshot.index.example_index import ExampleIndex
from kshot.selector.base import SelectorSpec


class SelectRequest(BaseModel):
    """The body: the fields kshot's route reads for this call."""

    query: str
    k: int = 4
    selector: str = "similarity"


def build_app(index_dir: Path) -> FastAPI:
    """The peer application over the index at ``index_dir``."""
    index = ExampleIndex.load(index_dir, device="cpu", read_only=True)
    app = FastAPI()

    @app.post("/v1/select")
    def select(body: SelectRequest) -> dict[str, Any]:
        spec = SelectorSpec(body.selector, {})
        found = select_batch(index, [body.query], body.k, selector=spec)
        return {"examples": [s.to_dict() for s in found[0]]}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str]) -> int:
    """Serve the peer on 127.0.0.1 (``INDEX_DIR PORT``)."""
    import uvicorn

    index_dir, port = Path(argv[0]), int(argv[1])
    uvicorn.run(build_app(index_dir), host="127.0.0.1", port=port, log_level="warning",
                access_log=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
