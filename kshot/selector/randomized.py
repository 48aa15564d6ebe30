"""``random``: a seeded uniform sample, the baseline every benchmark needs."""

from __future__ import annotations

import hashlib

import numpy as np

from kshot.index.example_index import Mask
from kshot.selector.base import BaseSelector, Param, register

__all__ = ["RandomSelector"]


@register("random")
class RandomSelector(BaseSelector):
    """k examples drawn uniformly without replacement.

    The draw depends only on ``seed`` and the query text, so a batch equals one-by-one calls and
    reruns give the same examples. Every score is 0.
    """

    description = "uniform random sample (seeded per query)"
    params = (Param("seed", int, 0, "random seed", 0, 2**32 - 1),)

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        pool = self.index.live_slots(mask)
        picks = []
        for query in queries:
            digest = hashlib.blake2b(query.encode("utf-8"), digest_size=8).digest()
            rng = np.random.default_rng(
                [int(self.config["seed"]), int.from_bytes(digest, "little")]
            )
            want = min(len(pool), k + len(self.banned_slots(query)) + 8)
            while True:
                drawn = rng.choice(len(pool), size=want, replace=False)
                kept = self.clean(query, ((int(pool[i]), 0.0) for i in drawn), k)
                if len(kept) == k or want == len(pool):
                    break
                want = min(len(pool), want * 4)
            picks.append(kept)
        return picks
