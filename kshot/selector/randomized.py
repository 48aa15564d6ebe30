"""``random``: a seeded uniform sample, the baseline every benchmark needs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from kshot.selector.base import BaseSelector, register
from kshot.selector.params import SelectorParams, param
from kshot.types import Mask

__all__ = ["RandomParams", "RandomSelector"]


@dataclass(frozen=True)
class RandomParams(SelectorParams):
    """Parameters of ``random``."""

    seed: int = param(0, "random seed", minimum=0, maximum=2**32 - 1)


@register("random")
class RandomSelector(BaseSelector):
    """k examples drawn uniformly without replacement.

    The draw depends only on ``seed`` and the query text, so a batch equals one-by-one calls and
    reruns give the same examples. Every score is 0.
    """

    description = "uniform random sample (seeded per query)"
    Params = RandomParams
    params: RandomParams

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        pool = self.index.live_slots(mask)
        vectors = self.dedupe_vectors(queries)
        picks = []
        for position, query in enumerate(queries):
            digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8).digest()
            rng = np.random.default_rng([self.params.seed, int.from_bytes(digest, "little")])
            want = min(len(pool), k + len(self.banned_slots(query)) + 8)
            vector = None if vectors is None else vectors[position]
            while True:
                drawn = rng.choice(len(pool), size=want, replace=False)
                kept = self.clean(query, ((int(pool[i]), 0.0) for i in drawn), k, vector)
                if len(kept) == k or want == len(pool):
                    break
                want = min(len(pool), want * 4)
            picks.append(kept)
        return picks
