"""``similarity``: cosine nearest neighbours from the FAISS index."""

from __future__ import annotations

from kshot.index.example_index import Mask
from kshot.selector.base import BaseSelector, register

__all__ = ["SimilaritySelector"]


@register("similarity")
class SimilaritySelector(BaseSelector):
    """The k examples whose embeddings are closest to the query's (cosine similarity)."""

    description = "cosine nearest neighbours of the query embedding"

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        vectors = self.index.encode_queries(queries)
        return self.ranked_with_refill(
            queries, k, lambda n: self.index.vector_search(vectors, n, mask), available(self, mask)
        )


def available(selector: BaseSelector, mask: Mask | None) -> int:
    """How many examples a request may return at most."""
    return len(selector.index) if mask is None else int(mask.sum())
