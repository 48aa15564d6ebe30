"""``hybrid``: reciprocal-rank fusion of the ``similarity`` and ``bm25`` rankings."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kshot._ranking import reciprocal_rank_fusion
from kshot.errors import ConfigError
from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import available, lexical_fetcher, nearest
from kshot.selector.params import SelectorParams, param
from kshot.types import Mask

__all__ = ["HybridParams", "HybridSelector"]


@dataclass(frozen=True)
class HybridParams(SelectorParams):
    """Parameters of ``hybrid``; at least one of the two weights must be above 0."""

    fetch_k: int = param(
        50, "depth of each ranking before fusion (at least k)", minimum=1, maximum=10_000
    )
    k_rrf: float = param(
        60.0, "RRF constant: larger flattens the rank weights", minimum=0.0, maximum=10_000.0
    )
    similarity_weight: float = param(
        1.0, "weight of the similarity ranking", minimum=0.0, maximum=100.0
    )
    bm25_weight: float = param(1.0, "weight of the BM25 ranking", minimum=0.0, maximum=100.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.similarity_weight == 0 and self.bm25_weight == 0:
            raise ConfigError(
                "selector 'hybrid' parameters 'similarity_weight' and 'bm25_weight' are "
                "both 0; at least one must be above 0 (valid range: [0, 100])"
            )


@register("hybrid")
class HybridSelector(BaseSelector):
    """Dense and lexical evidence together: ``sum_r w_r / (k_rrf + rank_r)`` over both rankings.

    Each ranking takes the ``fetch_k`` best examples inside the filter; examples that share no
    word with the query (BM25 score 0) get no BM25 rank. The fused order breaks ties by insertion
    order. Scores are the fused RRF scores.
    """

    description = "reciprocal-rank fusion of cosine similarity and BM25"
    Params = HybridParams
    params: HybridParams

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        vectors = self.index.encode_queries(queries)
        lexical = lexical_fetcher(self.index, queries, mask, "bm25")
        limit = available(self.index, mask)
        fetch_k = max(self.params.fetch_k, k)
        weights = [self.params.similarity_weight, self.params.bm25_weight]
        k_rrf = self.params.k_rrf

        def fetch(n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
            depth = min(limit, max(n, fetch_k))
            _, dense = nearest(self.index, vectors, depth, mask)
            sparse_scores, sparse = lexical(depth)
            fused: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
            for i in range(len(queries)):
                rankings = [dense[i][dense[i] >= 0], sparse[i][sparse_scores[i] > 0]]
                fused.append(reciprocal_rank_fusion(rankings, k_rrf, weights=weights))
            width = max((len(ids) for ids, _ in fused), default=0)
            scores = np.full((len(queries), width), -np.inf)
            slots = np.full((len(queries), width), -1, np.int64)
            for i, (ids, fused_scores) in enumerate(fused):
                slots[i, : len(ids)] = ids
                scores[i, : len(ids)] = fused_scores
            return scores, slots

        return self.ranked_with_refill(queries, k, fetch, limit, vectors)
