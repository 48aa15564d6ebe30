"""The Ray jobs on a real local Ray cluster (2 CPUs) that the tests start and tear down."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from kshot.distributed.batch import BatchJob, run_batch
from kshot.index import ExampleIndex

if TYPE_CHECKING:
    from conftest import Interrupter

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.slow  # starting Ray and its actors takes tens of seconds on 2 cores

Cli = Callable[..., str]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster() -> Iterator[None]:
    """A local head with 2 CPUs; the jobs find it open and leave it to this fixture to close."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def test_the_ray_build_equals_the_local_build(cli: Cli, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": f"r{i:03d}", "input": f"question {i} about card {i % 7}", "label": f"l{i % 5}"}
        for i in range(150)
    ]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    common = ["index", "build", str(corpus), "--model", "hashing:64", "--no-progress"]
    cli(*common, "--out", str(tmp_path / "local"))
    cli(*common, "--out", str(tmp_path / "ray"), "--ray", "--ray-actors", "2")
    local, on_ray = (
        ExampleIndex.load(tmp_path / name, read_only=True) for name in ("local", "ray")
    )
    slots = list(range(local.n_slots))
    assert on_ray.n_slots == local.n_slots == len(rows)
    assert [e.id for e in on_ray.examples_at(slots)] == [r["id"] for r in rows]
    assert [e.id for e in local.examples_at(slots)] == [r["id"] for r in rows]
    np.testing.assert_allclose(on_ray.slot_vectors(slots), local.slot_vectors(slots), atol=1e-6)
    assert on_ray.info() == {**local.info(), "path": on_ray.info()["path"]}


def test_select_batch_on_ray_equals_the_local_run(
    cli: Cli,
    index_dir: Path,
    queries_file: Path,
    tmp_path: Path,
    read_jsonl: Callable[[Path], list[dict[str, Any]]],
) -> None:
    common = [
        "select-batch",
        str(index_dir),
        str(queries_file),
        "--input-field",
        "text",
        "-k",
        "3",
        "--chunk-size",
        "3",
        "--prompt",
        "--tokenizer",
        "whitespace",
    ]
    cli(*common, "--out", str(tmp_path / "local.jsonl"))
    cli(*common, "--out", str(tmp_path / "ray.jsonl"), "--ray", "--workers", "2")
    local, on_ray = read_jsonl(tmp_path / "local.jsonl"), read_jsonl(tmp_path / "ray.jsonl")
    assert [r["position"] for r in on_ray] == list(range(len(local)))
    assert on_ray == local


def test_a_run_interrupted_here_resumes_on_ray(
    index_dir: Path,
    query_rows: list[tuple[str, str]],
    tmp_path: Path,
    interrupter: Interrupter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    whole = BatchJob(index=index_dir, out=tmp_path / "whole.jsonl", k=2, chunk_size=2)
    run_batch(whole, query_rows)
    job = BatchJob(index=index_dir, out=tmp_path / "resumed.jsonl", k=2, chunk_size=2)
    interrupter.stop_at = 4
    with pytest.raises(KeyboardInterrupt):
        run_batch(job, query_rows)
    # Ray pickles the worker class by value for its actors: hand it the real one, unpatched.
    monkeypatch.undo()
    assert len(list(job.parts.glob("chunk-*"))) == 4
    report = run_batch(job, query_rows, ray=True, workers=2)
    assert (report.chunks, report.resumed) == (7, 4)
    assert job.out.read_bytes() == whole.out.read_bytes()
