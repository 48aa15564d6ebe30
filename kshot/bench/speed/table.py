r"""The scaling table: kshot at each corpus size and FAISS factory, memory-mapped or not.

Each cell (one size, one factory) runs as two fresh processes, so that each memory figure is its
own: the first builds the index from precomputed vectors and saves it (build time, resident
memory after the build, then again once the benchmark's own copy of the corpus is freed, which
is what the index holds, and the peak during the build, whole and above the corpus loaded
before it), the second loads it read-only and measures resident memory after the load,
per-query p50/p99 of ``similarity`` and ``mmr`` on held-out queries, and recall@10 of the vector
search the selectors use against exact search over every vector. Resident memory is given
whole and as its anonymous part: a memory-mapped file's pages count as resident once read, but
the OS reclaims them. The build's peak is given whole (the kernel's high-water mark) and as its
anonymous part (sampled every 5 ms).

A cell builds from the benchmark's corpus in memory (texts and one float32 array), or, with
``@files``, the way ``kshot index build corpus.jsonl --embeddings vectors.npy`` does: a first
process writes the corpus and its vectors to files, the build process reads the JSON lines into
examples and maps the ``.npy`` file, so the caller's vectors are file pages, not process memory.

Every finished cell is written to ``OUT/scale_table/`` at once, and a rerun skips the cells
already there, so an interrupted run resumes where it stopped::

    python -m kshot.bench.speed.table --sizes 100000,1000000,3000000 \
        --factories 'default;IVF1024,PQ48;IVF1024,PQ48@mmap;IVF4096,SQ8;default@mmap'

A factory is a FAISS factory string (``default``: kshot's choice by size); ``@mmap`` makes the
load map the vector file; ``@files`` builds from files (both: ``default@mmap@files``). The
table is redrawn as ``OUT/scale_table.md`` after every cell.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kshot.bench.lookup import LookupEncoder
from kshot.bench.speed.config import DIM, MODEL_NAME, SpeedConfig
from kshot.bench.speed.data import Data, examples, load_data
from kshot.bench.speed.timing import AnonPeak, Timer, peak_rss_mb, rss_anon_mb, rss_mb

__all__ = ["Cell", "main", "run_table", "write_table"]

logger = logging.getLogger(__name__)

_QUERIES = 200
_FLAGS = ("mmap", "files")


class Cell:
    """One size and factory spec (``FACTORY``, then ``@mmap`` and / or ``@files``) of the table."""

    def __init__(self, n: int, spec: str) -> None:
        name, *flags = spec.split("@")
        unknown = sorted(set(flags) - set(_FLAGS))
        if unknown or not name:
            raise ValueError(
                f"factory spec {spec!r}: give a FAISS factory string or 'default', then "
                f"optionally @{' @'.join(_FLAGS)}" + (f" (not @{unknown[0]})" if unknown else "")
            )
        self.n = n
        self.spec = spec
        self.mmap = "mmap" in flags
        self.files = "files" in flags
        self.factory = None if name == "default" else name

    @property
    def slug(self) -> str:
        """The cell's file name stem."""
        return f"{self.n}-{re.sub(r'[^A-Za-z0-9]+', '_', self.spec).strip('_')}"


def _memory() -> dict[str, float]:
    return {"rss_mb": rss_mb(), "rss_anon_mb": rss_anon_mb(), "peak_rss_mb": peak_rss_mb()}


def _exact_neighbours(data: Data, work: Path) -> None:
    """Keep the held-out queries' exact neighbours for the load phase."""
    from kshot.index.vectors import exact_search

    _, exact = exact_search(data.query_vectors[:_QUERIES], data.vectors, 10)
    np.save(work / "exact.npy", exact)


def prepare_cell(cell: Cell, work: Path) -> dict[str, Any]:
    """Write an ``@files`` cell's corpus (JSON lines) and its vectors (``.npy``) under ``work``."""
    from kshot.corpus import write_jsonl
    from kshot.types import Example

    data = load_data(cell.n, SpeedConfig(), None)
    _exact_neighbours(data, work)
    rows = examples(data.texts)
    written = write_jsonl((Example(**row) for row in rows), work / "corpus.jsonl")
    np.save(work / "vectors.npy", data.vectors)
    return {
        "rows": written,
        "corpus_mb": (work / "corpus.jsonl").stat().st_size / 2**20,
        "vectors_mb": (work / "vectors.npy").stat().st_size / 2**20,
    }


def build_cell(cell: Cell, work: Path) -> dict[str, Any]:
    """Build and save the cell's index under ``work``; keep the exact neighbours for the load."""
    from kshot.corpus import read_corpus

    encoder = LookupEncoder(name=MODEL_NAME, dim=DIM, table={})
    out: dict[str, Any] = {}
    held: list[Any] = []  # what the caller holds of the corpus while the index is built
    if cell.files:
        before = _memory()
        with AnonPeak() as peak:
            started = time.perf_counter()
            corpus = read_corpus(work / "corpus.jsonl").examples
            vectors = np.load(work / "vectors.npy", mmap_mode="r")
            out["read_s"] = time.perf_counter() - started
            held += [corpus, vectors]
            index, build_s = _timed_build(cell, corpus, encoder, vectors)
            del corpus, vectors
    else:
        data = load_data(cell.n, SpeedConfig(), None)
        _exact_neighbours(data, work)
        held.append(data)
        before = _memory()
        with AnonPeak() as peak:
            # The example rows are made inside the build's figures, as in the earlier cells.
            index, build_s = _timed_build(cell, examples(data.texts), encoder, data.vectors)
        del data
    memory = _memory()
    # What the index itself holds: the caller's corpus (its rows, and its vectors: one float32
    # array, or a mapped file's pages) is dropped before this figure.
    held.clear()
    gc.collect()
    own = _memory()
    info = index.info()
    index.save(work / "index")
    index.close()
    return out | {
        "build_s": build_s,
        "rows_per_s": cell.n / build_s,
        "factory_used": info["factory"],
        "nprobe": info["nprobe"],
        "recall_at_10_manifest": info["recall_at_10"],
        "before_build": before,
        "after_build": memory,
        "peak_anon_mb": peak.peak_mb,
        "after_build_corpus_freed": own,
    }


def _timed_build(
    cell: Cell, corpus: Any, encoder: LookupEncoder, vectors: Any
) -> tuple[Any, float]:
    from kshot.index.example_index import ExampleIndex

    started = time.perf_counter()
    index = ExampleIndex.build(
        corpus,
        encoder,
        embeddings=vectors,
        factory=cell.factory,
        mmap=cell.mmap,
        show_progress=False,
    )
    return index, time.perf_counter() - started


def load_cell(cell: Cell, work: Path) -> dict[str, Any]:
    """Load the cell's index read-only; time selection and measure recall on held-out queries."""
    from kshot.index.example_index import ExampleIndex
    from kshot.selector.base import build_selector

    config = SpeedConfig()
    exact = np.load(work / "exact.npy")
    # The held-out queries are the same at every size; a small corpus's load brings them
    # without this process holding the cell's corpus.
    small = load_data(1_000, config, None)
    vectors = small.query_vectors[:_QUERIES]
    texts = small.queries[:_QUERIES]
    del small
    encoder = LookupEncoder(name=MODEL_NAME, dim=DIM, table=dict(zip(texts, vectors, strict=True)))
    started = time.perf_counter()
    index = ExampleIndex.load(work / "index", encoder, read_only=True)
    load_s = time.perf_counter() - started
    memory = _memory()
    with index.reading():
        _, slots = index.view.vector_search(vectors, 10, None)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(slots, exact, strict=True))
    out: dict[str, Any] = {
        "load_s": load_s,
        "after_load": memory,
        "recall_at_10": hits / exact.size,
    }
    params = {"mmr": {"fetch_k": config.fetch_k, "lambda": config.lambda_mult}}
    for name in ("similarity", "mmr"):
        selector = build_selector(index, name, params.get(name, {}))
        selector.select(texts[0], config.k)
        timer = Timer()
        for text in texts:
            with timer():
                selector.select(text, config.k)
        out[name] = timer.summary()
    out["after_queries"] = _memory()
    index.close()
    return out


def _cache_embeddings() -> None:
    """Compute here any real vectors not cached yet, so that no cell's process loads MiniLM.

    Torch would stay in that process's resident memory and inflate the cell's figures.
    """
    config = SpeedConfig()
    load_data(config.embed_rows, config, None)


def _run_phase(cell: Cell, phase: str, work: Path, nice: int) -> dict[str, Any]:
    result = work / f"{phase}.json"
    command = [sys.executable, "-m", "kshot.bench.speed.table", "--cell", phase]
    command += ["--n", str(cell.n), "--spec", cell.spec, "--work", str(work)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(
        command, check=True, env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None
    )
    loaded: dict[str, Any] = json.loads(result.read_text())
    return loaded


def run_table(
    sizes: Sequence[int], specs: Sequence[str], out: Path, *, nice: int = 0
) -> list[dict[str, Any]]:
    """Measure every cell not yet in ``out/scale_table/``; return every row, in table order.

    The table holds every finished cell of the folder, not only those asked for this time, so
    that a run adding a size keeps the rows of the others.
    """
    folder = out / "scale_table"
    folder.mkdir(parents=True, exist_ok=True)
    cells = [Cell(n, spec) for n in sizes for spec in specs]
    pending = [cell for cell in cells if not (folder / f"{cell.slug}.json").is_file()]
    if pending:
        _cache_embeddings()
    for cell in pending:
        done = folder / f"{cell.slug}.json"
        work = folder / f".{cell.slug}.work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        logger.info("scale table: n=%d %s", cell.n, cell.spec)
        row = {"n": cell.n, "factory": cell.spec}
        if cell.files:
            row["files"] = _run_phase(cell, "prepare", work, nice)
        row["build"] = _run_phase(cell, "build", work, nice)
        row["load"] = _run_phase(cell, "load", work, nice)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=2) + "\n")
        os.replace(tmp, done)
        shutil.rmtree(work, ignore_errors=True)
        write_table(_finished(folder), out / "scale_table.md")
    if not pending:
        write_table(_finished(folder), out / "scale_table.md")
    return _finished(folder)


def _finished(folder: Path) -> list[dict[str, Any]]:
    """Every finished cell in ``folder``: by size, the default factory first, then by name."""
    rows = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return sorted(rows, key=lambda r: (r["n"], r["factory"] != "default", r["factory"]))


def _own(build: dict[str, Any]) -> str:
    """Resident memory once the benchmark's corpus is freed; '-' for cells measured before."""
    own = build.get("after_build_corpus_freed")
    return "-" if own is None else f"{own['rss_mb']:,.0f}"


def _peak(build: dict[str, Any]) -> str:
    """Peak resident memory of the build, and its rise over the corpus loaded before it."""
    peak = build["after_build"]["peak_rss_mb"]
    before = build.get("before_build")
    return f"{peak:,.0f}" if before is None else f"{peak:,.0f} ({peak - before['rss_mb']:,.0f})"


def _peak_anon(build: dict[str, Any]) -> str:
    """The sampled peak of anonymous memory during the build; '-' for cells measured before."""
    peak = build.get("peak_anon_mb")
    return "-" if peak is None else f"{peak:,.0f}"


def write_table(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """The rows as a markdown table."""
    lines = [
        "| n | factory | used (nprobe) | build s | rows/s | RSS after build MiB (anon) "
        "| without the corpus MiB | peak build MiB (above the corpus) | peak build anon MiB "
        "| RSS after load MiB (anon) | similarity p50/p99 ms "
        "| mmr p50/p99 ms | recall@10 held-out (manifest) |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        build, load = row["build"], row["load"]
        nprobe = f" ({build['nprobe']})" if build["nprobe"] else ""
        manifest = build["recall_at_10_manifest"]
        recall = f"{load['recall_at_10']:.3f}" + ("" if manifest is None else f" ({manifest:.3f})")
        lines.append(
            f"| {row['n']:,} | `{row['factory']}` | `{build['factory_used']}`{nprobe} "
            f"| {build['build_s']:.1f} | {build['rows_per_s']:,.0f} "
            f"| {build['after_build']['rss_mb']:,.0f} ({build['after_build']['rss_anon_mb']:,.0f}) "
            f"| {_own(build)} | {_peak(build)} | {_peak_anon(build)} "
            f"| {load['after_load']['rss_mb']:,.0f} ({load['after_load']['rss_anon_mb']:,.0f}) "
            f"| {load['similarity']['p50_ms']:.2f} / {load['similarity']['p99_ms']:.2f} "
            f"| {load['mmr']['p50_ms']:.2f} / {load['mmr']['p99_ms']:.2f} | {recall} |"
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python -m kshot.bench.speed.table --help``."""
    p = argparse.ArgumentParser(prog="python -m kshot.bench.speed.table", description=__doc__)
    p.add_argument("--out", default=SpeedConfig.out, help="results folder")
    p.add_argument("--sizes", default="100000,1000000,3000000")
    p.add_argument(
        "--factories",
        default="default;IVF1024,PQ48;IVF1024,PQ48@mmap;IVF4096,SQ8",
        help="';'-separated FAISS factory strings ('default': by size), '@mmap' to map the file",
    )
    p.add_argument("--nice", type=int, default=0, help="run the cells at this niceness")
    p.add_argument("--cell", choices=("prepare", "build", "load"), help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.cell:
        cell, work = Cell(a.n, a.spec), Path(a.work)
        phases = {"prepare": prepare_cell, "build": build_cell, "load": load_cell}
        result = phases[a.cell](cell, work)
        (work / f"{a.cell}.json").write_text(json.dumps(result, indent=2, default=float))
        return 0
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    specs = [s.strip() for s in a.factories.split(";") if s.strip()]
    for spec in specs:
        try:
            Cell(0, spec)
        except ValueError as exc:
            p.error(str(exc))
    run_table(sizes, specs, Path(a.out), nice=a.nice)
    logger.info("table in %s", Path(a.out) / "scale_table.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
