"""The speed benchmark's corpus: real sentences, seeded synthetic text, cached MiniLM embeddings.

Real text comes from the four registered data sets (:mod:`kshot.data`): BANKING77 and CLINC150
utterances, movie-review snippets and BoolQ *questions* (the passage is dropped), de-duplicated
after :func:`~kshot.index.normalize_text` and shuffled with a fixed seed. The first
``n_queries`` sentences are held out as queries and never enter a corpus.

Larger corpora are filled with *spliced* sentences: the head of one real sentence joined to the
tail of another, cut at seeded word positions. They keep the vocabulary and length distribution
of real text, which is what the lexical selectors' speed depends on.

Embeddings are real all-MiniLM-L6-v2 vectors for the first ``embed_rows`` corpus rows (cached as
``.npy`` chunks under the bench cache, keyed by the text's hash, so they are computed once).
Rows past that get *synthetic* vectors: the real vector of a seeded random embedded row plus
Gaussian noise, re-normalised (cosine to the base row about 0.9), so that the approximate index
sees clusters shaped like real data rather than uniform noise.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kshot.index.filters import normalize_text

__all__ = [
    "bench_cache",
    "cached_embeddings",
    "corpus_texts",
    "extend_vectors",
    "real_sentences",
    "synthetic_sentences",
]

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]

_DATASETS = ("banking77", "clinc150", "movie-sentiment", "boolq")
_CHUNK = 5_000


def bench_cache() -> Path:
    """``$KSHOT_CACHE/bench`` if set, else ``~/.cache/kshot/bench``."""
    root = os.environ.get("KSHOT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "kshot"
    return base / "bench"


def real_sentences(seed: int = 0) -> list[str]:
    """Every distinct real sentence of the registered data sets, in a seeded shuffled order."""
    from kshot.data import DATASETS, load_dataset

    seen: set[str] = set()
    out: list[str] = []
    for name in _DATASETS:
        for split in DATASETS[name].splits:
            for example in load_dataset(name, split):
                text = example.input
                if name == "boolq":
                    text = text.rsplit("\nQuestion: ", 1)[-1]
                text = " ".join(text.split())
                key = normalize_text(text)
                if text and key not in seen:
                    seen.add(key)
                    out.append(text)
    random.Random(seed).shuffle(out)
    return out


def synthetic_sentences(base: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` spliced sentences: a seeded head of one ``base`` sentence + the tail of another."""
    rng = random.Random(seed)
    words = [s.split() for s in base]
    out: list[str] = []
    for _ in range(n):
        a = words[rng.randrange(len(words))]
        b = words[rng.randrange(len(words))]
        i = rng.randint(1, max(1, len(a) - 1))
        j = rng.randint(0, max(0, len(b) - 1))
        out.append(" ".join(a[:i] + b[j:]))
    return out


def corpus_texts(n: int, n_queries: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(corpus, queries)``: ``n`` corpus texts (real first, then spliced) and held-out queries."""
    real = real_sentences(seed)
    queries, pool = real[:n_queries], real[n_queries:]
    corpus = pool[:n]
    if len(corpus) < n:
        corpus += synthetic_sentences(pool, n - len(corpus), seed + 1)
    return corpus, queries


def _text_key(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def cached_embeddings(
    texts: Sequence[str],
    encode: Callable[[list[str]], Floats],
    model_key: str,
    *,
    cache: Path | None = None,
) -> Floats:
    """Embed ``texts`` in chunks, each cached as ``.npy`` (keyed by model and chunk text)."""
    folder = (cache or bench_cache()) / "embeddings" / model_key
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[Floats] = []
    for start in range(0, len(texts), _CHUNK):
        chunk = list(texts[start : start + _CHUNK])
        path = folder / f"{_text_key(chunk)}.npy"
        if path.is_file():
            parts.append(np.load(path))
            continue
        logger.info("embedding rows %d..%d (%s)", start, start + len(chunk), model_key)
        vectors = np.ascontiguousarray(encode(chunk), dtype=np.float32)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
        parts.append(vectors)
    if not parts:
        return np.empty((0, 0), np.float32)
    return np.concatenate(parts)


def extend_vectors(real: Floats, n: int, seed: int, noise: float = 0.025) -> Floats:
    """``n`` vectors: ``real`` first, then real rows plus Gaussian noise, re-normalised."""
    if n <= len(real):
        return real[:n]
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), np.float32)
    out[: len(real)] = real
    for start in range(len(real), n, 100_000):
        end = min(n, start + 100_000)
        base = real[rng.integers(0, len(real), end - start)]
        block = base + rng.normal(0.0, noise, base.shape).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start:end] = block
    return out
