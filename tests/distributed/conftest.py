"""A small hashing-encoder index and a query file for the batch jobs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kshot.cli import app
from kshot.distributed import batch
from kshot.index import ExampleIndex
from kshot.index.encoder import HashingEncoder
from kshot.types import Example

QUERIES = [
    "reset the PIN of my card",
    "where is my new card",
    "fee on my transfer",
    "money sent abroad has not arrived",
    "my card was swallowed by the machine",
    "change my pin please",
    "card delivery time",
    "why was I charged",
    "cash withdrawal declined",
    "exchange rate for euros",
    "top up by bank transfer",
    "refund not showing",
    "cancel a payment",
]


@pytest.fixture
def index_dir(tmp_path: Path, toy_examples: list[Example]) -> Path:
    path = tmp_path / "index"
    ExampleIndex.build(toy_examples, HashingEncoder(64), path=path).close()
    return path


@pytest.fixture
def query_rows() -> list[tuple[str, str]]:
    """The queries as the batch job takes them: (id, text)."""
    return [(str(i), text) for i, text in enumerate(QUERIES)]


@pytest.fixture
def queries_file(tmp_path: Path) -> Path:
    """JSONL queries, some with an id and some without (those are named by position)."""
    path = tmp_path / "queries.jsonl"
    rows = [
        {"text": text, **({"qid": f"q{i}"} if i % 3 == 0 else {})} for i, text in enumerate(QUERIES)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def read_jsonl() -> Callable[[Path], list[dict[str, Any]]]:
    """Read a JSONL output file into its records."""
    return _read_jsonl


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def cli() -> Callable[..., str]:
    """Run a kshot command in this process; its output, or the kshot error it raised."""
    return _invoke


@dataclass
class Interrupter:
    """Stops a batch run at chunk ``stop_at`` as a crash or Ctrl-C would; records chunks run."""

    stop_at: int | None = None
    ran: list[int] = field(default_factory=list)


@pytest.fixture
def interrupter(monkeypatch: pytest.MonkeyPatch) -> Interrupter:
    """An :class:`Interrupter` around the local chunk worker (Ray actors run the real one)."""
    state = Interrupter()
    real_run = batch.ChunkWorker.run

    def run(self: batch.ChunkWorker, number: int, *rest: Any) -> Any:
        if number == state.stop_at:
            raise KeyboardInterrupt
        state.ran.append(number)
        return real_run(self, number, *rest)

    monkeypatch.setattr(batch.ChunkWorker, "run", run)
    return state
