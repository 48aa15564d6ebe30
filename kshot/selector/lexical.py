"""``jaccard`` and ``bm25``: lexical selectors over the index's inverted index."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from kshot.index.example_index import Mask
from kshot.selector.base import BaseSelector, register
from kshot.selector.similarity import available

__all__ = ["BM25Selector", "JaccardSelector"]

_Search = Callable[..., list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]]


class _LexicalSelector(BaseSelector):
    def _search(self) -> _Search:
        raise NotImplementedError

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        allowed = None if mask is None else self.index.slot_rows(self.index.live_slots(mask))
        search = self._search()

        def fetch(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
            found = search(queries, n, allowed=allowed)
            scores = np.full((len(queries), n), -np.inf)
            slots = np.full((len(queries), n), -1, np.int64)
            for i, (rows, row_scores) in enumerate(found):
                slots[i, : len(rows)] = self.index.slots_of_rows(rows)
                scores[i, : len(rows)] = row_scores
            return scores, slots

        return self.ranked_with_refill(queries, k, fetch, available(self, mask))


@register("jaccard")
class JaccardSelector(_LexicalSelector):
    """Token-set overlap |Q ∩ E| / |Q ∪ E| between the query and each example input.

    Tokens are case-folded Unicode words (see :mod:`kshot.index.lexical`). Exact, answered from an
    inverted index that touches only examples sharing a token with the query.
    """

    description = "Jaccard overlap of query and example word sets"

    def _search(self) -> _Search:
        return self.index.lexical.jaccard_top_k_batch


@register("bm25")
class BM25Selector(_LexicalSelector):
    """BM25 (Lucene variant, k1=1.5, b=0.75) of the example inputs against the query, via bm25s."""

    description = "BM25 ranking of example inputs (bm25s)"

    def _search(self) -> _Search:
        return self.index.lexical.bm25_top_k_batch
