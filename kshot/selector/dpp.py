"""``dpp``: relevance-weighted determinantal point process, greedy, over the nearest candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kshot._ranking import dpp_greedy
from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import available, vector_fetcher
from kshot.selector.params import SelectorParams, param
from kshot.types import Mask

__all__ = ["DPPParams", "DPPSelector"]


@dataclass(frozen=True)
class DPPParams(SelectorParams):
    """Parameters of ``dpp``."""

    alpha: float = param(
        5.0, "relevance weight in the quality exp(alpha * cosine)", minimum=0.0, maximum=50.0
    )
    fetch_k: int = param(
        20, "nearest candidates the DPP chooses from (at least k)", minimum=1, maximum=10_000
    )


@register("dpp")
class DPPSelector(BaseSelector):
    """A set that is relevant and diverse as a whole: the greedy maximum of a DPP determinant.

    The ``fetch_k`` nearest candidates (filters applied, hygiene applied) form the kernel
    ``L = diag(q) S diag(q)`` with ``S`` their cosine Gram matrix and quality
    ``q = exp(alpha * (cos(query, c) - max cos))``: ``log det L`` is ``2 * alpha`` times the
    summed relevance plus the log-volume the picks span, so ``alpha`` trades relevance against
    diversity (0: diversity only; large: the similarity ranking). Picks come greedily in the
    order of their gain; once the kernel is exhausted (near-duplicates) the rest follow relevance.
    Scores are the cosine similarity to the query.
    """

    description = "determinantal point process (greedy MAP): relevant, jointly diverse"
    Params = DPPParams
    params: DPPParams

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
        alpha = self.params.alpha
        out: list[list[tuple[int, float]]] = []
        for pool in pools:
            if not pool:
                out.append([])
                continue
            slots = [slot for slot, _ in pool]
            relevance = np.array([score for _, score in pool], np.float64)
            candidates = self.index.slot_vectors(slots).astype(np.float64)
            gram = candidates @ candidates.T
            quality = np.exp(alpha * (relevance - relevance.max()))
            order = dpp_greedy(quality, gram, k)
            out.append([pool[j] for j in order.tolist()])
        return out
