"""Encoder throughput: MiniLM with torch, and ONNX fp32/int8 when installed."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.bench._imports import import_from
from kshot.bench.speed.config import HELD_OUT_QUERIES, MODEL_KEY, SpeedConfig
from kshot.bench.speed.corpus import bench_cache, cached_embeddings, corpus_texts
from kshot.bench.speed.data import minilm_encoder
from kshot.bench.speed.timing import Timer

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def encoder_speed(config: SpeedConfig) -> dict[str, Any]:
    """MiniLM sentences/s on CPU: torch fp32, and ONNX fp32/int8 when onnxruntime is there."""
    from kshot.bench.speed.onnx import onnx_encoders

    texts, queries = corpus_texts(5_000, HELD_OUT_QUERIES, config.seed)
    sample = texts[: config.encoder_sentences]
    model = minilm_encoder()
    model.encode(sample[:64])
    out: dict[str, Any] = {"sentences": len(sample), "batch_size": 64}
    t = Timer()
    with t():
        ref_sample = model.encode(sample, batch_size=64)
    out["torch_fp32"] = {
        "sentences_per_s": len(sample) / t.wall[0],
        "sentences_per_cpu_s": len(sample) / t.cpu[0],
        "torch_threads": torch_threads(),
    }
    try:
        if config.onnx_path:
            import_from(config.onnx_path, "onnxruntime", "onnx")
        encoders = onnx_encoders(bench_cache() / "onnx")
    except ImportError as exc:
        out["onnx"] = {"skipped": f"{exc}"}
        return out
    # reference top-10 neighbours with torch fp32 (cached corpus embeddings)
    # top-10 agreement: 200 held-out queries against the timed sample, torch fp32 as reference
    ref_corpus = cached_embeddings(texts, model.encode, MODEL_KEY)[: len(sample)]
    ref_queries = cached_embeddings(queries, model.encode, MODEL_KEY)[:200]
    queries = queries[:200]
    ref_top = np.argsort(-(ref_queries @ ref_corpus.T), axis=1)[:, :10]
    for name, encode in encoders.items():
        encode(sample[:64])
        t = Timer()
        with t():
            got = encode(sample)
        corpus = got
        qv = encode(queries)
        top = np.argsort(-(qv @ corpus.T), axis=1)[:, :10]
        agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top, strict=True)])
        out[name] = {
            "sentences_per_s": len(sample) / t.wall[0],
            "sentences_per_cpu_s": len(sample) / t.cpu[0],
            "speedup_vs_torch": (len(sample) / t.wall[0]) / out["torch_fp32"]["sentences_per_s"],
            "speedup_vs_torch_cpu": (len(sample) / t.cpu[0])
            / out["torch_fp32"]["sentences_per_cpu_s"],
            "mean_cosine_to_torch": float(np.mean(np.sum(got * ref_sample, axis=1))),
            "top10_agreement": float(agree),
            "top10_setup": (
                f"{len(queries)} held-out queries against {len(sample)} corpus sentences"
            ),
        }
    return out


def torch_threads() -> int:
    """Torch's intra-op thread count."""
    import torch

    return int(torch.get_num_threads())
