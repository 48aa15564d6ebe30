"""Candidate fetchers shared by the selectors: nearest neighbours and lexical top-n.

A *fetch* is a function ``fetch(n) -> (scores, slots)`` of shape ``(queries, n)``, best first,
``-1`` slots (score ``-inf``) padding rows with fewer candidates;
:meth:`~kshot.selector.base.BaseSelector.ranked_with_refill` calls it with a growing ``n`` until
the hygiene rules leave enough candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from kshot.selector.scan import exact_scan, rescored
from kshot.selector.view import IndexView
from kshot.types import Mask

__all__ = ["Fetch", "LexicalMethod", "available", "lexical_fetcher", "nearest", "vector_fetcher"]

Fetch = Callable[[int], tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]]
LexicalMethod = Literal["jaccard", "bm25"]


def available(index: IndexView, mask: Mask | None) -> int:
    """How many examples a request may return at most."""
    return len(index) if mask is None else int(mask.sum())


def nearest(
    index: IndexView, vectors: npt.NDArray[np.float32], n: int, mask: Mask | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Top-``n`` slots per query by cosine similarity, ties by insertion order (lower slot first).

    The candidates come from a bounded scan of a small index's byte codes
    (:mod:`kshot.selector.scan`) or from the index's vector search; their scores are then
    recomputed exactly from the stored vectors and re-sorted
    (:func:`~kshot.selector.scan.rescored`), because FAISS orders equal scores by neither slot nor
    batch-independent arithmetic (a batched search rounds differently from a single one). The
    recomputation is element-wise, so a query's scores depend neither on the batch it came in nor
    on the path that found its candidates. ``-1`` pads rows with fewer than ``n`` candidates
    (score ``-inf``).
    """
    return vector_fetcher(index, vectors, mask)(n)


def vector_fetcher(index: IndexView, vectors: npt.NDArray[np.float32], mask: Mask | None) -> Fetch:
    """``fetch(n)``: :func:`nearest` for the given query vectors (a scan prepared once)."""
    scan = exact_scan(index, vectors, mask)

    def fetch(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        if scan is not None:
            return scan.top(n)
        return rescored(index, vectors, index.vector_search(vectors, n, mask)[1])

    return fetch


def lexical_fetcher(
    index: IndexView, queries: list[str], mask: Mask | None, method: LexicalMethod
) -> Fetch:
    """``fetch(n)`` over the lexical index, by Jaccard or BM25.

    Results are ranked by score, ties by store row (insertion order); when fewer than ``n``
    examples score above zero the lexical index pads with zero-score examples in row order.
    """
    allowed = None if mask is None else index.slot_rows(index.live_slots(mask))
    lexical = index.lexical
    search = lexical.jaccard_top_k_batch if method == "jaccard" else lexical.bm25_top_k_batch

    def fetch(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        scores = np.full((len(queries), max(n, 0)), -np.inf)
        slots = np.full((len(queries), max(n, 0)), -1, np.int64)
        if n <= 0:
            return scores, slots
        for i, (rows, row_scores) in enumerate(search(queries, n, allowed=allowed)):
            slots[i, : len(rows)] = index.slots_of_rows(rows)
            scores[i, : len(rows)] = row_scores
        return scores, slots

    return fetch
