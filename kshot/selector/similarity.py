"""``similarity``: cosine nearest neighbours from the FAISS index."""

from __future__ import annotations

from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import available, vector_fetcher
from kshot.types import Mask

__all__ = ["SimilaritySelector"]


@register("similarity")
class SimilaritySelector(BaseSelector):
    """The k examples whose embeddings are closest to the query's (cosine similarity)."""

    description = "cosine nearest neighbours of the query embedding"

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        vectors = self.index.encode_queries(queries)
        return self.ranked_with_refill(
            queries,
            k,
            vector_fetcher(self.index, vectors, mask),
            available(self.index, mask),
            vectors,
        )
