"""The scale run's memory figures: a read-only load measured in a fresh process, exact ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kshot.bench.lookup import LookupEncoder
from kshot.bench.speed.data import Data
from kshot.bench.speed.scale import _ingest_exact, _load_in_fresh_process
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex


def _data(n: int, dim: int = 16) -> Data:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Data([f"text {i}" for i in range(n)], vectors, ["q"], vectors[:1], n)


def test_load_in_a_fresh_process_reports_its_own_memory(tmp_path: Path) -> None:
    data = _data(500)
    index = ExampleIndex.build(
        [{"input": t} for t in data.texts], HashingEncoder(16), embeddings=data.vectors
    )
    found = _load_in_fresh_process(index, tmp_path / "copy")
    index.close()
    assert found["count"] == 500
    assert 0 < found["rss_before_load_mb"] <= found["rss_after_load_mb"] <= found["peak_rss_mb"]
    assert found["index_kb_per_example"] == (
        (found["rss_after_load_mb"] - found["rss_before_load_mb"]) * 1024 / 500
    )
    assert (tmp_path / "copy" / "manifest.json").is_file()


def test_exact_ingest_rate_counts_every_row() -> None:
    data = _data(300)
    found = _ingest_exact(data, LookupEncoder(table={}, name="hashing-16", dim=16))
    assert found["rows"] == 300 and found["rows_per_s"] > 0 and found["cpu_s"] >= 0
