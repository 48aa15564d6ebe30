"""Without ``ray``: kshot imports and runs locally, and a Ray job says which extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kshot.cli import app
from kshot.distributed._ray import import_ray
from kshot.distributed.batch import BatchJob, run_batch
from kshot.errors import ConfigError, MissingDependencyError

HINT = "'ray' is not installed; install it with: pip install 'kshot[ray]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Block ``import ray`` as if the extra were not installed."""
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)


@pytest.mark.usefixtures("no_ray")
def test_a_missing_ray_names_the_extra(
    index_dir: Path, query_rows: list[tuple[str, str]], tmp_path: Path
) -> None:
    with pytest.raises(MissingDependencyError) as caught:
        import_ray()
    assert str(caught.value) == HINT
    job = BatchJob(index=index_dir, out=tmp_path / "out.jsonl")
    with pytest.raises(MissingDependencyError, match=r"kshot\[ray\]"):
        run_batch(job, query_rows, ray=True)
    # Without --ray the same job runs here.
    assert run_batch(job, query_rows).queries == len(query_rows)


@pytest.mark.usefixtures("no_ray")
def test_index_build_ray_without_ray_names_the_extra(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"input": "hello there", "label": "greet"}\n', encoding="utf-8")
    args = ["index", "build", str(corpus), "--out", str(tmp_path / "idx"), "--model", "hashing:32"]
    result = CliRunner().invoke(app, [*args, "--ray"])
    assert isinstance(result.exception, MissingDependencyError)
    assert str(result.exception) == HINT
    assert not (tmp_path / "idx").exists()


def test_importing_kshot_and_its_cli_does_not_import_ray() -> None:
    code = (
        "import sys, kshot, kshot.cli, kshot.distributed.batch, kshot.distributed.embed; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_index_build_refuses_ray_with_precomputed_embeddings(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"input": "hello there"}\n', encoding="utf-8")
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.ones((1, 32), dtype=np.float32))
    args = ["index", "build", str(corpus), "--out", str(tmp_path / "idx"), "--model", "hashing:32"]
    result = CliRunner().invoke(app, [*args, "--embeddings", str(vectors), "--ray"])
    assert isinstance(result.exception, ConfigError)
    assert "--ray computes the embeddings" in str(result.exception)
