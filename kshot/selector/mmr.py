"""``mmr``: maximal marginal relevance over the ``fetch_k`` nearest candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kshot._ranking import mmr_batch
from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import available, vector_fetcher
from kshot.selector.params import SelectorParams, param
from kshot.types import Mask

__all__ = ["MMRParams", "MMRSelector"]


@dataclass(frozen=True)
class MMRParams(SelectorParams):
    """Parameters of ``mmr``; ``lambda`` is the field ``lambda_`` (a Python keyword)."""

    lambda_: float = param(
        0.5, "1 = pure similarity, 0 = pure diversity", name="lambda", minimum=0.0, maximum=1.0
    )
    fetch_k: int = param(
        20, "nearest candidates MMR re-ranks (at least k)", minimum=1, maximum=10_000
    )


@register("mmr")
class MMRSelector(BaseSelector):
    """Relevant and diverse: trade similarity to the query against similarity to picks so far.

    Filters apply to the candidate search itself, so filtered requests stay filtered (LangChain's
    MMR selector drops the filter). Scores are the cosine similarity to the query; the order is
    MMR's pick order.
    """

    description = "maximal marginal relevance: relevant to the query, diverse among themselves"
    Params = MMRParams
    params: MMRParams

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        vectors = self.index.encode_queries(queries)
        fetch_k = max(self.params.fetch_k, k)
        pools = self.ranked_with_refill(
            queries,
            fetch_k,
            vector_fetcher(self.index, vectors, mask),
            available(self.index, mask),
            vectors,
        )
        width = max((len(p) for p in pools), default=0)
        if width == 0:
            return [[] for _ in queries]
        slots = np.zeros((len(queries), width), np.int64)
        relevance = np.zeros((len(queries), width), np.float64)
        valid = np.zeros((len(queries), width), np.bool_)
        for i, pool in enumerate(pools):
            slots[i, : len(pool)] = [s for s, _ in pool]
            relevance[i, : len(pool)] = [score for _, score in pool]
            valid[i, : len(pool)] = True
        candidates = self.index.slot_vectors(slots)
        order = mmr_batch(
            None, candidates, k, self.params.lambda_, relevance=relevance, valid=valid
        )
        return [
            [(int(slots[i, j]), float(relevance[i, j])) for j in row if j >= 0]
            for i, row in enumerate(order)
        ]
