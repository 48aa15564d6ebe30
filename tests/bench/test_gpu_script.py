"""The prepared GPU script: refuses without a GPU, and its CPU smoke run writes both figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kshot.index import resolve_device

ROOT = Path(__file__).parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/gpu.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.mark.skipif(resolve_device("auto").startswith("cuda"), reason="a GPU is present")
def test_without_a_gpu_it_refuses_in_one_line() -> None:
    done = _run("--sentences", "8")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: no CUDA device (resolved 'cpu'); pass --allow-cpu"


@pytest.mark.slow
def test_cpu_smoke_run_writes_encode_and_build_results(tmp_path: Path) -> None:
    done = _run(
        "--allow-cpu",
        "--device",
        "cpu",
        "--sentences",
        "300",
        "--build-rows",
        "400",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["device"] == "cpu"
    encode = result["encode"]
    assert set(encode["sentences_per_s_by_batch"]) == {"128", "256", "512", "1024"}
    assert encode["half_precision"] is False
    assert encode["top10_agreement_vs_fp32"] == pytest.approx(1.0)
    build = result["build"]
    assert build["rows"] == 400 and build["factory"] == "Flat"
    assert build["total_s"] >= build["encode_s"] > 0
    assert result["environment"]["device"] == "cpu"
    assert "## MiniLM encode throughput" in (tmp_path / "results.md").read_text()
