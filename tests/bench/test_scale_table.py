"""The scaling table's runner: cells named by size and factory, resumed, drawn as markdown."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kshot.bench.speed import table
from kshot.bench.speed.config import DIM
from kshot.bench.speed.data import Data
from kshot.bench.speed.table import Cell, build_cell, load_cell, prepare_cell, run_table
from kshot.bench.speed.timing import AnonPeak, rss_anon_mb


def _row(n: int, spec: str, *, corpus_measured: bool = True) -> dict[str, Any]:
    memory = {"rss_mb": 900.0, "rss_anon_mb": 300.0, "peak_rss_mb": 1500.0}
    timing = {"p50_ms": 1.25, "p99_ms": 4.5}
    row: dict[str, Any] = {
        "n": n,
        "factory": spec,
        "build": {
            "build_s": 12.0,
            "rows_per_s": n / 12.0,
            "factory_used": "IVF512,PQ48",
            "nprobe": 32,
            "recall_at_10_manifest": 0.91,
            "after_build": memory,
        },
        "load": {
            "load_s": 1.0,
            "after_load": memory,
            "recall_at_10": 0.9,
            "similarity": timing,
            "mmr": timing,
        },
    }
    if corpus_measured:
        row["build"]["before_build"] = {**memory, "rss_mb": 400.0}
        row["build"]["after_build_corpus_freed"] = {**memory, "rss_mb": 600.0}
    return row


def test_cells_parse_factory_and_mmap() -> None:
    cell = Cell(100_000, "IVF1024,PQ48@mmap")
    assert (cell.factory, cell.mmap, cell.slug) == (
        "IVF1024,PQ48",
        True,
        "100000-IVF1024_PQ48_mmap",
    )
    assert Cell(10, "default").factory is None and not Cell(10, "default").mmap
    both = Cell(10, "IVF8,SQ8@mmap@files")
    assert (both.factory, both.mmap, both.files, both.slug) == (
        "IVF8,SQ8",
        True,
        True,
        "10-IVF8_SQ8_mmap_files",
    )


@pytest.mark.parametrize("spec", ["default@mapped", "@files", "Flat@files@nope"])
def test_a_bad_spec_names_the_flags_there_are(spec: str) -> None:
    with pytest.raises(ValueError, match="optionally @mmap @files"):
        Cell(10, spec)


def test_the_command_line_refuses_a_bad_spec_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        table.main(["--sizes", "10", "--factories", "default;Flat@mapped"])
    assert exit_info.value.code == 2
    assert "'Flat@mapped'" in capsys.readouterr().err


def _unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _synthetic(n: int) -> Data:
    """A corpus of ``n`` random unit vectors; the same 5 held-out queries at every size."""
    queries = [f"query {i}" for i in range(5)]
    return Data([f"sentence number {i}" for i in range(n)], _unit(n, n), queries, _unit(5, 0), n)


def test_a_files_cell_builds_from_the_files_it_wrote_and_answers_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(table, "load_data", lambda n, config, encode: _synthetic(n))
    cell = Cell(600, "Flat@files")
    prepared = prepare_cell(cell, tmp_path)
    assert prepared["rows"] == 600 and prepared["vectors_mb"] > 0.8
    assert (tmp_path / "corpus.jsonl").read_text().count("\n") == 600
    built = build_cell(cell, tmp_path)
    assert built["factory_used"] == "Flat" and built["read_s"] > 0
    assert built["peak_anon_mb"] > 0 and built["after_build"]["rss_mb"] > 0
    assert (tmp_path / "index" / "manifest.json").is_file()
    # The load phase's queries come from a 1,000-row corpus: the first 5 of those rows.
    loaded = load_cell(cell, tmp_path)
    assert loaded["similarity"]["n"] == 5 and loaded["recall_at_10"] == 1.0


def test_the_anonymous_peak_sees_memory_freed_before_the_block_ends() -> None:
    before = rss_anon_mb()
    with AnonPeak(interval=0.001) as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.05)
        del block
    assert peak.peak_mb >= before + 48


def test_a_rerun_skips_finished_cells_and_measures_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scale_table"
    folder.mkdir()
    done = Cell(1000, "default")
    # A cell measured before the corpus was freed and measured apart shows '-' there.
    old = _row(1000, "default", corpus_measured=False)
    (folder / f"{done.slug}.json").write_text(json.dumps(old))
    ran: list[tuple[str, str]] = []

    def phase(cell: Cell, name: str, work: Path, nice: int) -> dict[str, Any]:
        ran.append((cell.spec, name))
        row = _row(cell.n, cell.spec)
        return dict(row["build"] if name == "build" else row["load"])

    monkeypatch.setattr(table, "_run_phase", phase)
    monkeypatch.setattr(table, "_cache_embeddings", lambda: None)
    rows = run_table([1000], ["default", "IVF8,SQ8@mmap"], tmp_path)
    assert ran == [("IVF8,SQ8@mmap", "build"), ("IVF8,SQ8@mmap", "load")]
    assert [r["factory"] for r in rows] == ["default", "IVF8,SQ8@mmap"]
    assert (folder / "1000-IVF8_SQ8_mmap.json").is_file()
    assert not list(folder.glob(".*.work"))
    markdown = (tmp_path / "scale_table.md").read_text().splitlines()
    assert len(markdown) == 4
    assert "| 1,000 | `IVF8,SQ8@mmap` | `IVF512,PQ48` (32) | 12.0 |" in markdown[3]
    assert "| 900 (300) | - | 1,500 |" in markdown[2]
    assert "| 900 (300) | 600 | 1,500 (1,100) |" in markdown[3] and "| 1.25 / 4.50 |" in markdown[3]
    assert markdown[3].endswith("| 0.900 (0.910) |")
    ran.clear()
    run_table([1000], ["default", "IVF8,SQ8@mmap"], tmp_path)
    assert ran == []


def test_a_run_of_another_size_keeps_the_rows_of_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scale_table"
    folder.mkdir()
    for spec in ("IVF8,SQ8", "default"):
        (folder / f"{Cell(1000, spec).slug}.json").write_text(json.dumps(_row(1000, spec)))

    def phase(cell: Cell, name: str, work: Path, nice: int) -> dict[str, Any]:
        row = _row(cell.n, cell.spec)
        return dict(row["build"] if name == "build" else row["load"])

    monkeypatch.setattr(table, "_run_phase", phase)
    monkeypatch.setattr(table, "_cache_embeddings", lambda: None)
    rows = run_table([3000], ["default"], tmp_path)
    assert [(r["n"], r["factory"]) for r in rows] == [
        (1000, "default"),
        (1000, "IVF8,SQ8"),
        (3000, "default"),
    ]
    markdown = (tmp_path / "scale_table.md").read_text().splitlines()
    assert [line.split(" | ")[:2] for line in markdown[2:]] == [
        ["| 1,000", "`default`"],
        ["| 1,000", "`IVF8,SQ8`"],
        ["| 3,000", "`default`"],
    ]
