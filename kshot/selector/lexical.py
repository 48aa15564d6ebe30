"""``jaccard`` and ``bm25``: lexical selectors over the index's inverted index."""

from __future__ import annotations

from typing import ClassVar

from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import LexicalMethod, available, lexical_fetcher
from kshot.types import Mask

__all__ = ["BM25Selector", "JaccardSelector"]


class _LexicalSelector(BaseSelector):
    method: ClassVar[LexicalMethod]

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        fetch = lexical_fetcher(self.index, queries, mask, self.method)
        return self.ranked_with_refill(queries, k, fetch, available(self.index, mask))


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
