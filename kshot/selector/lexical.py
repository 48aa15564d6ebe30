"""``jaccard`` and ``bm25``: lexical selectors over the index's inverted index."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from kshot.index.example_index import ExampleIndex, Mask
from kshot.selector.base import BaseSelector, register
from kshot.selector.similarity import Fetch, available

__all__ = ["BM25Selector", "JaccardSelector", "lexical_fetcher"]

LexicalMethod = Literal["jaccard", "bm25"]


def lexical_fetcher(
    index: ExampleIndex, queries: list[str], mask: Mask | None, method: LexicalMethod
) -> Fetch:
    """``fetch(n)`` for :meth:`BaseSelector.ranked_with_refill` over the lexical index.

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


class _LexicalSelector(BaseSelector):
    method: LexicalMethod

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        fetch = lexical_fetcher(self.index, queries, mask, self.method)
        return self.ranked_with_refill(queries, k, fetch, available(self, mask))


@register("jaccard")
class JaccardSelector(_LexicalSelector):
    """Token-set overlap |Q ∩ E| / |Q ∪ E| between the query and each example input.

    Tokens are case-folded Unicode words (see :mod:`kshot.index.lexical`). Exact, answered from an
    inverted index that touches only examples sharing a token with the query.
    """

    description = "Jaccard overlap of query and example word sets"
    method = "jaccard"


@register("bm25")
class BM25Selector(_LexicalSelector):
    """BM25 (Lucene variant, k1=1.5, b=0.75) of the example inputs against the query, via bm25s."""

    description = "BM25 ranking of example inputs (bm25s)"
    method = "bm25"
