"""The corpus of one comparison size and the encoders both sides share."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot.bench.lookup import LookupEncoder
from kshot.bench.speed.config import HELD_OUT_QUERIES, MODEL_KEY, SpeedConfig
from kshot.bench.speed.corpus import cached_embeddings, corpus_texts, extend_vectors

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]


def langchain_embeddings(encoder: LookupEncoder) -> Any:
    """LangChain ``Embeddings`` answering from the same encoder as kshot's side."""
    from langchain_core.embeddings import Embeddings

    class SharedEmbeddings(Embeddings):
        """LangChain embeddings reading the same table / model as the kshot encoder."""

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [list(map(float, row)) for row in encoder.encode(texts)]

        def embed_query(self, text: str) -> list[float]:
            # a numpy row: FAISS does np.array([embedding]) on it, no list conversion cost
            row: Any = encoder.encode([text])[0]
            return row  # type: ignore[no-any-return]

    return SharedEmbeddings()


def minilm_encoder() -> Any:
    """The real MiniLM encoder on the CPU, with kshot's query cache off (fair timings)."""
    from kshot.index.encoder import SentenceTransformerEncoder

    return SentenceTransformerEncoder(device="cpu", query_cache_size=0)


# --- data -----------------------------------------------------------------------------------


@dataclass
class Data:
    """Corpus texts and vectors, query texts and vectors."""

    texts: list[str]
    vectors: Floats
    queries: list[str]
    query_vectors: Floats
    real_rows: int


def load_data(n: int, config: SpeedConfig, encode: Callable[[list[str]], Floats] | None) -> Data:
    """Corpus of ``n`` rows: real text then spliced text; real vectors then noisy copies.

    The first ``config.embed_rows`` rows of the largest corpus carry real MiniLM vectors whatever
    ``n`` is, so every size reuses the same cached embeddings. Without ``encode``, the bundled
    MiniLM is loaded only if some of them are not cached yet (a fresh machine).
    """
    texts, queries = corpus_texts(max(n, config.embed_rows), HELD_OUT_QUERIES, config.seed)
    # Local, so that the model is freed when this returns and no later memory figure holds it.
    minilm = functools.cache(minilm_encoder)

    def _minilm(chunk: list[str]) -> Floats:
        vectors: Floats = minilm().encode(chunk)
        return vectors

    enc = encode or _minilm
    qv = cached_embeddings(queries, enc, MODEL_KEY)
    real = cached_embeddings(texts[: config.embed_rows], enc, MODEL_KEY)
    vectors = extend_vectors(real, n, config.seed + 2)
    return Data(texts[:n], vectors, queries, qv, min(n, config.embed_rows))


def examples(texts: Sequence[str]) -> list[dict[str, Any]]:
    """The corpus rows as LangChain-style example dicts (input, output, id)."""
    return [{"input": t, "output": f"answer {i}", "id": f"ex{i}"} for i, t in enumerate(texts)]
