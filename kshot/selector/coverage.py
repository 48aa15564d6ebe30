"""``coverage``: a set of examples that covers the query's words, not k copies of the best one."""

from __future__ import annotations

import math
import threading
from collections import Counter
from typing import Any

from kshot.index.example_index import ExampleIndex, Mask
from kshot.index.lexical import tokenize
from kshot.selector._math import coverage_greedy
from kshot.selector.base import BaseSelector, Param, register
from kshot.selector.lexical import lexical_fetcher
from kshot.selector.similarity import Fetch, available, vector_fetcher

__all__ = ["CoverageSelector"]


@register("coverage")
class CoverageSelector(BaseSelector):
    """Greedy set-level coverage of the query's tokens over a candidate pool.

    The ``pool`` strategy (``similarity`` or ``bm25``) ranks ``fetch_k`` candidates inside the
    filter, hygiene applied. Each pick then takes the candidate covering the most query-token
    weight that earlier picks left uncovered (ties: the better-ranked candidate); once nothing
    new can be covered the rest follow the pool ranking. Token weights are IDF over the index
    (``weighting="idf"``, so rare words count more than "the") or 1 each (``"uniform"``).
    Tokens are those of :func:`kshot.index.lexical.tokenize`. Scores are the pool's scores.
    """

    description = "greedy coverage of the query's words by the set of examples"
    params = (
        Param(
            "pool",
            str,
            "similarity",
            "the ranking candidates come from",
            choices=("similarity", "bm25"),
        ),
        Param("fetch_k", int, 20, "candidates in the pool (at least k)", 1, 10_000),
        Param("weighting", str, "idf", "query-token weights", choices=("idf", "uniform")),
    )

    def __init__(self, index: ExampleIndex, **params: Any) -> None:
        super().__init__(index, **params)
        self._df_lock = threading.Lock()
        self._df_key: tuple[int, int] | None = None
        self._df: Counter[str] = Counter()

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        fetch: Fetch
        if self.config["pool"] == "bm25":
            fetch = lexical_fetcher(self.index, queries, mask, "bm25")
        else:
            fetch = vector_fetcher(self.index, self.index.encode_queries(queries), mask)
        fetch_k = max(int(self.config["fetch_k"]), k)
        pools = self.ranked_with_refill(queries, fetch_k, fetch, available(self, mask))
        out: list[list[tuple[int, float]]] = []
        for query, pool in zip(queries, pools, strict=True):
            if not pool:
                out.append([])
                continue
            weights = self._weights(set(tokenize(query)))
            covers = [
                set(tokenize(self.index.slot_text(slot))) & weights.keys() for slot, _ in pool
            ]
            relevance = [score for _, score in pool]
            order = coverage_greedy(weights, covers, k, relevance=relevance)
            out.append([pool[j] for j in order.tolist()])
        return out

    def _weights(self, tokens: set[str]) -> dict[str, float]:
        if self.config["weighting"] == "uniform":
            return dict.fromkeys(sorted(tokens), 1.0)
        df, n = self._document_frequencies()
        # The BM25 (Robertson-Sparck Jones) IDF, kept positive.
        return {t: math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in sorted(tokens)}

    def _document_frequencies(self) -> tuple[Counter[str], int]:
        # Every write changes the slot count (add, update) or the live count (delete), so the
        # pair identifies the index state; the counts are rebuilt after a write, on first use.
        key = (self.index.n_slots, len(self.index))
        with self._df_lock:
            if self._df_key != key:
                df: Counter[str] = Counter()
                for slot in self.index.live_slots(None).tolist():
                    df.update(set(tokenize(self.index.slot_text(slot))))
                self._df, self._df_key = df, key
            return self._df, key[1]
