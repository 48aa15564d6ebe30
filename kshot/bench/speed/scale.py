"""Kshot alone at scale: build rate, latency per selector, recall, memory."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.bench.lookup import LookupEncoder
from kshot.bench.speed.compare import build_kshot, short_results
from kshot.bench.speed.config import DIM, MODEL_NAME, SpeedConfig
from kshot.bench.speed.data import Data, examples, load_data
from kshot.bench.speed.timing import Timer, peak_rss_mb, rss_mb

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def at_scale(n: int, config: SpeedConfig) -> dict[str, Any]:
    """Kshot alone at ``n`` rows: build rate, latency per selector, recall, memory."""
    from kshot.index.vectors import exact_search

    data = load_data(n, config, None)
    table = dict(zip(data.queries, data.query_vectors, strict=True))
    encoder = LookupEncoder(table=table, name=MODEL_NAME, dim=DIM)
    gc.collect()
    rss_corpus = rss_mb()
    index, build = build_kshot(data, encoder, factory=config.scale_factory)
    out: dict[str, Any] = {"n": n, "real_embedded_rows": data.real_rows, "build": build}
    out["memory"] = {
        # The process holds the benchmark's corpus (texts, vectors) throughout: the index's own
        # share is the difference, per example.
        "rss_with_corpus_mb": rss_corpus,
        "rss_after_build_mb": rss_mb(),
        "peak_rss_during_build_mb": peak_rss_mb(),
        "index_kb_per_example": build["rss_delta_mb"] * 1024 / n,
        "vector_kb_per_example": DIM * 4 / 1024,
        "columns_mb": index._columns.nbytes / 2**20,
    }
    queries = data.queries[: config.n_queries]
    qv = data.query_vectors[: config.n_queries]
    # recall of the vector index against exact search over every vector
    for kk in sorted({config.k, 10}):
        _, exact = exact_search(qv, data.vectors, kk)
        with index.reading():
            _, slots = index.view.vector_search(qv, kk, None)
        hits = sum(
            len(set(a.tolist()) & set(b.tolist())) for a, b in zip(slots, exact, strict=True)
        )
        out[f"recall_at_{kk}"] = hits / exact.size
    specs: dict[str, dict[str, Any]] = {
        "similarity": {},
        "mmr": {"fetch_k": config.fetch_k, "lambda": config.lambda_mult},
        "jaccard": {},
        "bm25": {},
    }
    out["short_results"] = short_results(index, qv, config.fetch_k)
    for name, params in specs.items():
        try:
            out[name] = _time_selector(index, name, params, queries, config)
        except MemoryError as exc:  # recorded: a finding, not a benchmark failure
            logger.error("scale %d %s failed: %r", n, name, exc)
            out[name] = {"error": repr(exc)}
            continue
        logger.info("scale %d %s: %s", n, name, json.dumps(out[name]))
    if index.info()["nprobe"]:
        out["heldout_tuned"] = _heldout_tuned(index, data, config, specs)
    out["rss_mb"] = rss_mb()
    out["peak_rss_mb"] = peak_rss_mb()
    out["lexical_nbytes_mb"] = index.view.lexical.nbytes / 2**20
    with tempfile.TemporaryDirectory(prefix="kshot-scale-") as tmp:
        out["memory"]["load"] = _load_in_fresh_process(index, Path(tmp) / "index")
        index.close()  # it lives in `tmp` since the save; close before the folder goes
    logger.info("scale %d memory: %s", n, json.dumps(out["memory"]))
    del index
    gc.collect()
    out["ingest_exact"] = _ingest_exact(data, encoder)
    logger.info("scale %d exact-index ingest: %s", n, json.dumps(out["ingest_exact"]))
    return out


_LOAD_PROBE = """
import json, resource, sys, time
import psutil
from kshot.index.example_index import ExampleIndex
rss0 = psutil.Process().memory_info().rss / 2**20
t0 = time.perf_counter()
index = ExampleIndex.load(sys.argv[1], read_only=True)
wall = time.perf_counter() - t0
rss1 = psutil.Process().memory_info().rss / 2**20
# ru_maxrss survives exec (it would report the parent's peak); the kernel's VmHWM does not.
try:
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    peak = int(status.split()[0]) / 1024
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rss_before_load_mb": rss0, "rss_after_load_mb": rss1, "peak_rss_mb": peak,
                  "load_s": wall, "count": len(index)}))
"""


def _load_in_fresh_process(index: Any, path: Path) -> dict[str, Any]:
    """Save ``index`` to ``path`` and load it read-only in a new interpreter: its memory there.

    A fresh process, because this one holds the benchmark's corpus and the built index; the
    difference before and after the load is what a server opening the index pays.
    """
    t0 = time.perf_counter()
    index.save(path)
    save_s = time.perf_counter() - t0
    found = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE, str(path)], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(found.stdout.strip().splitlines()[-1])
    result["save_s"] = save_s
    result["index_kb_per_example"] = (
        (result["rss_after_load_mb"] - result["rss_before_load_mb"])
        * 1024
        / max(1, int(result["count"]))
    )
    return result


def _ingest_exact(data: Data, encoder: LookupEncoder) -> dict[str, Any]:
    """The build rate with an exact index: storing and column building, without IVF training."""
    from kshot.index.example_index import ExampleIndex

    rows = examples(data.texts)
    c0, t0 = time.process_time(), time.perf_counter()
    index = ExampleIndex.build(
        rows, encoder, embeddings=data.vectors, factory="Flat", show_progress=False
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    index.close()
    n = len(rows)
    return {
        "rows": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": n / wall,
        "rows_per_cpu_s": n / cpu if cpu else float("inf"),
    }


def _heldout_tuned(
    index: Any, data: Data, config: SpeedConfig, specs: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """Re-tune ``nprobe`` on held-out queries (not the measured ones), then re-time vector search.

    kshot's build tunes ``nprobe`` on vectors drawn from the corpus itself; this shows what the
    latency is at the ``nprobe`` :meth:`ExampleIndex.tune` finds for recall@10 >= 0.95 on
    queries from outside the corpus.
    """
    from kshot.index.vectors import exact_search

    tune_q = data.query_vectors[500:700]  # disjoint from the measured queries (0..n_queries)
    recall = index.tune(tune_q, target=0.95)
    nprobe = int(index.info()["nprobe"])
    qv = data.query_vectors[: config.n_queries]
    _, exact = exact_search(qv, data.vectors, 10)
    with index.reading():
        _, slots = index.view.vector_search(qv, 10, None)
    measured = (
        sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(slots, exact, strict=True))
        / exact.size
    )
    out: dict[str, Any] = {"nprobe": nprobe, "tuning_recall_at_10": recall}
    out["recall_at_10"] = measured
    out["short_results"] = short_results(index, qv, config.fetch_k)
    queries = data.queries[: config.n_queries]
    for name in ("similarity", "mmr"):
        try:
            out[name] = _time_selector(index, name, dict(specs[name]), queries, config)
        except MemoryError as exc:
            out[name] = {"error": repr(exc)}
        logger.info("scale held-out nprobe %d %s: %s", nprobe, name, json.dumps(out[name]))
    return out


def _time_selector(
    index: Any, name: str, params: dict[str, Any], queries: list[str], config: SpeedConfig
) -> dict[str, Any]:
    from kshot.selector.base import build_selector

    sel = build_selector(index, name, params)
    t0 = time.perf_counter()
    sel.select(queries[0], config.k)  # builds the lexical / BM25 index on first use
    first = time.perf_counter() - t0
    t = Timer()
    for q in queries:
        with t():
            sel.select(q, config.k)
    bt = Timer()
    with bt():
        sel.select_batch(queries[: config.batch_size], config.k)
    return {
        **t.summary(),
        "first_call_s": first,
        "batch_qps": config.batch_size / bt.wall[0],
        "batch_qps_cpu": config.batch_size / bt.cpu[0] if bt.cpu[0] else float("inf"),
    }
