"""Kshot against LangChain's selectors: side by side, MMR re-ranking alone, lexical."""

from __future__ import annotations

import gc
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.bench._imports import import_from
from kshot.bench.lookup import LookupEncoder
from kshot.bench.speed.config import DIM, HELD_OUT_QUERIES, MODEL_NAME, SpeedConfig
from kshot.bench.speed.corpus import corpus_texts
from kshot.bench.speed.data import Data, examples, langchain_embeddings, load_data
from kshot.bench.speed.timing import Timer, batch_summary, ratio, rss_mb

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def _build_langchain(data: Data, encoder: LookupEncoder) -> tuple[Any, float]:
    from langchain_community.vectorstores import FAISS

    t0 = time.perf_counter()
    store = FAISS.from_embeddings(
        text_embeddings=list(zip(data.texts, data.vectors, strict=True)),
        embedding=langchain_embeddings(encoder),
        metadatas=examples(data.texts),
    )
    return store, time.perf_counter() - t0


def build_kshot(
    data: Data, encoder: LookupEncoder, factory: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Build kshot's index of ``data`` (FAISS ``factory``); return it and its build numbers."""
    from kshot.index.example_index import ExampleIndex

    gc.collect()
    rss0 = rss_mb()
    c0, t0 = time.process_time(), time.perf_counter()
    index = ExampleIndex.build(
        examples(data.texts),
        encoder,
        embeddings=data.vectors,
        factory=factory,
        show_progress=False,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(data.texts)
    return index, {
        "rows": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "rows_per_s": n / wall,
        "rows_per_cpu_s": n / cpu if cpu else float("inf"),
        "factory": index.factory,
        "nprobe": index.info()["nprobe"],
        "recall_at_10_manifest": index.recall_at_10,
        "rss_delta_mb": rss_mb() - rss0,
    }


def _ids_kshot(found: Sequence[Any]) -> list[str]:
    return [s.example.id for s in found]


def _ids_lc(found: Sequence[Mapping[str, Any]]) -> list[str]:
    return [str(row["id"]) for row in found]


def compare_at(n: int, config: SpeedConfig, real_encoder: Any | None) -> dict[str, Any]:
    """Kshot vs LangChain at one corpus size (both modes), plus agreement of the picks."""
    from langchain_core.example_selectors import (
        MaxMarginalRelevanceExampleSelector,
        SemanticSimilarityExampleSelector,
    )

    from kshot.selector.base import build_selector

    data = load_data(n, config, None if real_encoder is None else real_encoder.encode)
    table = dict(zip(data.queries, data.query_vectors, strict=True))
    encoder = LookupEncoder(real_encoder, table=table, name=MODEL_NAME, dim=DIM)
    index, build = build_kshot(data, encoder)
    lc_store, lc_build_s = _build_langchain(data, encoder)
    out: dict[str, Any] = {
        "n": n,
        "real_embedded_rows": data.real_rows,
        "kshot_build": build,
        "langchain_build": {"wall_s": lc_build_s, "rows_per_s": n / lc_build_s},
    }
    k, fetch_k, lam = config.k, config.fetch_k, config.lambda_mult
    pairs = {
        "similarity": (
            build_selector(index, "similarity"),
            SemanticSimilarityExampleSelector(vectorstore=lc_store, k=k, input_keys=["input"]),
        ),
        "mmr": (
            build_selector(index, "mmr", {"fetch_k": fetch_k, "lambda": lam}),
            MaxMarginalRelevanceExampleSelector(
                vectorstore=lc_store, k=k, fetch_k=fetch_k, input_keys=["input"]
            ),
        ),
    }
    queries = data.queries[: config.n_queries]
    for name, (ks, lc) in pairs.items():
        res = _measure_pair(ks, lc, data, config, queries)
        if real_encoder is not None and config.n_e2e_queries:
            res["e2e"] = _measure_e2e(ks, lc, encoder, data, config)
        out[name] = res
        logger.info("n=%d %s: %s", n, name, json.dumps(res["vector"]["batch"]))
    if n >= config.ivf_from:
        nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
        ivf, ivf_build = build_kshot(data, encoder, factory=f"IVF{nlist},Flat")
        out["kshot_ivf_build"] = ivf_build
        from kshot.index.vectors import exact_search

        qv = data.query_vectors[: config.n_queries]
        _, exact = exact_search(qv, data.vectors, 10)
        with ivf.reading():
            _, slots = ivf.view.vector_search(qv, 10, None)
        out["kshot_ivf_recall_at_10_new_queries"] = (
            sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(slots, exact, strict=True))
            / exact.size
        )
        out["kshot_ivf_short_results"] = short_results(ivf, qv, fetch_k)
        for name, (_, lc) in pairs.items():
            params = {} if name == "similarity" else {"fetch_k": fetch_k, "lambda": lam}
            try:
                res = _measure_pair(build_selector(ivf, name, params), lc, data, config, queries)
            except MemoryError as exc:  # recorded: a finding, not a benchmark failure
                logger.error("n=%d %s (IVF) failed: %r", n, name, exc)
                out[f"{name}_ivf"] = {"error": repr(exc)}
                continue
            out[f"{name}_ivf"] = res
            logger.info("n=%d %s (IVF): %s", n, name, json.dumps(res["vector"]["batch"]))
        del ivf
    out["rss_mb"] = rss_mb()
    del lc_store, index, pairs
    gc.collect()
    return out


def short_results(index: Any, qv: Floats, fetch_k: int) -> dict[str, Any]:
    """How often the tuned index returns fewer valid rows than asked (IVF cells run dry)."""
    want = fetch_k + max(4, fetch_k // 2)  # the first fetch of ranked_with_refill
    with index.reading():
        _, slots = index.view.vector_search(qv, want, None)
    valid = (slots >= 0).sum(axis=1)
    return {
        "asked": want,
        "nprobe": index.info()["nprobe"],
        "queries_short": int((valid < want).sum()),
        "queries": len(qv),
        "min_valid": int(valid.min()),
    }


def _measure_pair(
    ks: Any, lc: Any, data: Data, config: SpeedConfig, queries: list[str]
) -> dict[str, Any]:
    """Per-query latency (interleaved), batch throughput and agreement, query vector in hand."""
    k = config.k
    for q in queries[:5]:  # warm-up
        ks.select(q, k)
        lc.select_examples({"input": q})
    tk, tl = Timer(), Timer()
    agree_set, agree_order, overlap = 0, 0, 0.0
    for q in queries:
        with tk():
            a = _ids_kshot(ks.select(q, k))
        with tl():
            b = _ids_lc(lc.select_examples({"input": q}))
        agree_set += set(a) == set(b)
        agree_order += a == b
        overlap += len(set(a) & set(b)) / max(len(b), 1)
    bq = data.queries[: config.batch_size]
    bk, bl = Timer(), Timer()
    for _ in range(3):
        with bk():
            ks.select_batch(bq, k)
        with bl():
            for q in bq:
                lc.select_examples({"input": q})
    return {
        "vector": {
            "kshot": tk.summary(),
            "langchain": tl.summary(),
            "latency_ratio_p50": ratio(np.median(tl.wall), np.median(tk.wall)),
            "latency_ratio_p50_cpu": ratio(np.median(tl.cpu), np.median(tk.cpu)),
            "batch": batch_summary(bk, bl, len(bq)),
        },
        "agreement": {
            "queries": len(queries),
            "same_set": agree_set / len(queries),
            "same_order": agree_order / len(queries),
            "mean_overlap": overlap / len(queries),
        },
    }


def _measure_e2e(
    ks: Any, lc: Any, encoder: LookupEncoder, data: Data, config: SpeedConfig
) -> dict[str, Any]:
    """The same, with both sides running MiniLM on the query text."""
    k = config.k
    encoder.lookup = False
    try:
        eq = data.queries[: config.n_e2e_queries]
        ks.select(eq[0], k)
        lc.select_examples({"input": eq[0]})
        ek, el = Timer(), Timer()
        for q in eq:
            with ek():
                ks.select(q, k)
            with el():
                lc.select_examples({"input": q})
        ebk, ebl = Timer(), Timer()
        with ebk():
            ks.select_batch(eq, k)
        with ebl():
            for q in eq:
                lc.select_examples({"input": q})
    finally:
        encoder.lookup = True
    return {
        "kshot": ek.summary(),
        "langchain": el.summary(),
        "latency_ratio_p50": ratio(np.median(el.wall), np.median(ek.wall)),
        "latency_ratio_p50_cpu": ratio(np.median(el.cpu), np.median(ek.cpu)),
        "batch": batch_summary(ebk, ebl, len(eq)),
    }


# --- MMR re-ranking alone --------------------------------------------------------------------


def mmr_rerank(data: Data, config: SpeedConfig) -> dict[str, Any]:
    """Kshot ``mmr`` vs LangChain ``maximal_marginal_relevance`` on the same candidates."""
    from langchain_community.vectorstores.utils import maximal_marginal_relevance

    from kshot._ranking import mmr_batch
    from kshot.index.vectors import exact_search

    out: dict[str, Any] = {}
    queries = data.query_vectors[: min(config.n_queries, 100)]
    for fetch_k in config.mmr_fetch_ks:
        _, pos = exact_search(queries, data.vectors, fetch_k)
        tk, tl = Timer(), Timer()
        same = 0
        for qv, p in zip(queries, pos, strict=True):
            cands = data.vectors[p]
            cand_list = list(cands)  # what LangChain's FAISS store hands over (reconstructed rows)
            with tk():
                a = mmr_batch(qv[None], cands[None], config.k, config.lambda_mult)[0]
            with tl():
                b = maximal_marginal_relevance(
                    np.array([qv], dtype=np.float32), cand_list, config.lambda_mult, config.k
                )
            same += a.tolist() == list(b)
        out[str(fetch_k)] = {
            "kshot": tk.summary(),
            "langchain": tl.summary(),
            "ratio_p50": ratio(np.median(tl.wall), np.median(tk.wall)),
            "ratio_p50_cpu": ratio(np.median(tl.cpu), np.median(tk.cpu)),
            "same_picks": same / len(queries),
        }
    return out


# --- lexical vs NGramOverlap -----------------------------------------------------------------


def lexical_vs_ngram(config: SpeedConfig) -> dict[str, Any]:
    """Kshot ``jaccard`` / ``bm25`` vs ``NGramOverlapExampleSelector`` on a small corpus."""
    from kshot.index.encoder import HashingEncoder
    from kshot.index.example_index import ExampleIndex
    from kshot.selector.base import build_selector

    if config.nltk_path:
        import_from(config.nltk_path, "nltk")
    texts, queries = corpus_texts(config.ngram_size, HELD_OUT_QUERIES, config.seed)
    queries = queries[: config.n_queries]
    index = ExampleIndex.build(examples(texts), HashingEncoder(16), show_progress=False)
    out: dict[str, Any] = {"n": len(texts)}
    timers: dict[str, Timer] = {}
    for name in ("jaccard", "bm25"):
        sel = build_selector(index, name)
        sel.select(queries[0], config.k)
        t = Timer()
        for q in queries:
            with t():
                sel.select(q, config.k)
        timers[name] = t
        out[name] = t.summary()
    try:
        from langchain_community.example_selectors import NGramOverlapExampleSelector
        from langchain_core.prompts import PromptTemplate

        lc = NGramOverlapExampleSelector(
            examples=[{"input": t, "output": "x"} for t in texts],
            example_prompt=PromptTemplate.from_template("{input} -> {output}"),
        )
    except ImportError as exc:
        out["ngram_overlap"] = {"skipped": f"{exc}"}
        return out
    tl = Timer()
    for q in queries[: config.n_ngram_queries]:
        with tl():
            lc.select_examples({"input": q})
    out["ngram_overlap"] = tl.summary()
    out["jaccard_vs_ngram_ratio_p50"] = ratio(np.median(tl.wall), np.median(timers["jaccard"].wall))
    out["jaccard_vs_ngram_ratio_p50_cpu"] = ratio(
        np.median(tl.cpu), np.median(timers["jaccard"].cpu)
    )
    out["note"] = (
        "NGramOverlap scores every example with NLTK sentence_bleu and returns all of them sorted; "
        "its ranking differs from Jaccard's, so only speed is compared"
    )
    return out
