"""``similarity``: cosine nearest neighbours from the FAISS index."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from kshot.index.example_index import ExampleIndex, Mask
from kshot.selector.base import BaseSelector, register

__all__ = ["SimilaritySelector", "available", "nearest", "vector_fetcher"]

Fetch = Callable[[int], tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]

_NO_SLOT = np.iinfo(np.int64).max
_GATHER_FLOATS = 1 << 24  # 64 MiB of float32 candidate vectors per block


@register("similarity")
class SimilaritySelector(BaseSelector):
    """The k examples whose embeddings are closest to the query's (cosine similarity)."""

    description = "cosine nearest neighbours of the query embedding"

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        vectors = self.index.encode_queries(queries)
        return self.ranked_with_refill(
            queries, k, vector_fetcher(self.index, vectors, mask), available(self, mask)
        )


def available(selector: BaseSelector, mask: Mask | None) -> int:
    """How many examples a request may return at most."""
    return len(selector.index) if mask is None else int(mask.sum())


def nearest(
    index: ExampleIndex, vectors: npt.NDArray[np.float32], n: int, mask: Mask | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Top-``n`` slots per query by cosine similarity, ties by insertion order (lower slot first).

    FAISS finds the candidates; their scores are then recomputed exactly from the stored vectors
    and re-sorted, because FAISS orders equal scores by neither slot nor batch-independent
    arithmetic (a batched search rounds differently from a single one). The recomputation is
    element-wise, so a query's scores do not depend on the batch it came in. ``-1`` pads rows
    with fewer than ``n`` candidates (score ``-inf``).
    """
    _, slots = index.vector_search(vectors, n, mask)
    valid = slots >= 0
    scores = np.full(slots.shape, -np.inf)
    # Gather candidate vectors a block of queries at a time: (m, n, d) at once can be gigabytes.
    step = max(1, _GATHER_FLOATS // max(1, slots.shape[1] * vectors.shape[1]))
    for start in range(0, len(slots), step):
        block = slice(start, start + step)
        candidates = index.slot_vectors(np.where(valid[block], slots[block], 0))
        scores[block] = np.einsum("mnd,md->mn", candidates, vectors[block], dtype=np.float64)
    scores[~valid] = -np.inf
    order = np.lexsort((np.where(valid, slots, _NO_SLOT), -scores), axis=-1)
    return (
        np.take_along_axis(scores, order, axis=1),
        np.take_along_axis(slots, order, axis=1),
    )


def vector_fetcher(
    index: ExampleIndex, vectors: npt.NDArray[np.float32], mask: Mask | None
) -> Fetch:
    """``fetch(n)`` for :meth:`BaseSelector.ranked_with_refill` over the vector index."""
    return lambda n: nearest(index, vectors, n, mask)
