"""The speed benchmark's settings and constants."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


MODEL_KEY = "all-MiniLM-L6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
#: Held-out real sentences used as queries (never in a corpus).
HELD_OUT_QUERIES = 1_000


@dataclass(frozen=True)
class SpeedConfig:
    """What one speed run measures; every field is recorded in ``results.json``."""

    out: str = "benchmarks/results/speed"
    sizes: tuple[int, ...] = (10_000, 100_000)
    """Corpus sizes of the side-by-side comparison with LangChain."""
    scale: int | None = None
    """When set (e.g. 1_000_000), also measure kshot alone at this size."""
    k: int = 4
    fetch_k: int = 20
    lambda_mult: float = 0.5
    n_queries: int = 200
    """Queries per per-query latency measurement (held-out real sentences)."""
    n_e2e_queries: int = 40
    """Queries for the end-to-end (encoder included) measurement."""
    batch_size: int = 200
    """Queries per batch-throughput call."""
    embed_rows: int = 10_000
    """Corpus rows with real MiniLM embeddings; later rows get noisy copies (see the corpus)."""
    ngram_size: int = 4_000
    n_ngram_queries: int = 5
    mmr_fetch_ks: tuple[int, ...] = (20, 1000)
    encoder: bool = True
    """Measure encoder throughput (torch, and ONNX when installed)."""
    encoder_sentences: int = 1_000
    onnx_path: str | None = None
    """A folder holding ``onnxruntime`` and ``onnx`` (imported from it; ``sys.path`` unchanged)."""
    nltk_path: str | None = None
    """A folder holding ``nltk`` for LangChain's NGramOverlap selector (imported from it)."""
    compare: bool = True
    """Run the LangChain comparison at ``sizes``; off for a scale-only run."""
    threads: int = 1
    """OpenMP / torch / ONNX Runtime threads for the whole run (both sides alike). On a shared,
    oversubscribed machine two OpenMP threads made one FAISS search 50x and one MiniLM call 25x
    slower than one thread, so the default is 1."""
    scale_factory: str | None = None
    """FAISS factory for the scale run; ``None``: kshot's default (:func:`choose_factory`)."""
    ivf_from: int = 50_000
    """At comparison sizes from this one up, also measure kshot over an IVF index (nprobe tuned
    by kshot) next to its default exact index."""
    http: bool = True
    """Time ``POST /v1/select`` on ``kshot serve`` beside a bare FastAPI app (see ``http``)."""
    http_size: int = 10_000
    http_requests: int = 300
    """Requests per HTTP arm (after ``http_warm_up`` more), interleaved."""
    http_warm_up: int = 20
    seed: int = 0
    previous: str | None = None
    """An earlier run's ``results.json``: its target figures are recorded beside this run's and
    the report's targets table shows both (before and after)."""

    def __post_init__(self) -> None:
        if self.k < 1 or self.fetch_k < self.k:
            raise ValueError(f"need 1 <= k <= fetch_k, got k={self.k}, fetch_k={self.fetch_k}")
        if any(s < 100 for s in self.sizes) or (self.scale is not None and self.scale < 100):
            raise ValueError(f"sizes must be at least 100, got {self.sizes} / {self.scale}")
        if not 2 <= self.n_queries <= HELD_OUT_QUERIES or not 1 <= self.batch_size <= 1000:
            raise ValueError("n_queries must be in [2, 1000] and batch_size in [1, 1000]")
