"""``coverage``: a set of examples that covers the query's words, not k copies of the best one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from kshot._ranking import coverage_greedy
from kshot.index.lexical import tokenize
from kshot.selector.base import BaseSelector, register
from kshot.selector.fetch import Fetch, available, lexical_fetcher, vector_fetcher
from kshot.selector.params import SelectorParams, param
from kshot.types import Mask

__all__ = ["CoverageParams", "CoverageSelector"]


@dataclass(frozen=True)
class CoverageParams(SelectorParams):
    """Parameters of ``coverage``."""

    pool: Literal["similarity", "bm25"] = param("similarity", "the ranking candidates come from")
    fetch_k: int = param(20, "candidates in the pool (at least k)", minimum=1, maximum=10_000)
    weighting: Literal["idf", "uniform"] = param("idf", "query-token weights")


@register("coverage")
class CoverageSelector(BaseSelector):
    """Greedy set-level coverage of the query's tokens over a candidate pool.

    The ``pool`` strategy (``similarity`` or ``bm25``) ranks ``fetch_k`` candidates inside the
    filter, hygiene applied. Each pick then takes the candidate covering the most query-token
    weight that earlier picks left uncovered (ties: the better-ranked candidate); once nothing
    new can be covered the rest follow the pool ranking. Token weights are IDF over the index
    (``weighting="idf"``, so rare words count more than "the"; document frequencies come from
    the lexical index) or 1 each (``"uniform"``). Tokens are those of
    :func:`kshot.index.lexical.tokenize`. Scores are the pool's scores.
    """

    description = "greedy coverage of the query's words by the set of examples"
    Params = CoverageParams
    params: CoverageParams

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        fetch: Fetch
        vectors = None
        if self.params.pool == "bm25":
            fetch = lexical_fetcher(self.index, queries, mask, "bm25")
        else:
            vectors = self.index.encode_queries(queries)
            fetch = vector_fetcher(self.index, vectors, mask)
        fetch_k = max(self.params.fetch_k, k)
        pools = self.ranked_with_refill(
            queries, fetch_k, fetch, available(self.index, mask), vectors
        )
        out: list[list[tuple[int, float]]] = []
        for query, pool in zip(queries, pools, strict=True):
            if not pool:
                out.append([])
                continue
            weights = self._weights(sorted(set(tokenize(query))))
            covers = [
                set(tokenize(self.index.slot_text(slot))) & weights.keys() for slot, _ in pool
            ]
            relevance = [score for _, score in pool]
            order = coverage_greedy(weights, covers, k, relevance=relevance)
            out.append([pool[j] for j in order.tolist()])
        return out

    def _weights(self, tokens: list[str]) -> dict[str, float]:
        if self.params.weighting == "uniform":
            return dict.fromkeys(tokens, 1.0)
        df = self.index.lexical.document_frequencies(tokens)
        n = len(self.index)
        # The BM25 (Robertson-Sparck Jones) IDF, kept positive.
        return {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in tokens}
