"""``balanced``: label quotas around any base strategy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kshot._ranking import check_k
from kshot.errors import ConfigError, UnknownSelectorError
from kshot.index.filters import LABEL_FIELD
from kshot.selector.base import (
    BaseSelector,
    Ranking,
    available_selectors,
    register,
    selector_class,
)
from kshot.selector.params import SelectorParams, param
from kshot.selector.view import HasView, IndexView
from kshot.types import Mask

__all__ = ["BalancedParams", "BalancedSelector"]


@dataclass(frozen=True)
class BalancedParams(SelectorParams):
    """Parameters of ``balanced``; ``dedupe_threshold`` is handed to the base strategy."""

    base: str = param("similarity", "the strategy that ranks candidates")
    fetch_k: int = param(
        50, "candidates the base strategy ranks (at least k)", minimum=1, maximum=10_000
    )
    ensure_labels: tuple[str, ...] = param((), "labels to include whenever an example has them")


@register("balanced")
class BalancedSelector(BaseSelector):
    """Cover as many labels as the candidates allow, best candidates of each label first.

    The base strategy ranks ``fetch_k`` candidates; picks then go round-robin over labels in the
    order of each label's best candidate, so k picks span min(k, labels among candidates) labels.
    Labels in ``ensure_labels`` are searched for directly (the base strategy with a label filter)
    when the pool lacks them. The result is ranked by the base strategy's score.

    The base strategy is used through its public slot-level ``rank_batch`` only, with its own
    defaults and this selector's ``dedupe_threshold``, inside the one read of the index that
    ``select_batch`` holds; so the pool and the ensured labels' searches see the same state, and
    only the k examples returned are read from the store (not the ``fetch_k`` candidates).
    """

    description = "round-robin over labels around a base strategy"
    Params = BalancedParams
    params: BalancedParams

    def __init__(
        self, index: IndexView | HasView, params: SelectorParams | Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(index, params)
        base = self.params.base
        if base == self.name:
            raise ConfigError(
                f"selector {self.name!r} parameter 'base' cannot be {self.name!r} itself; "
                "choose another registered selector"
            )
        try:
            base_class = selector_class(base)
        except UnknownSelectorError as exc:
            known = ", ".join(n for n in available_selectors() if n != self.name)
            raise UnknownSelectorError(
                f"selector {self.name!r} parameter 'base' is {base!r}, which is not a registered "
                f"selector; valid values: {known}"
            ) from exc
        self._base = base_class(self.index, {"dedupe_threshold": self.params.dedupe_threshold})

    def rank_batch(self, queries: Sequence[str], k: int, mask: Mask | None) -> list[Ranking]:
        """Rank the base strategy's ``fetch_k`` candidates, then pick round-robin over labels."""
        k = check_k(k)
        queries = list(queries)
        pools = self._base.rank_batch(queries, max(self.params.fetch_k, k), mask)
        pools = self._with_ensured(queries, pools, mask)
        return [self._round_robin(pool, k) for pool in pools]

    def _with_ensured(
        self, queries: list[str], pools: list[Ranking], mask: Mask | None
    ) -> list[Ranking]:
        """Add each query's best example of every ensured label its pool lacks."""
        if not self.params.ensure_labels:
            return pools
        extra: list[list[tuple[int, float]]] = [[] for _ in queries]
        for label in self.params.ensure_labels:
            lacking = [i for i, pool in enumerate(pools) if label not in self._labels(pool)]
            narrowed = self.index.resolve({LABEL_FIELD: label})
            if mask is not None and narrowed is not None:
                narrowed = narrowed & mask
            # A filter that leaves out this label leaves nothing to search for.
            if not lacking or narrowed is None or not narrowed.any():
                continue
            # One query at a time: a strategy that widens its fetch for the whole batch (hybrid's
            # fusion) may rank a query differently in company, and the pool of one query must not
            # depend on which others lack the label.
            for i in lacking:
                (found,) = self._base.rank_batch([queries[i]], 1, narrowed)
                extra[i].extend(zip(found.slots, found.scores, strict=True))
        return [self._unique(pool, more) for pool, more in zip(pools, extra, strict=True)]

    def _unique(self, pool: Ranking, extra: list[tuple[int, float]]) -> Ranking:
        # An ensured example may be one already in the pool, or repeat the input of one.
        seen = {self.index.slot_text_code(slot) for slot in pool.slots}
        kept = list(zip(pool.slots, pool.scores, strict=True))
        for slot, score in extra:
            text = self.index.slot_text_code(slot)
            if text not in seen:
                seen.add(text)
                kept.append((slot, score))
        return Ranking.of(kept)

    def _labels(self, pool: Ranking) -> list[str | None]:
        return self.index.slot_labels(pool.slots)

    def _round_robin(self, pool: Ranking, k: int) -> Ranking:
        ensure = set(self.params.ensure_labels)
        groups: dict[str | None, list[int]] = {}
        for position, label in enumerate(self._labels(pool)):
            groups.setdefault(label, []).append(position)
        # Ensured labels go first in the rotation so they survive a small k; otherwise labels
        # rotate in the order of their best candidate (dicts keep insertion order).
        order = sorted(groups, key=lambda label: label not in ensure)
        picked: list[int] = []
        depth = 0
        while len(picked) < k and any(depth < len(groups[label]) for label in order):
            for label in order:
                if depth < len(groups[label]) and len(picked) < k:
                    picked.append(groups[label][depth])
            depth += 1
        return Ranking.of([(pool.slots[p], pool.scores[p]) for p in sorted(picked)])
