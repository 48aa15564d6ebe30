"""``balanced``: label quotas around any base strategy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kshot.errors import ConfigError, UnknownSelectorError
from kshot.index.filters import LABEL_FIELD, filter_values, normalize_text
from kshot.selector.base import BaseSelector, available_selectors, register, selector_class
from kshot.selector.params import SelectorParams, param
from kshot.selector.view import HasView, IndexView
from kshot.types import Filter, Scored

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

    The base strategy is used through its public ``select_batch`` only, with its own defaults
    and this selector's ``dedupe_threshold``; each of its calls reads the index on its own, so a
    write landing between the pool and an ensured label's search is seen by the latter only.
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

    def _select(
        self, queries: list[str], k: int, filter: Filter | None, exclude: list[str]
    ) -> list[list[Scored]]:
        fetch_k = max(self.params.fetch_k, k)
        pools = self._base.select_batch(queries, fetch_k, filter=filter, exclude=exclude)
        return [
            self._round_robin(self._with_ensured(query, pool, filter, exclude), k)
            for query, pool in zip(queries, pools, strict=True)
        ]

    def _with_ensured(
        self, query: str, pool: list[Scored], filter: Filter | None, exclude: list[str]
    ) -> list[Scored]:
        ensure = self.params.ensure_labels
        if not ensure:
            return pool
        wanted = filter_values(filter)
        allowed_labels = {str(v) for v in wanted.get(LABEL_FIELD, ensure)}
        present = {s.example.label for s in pool}
        combined = list(pool)
        for label in ensure:
            if label in present or label not in allowed_labels:
                continue
            narrowed = {**wanted, LABEL_FIELD: label}
            combined.extend(
                self._base.select_batch([query], 1, filter=narrowed, exclude=exclude)[0]
            )
        # An ensured example may be one already in the pool, or repeat the input of one.
        seen: set[str] = set()
        unique: list[Scored] = []
        for scored in combined:
            text = normalize_text(scored.example.input)
            if text not in seen:
                seen.add(text)
                unique.append(scored)
        return unique

    def _round_robin(self, pool: list[Scored], k: int) -> list[Scored]:
        ensure = set(self.params.ensure_labels)
        groups: dict[str | None, list[int]] = {}
        for position, scored in enumerate(pool):
            groups.setdefault(scored.example.label, []).append(position)
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
        return [pool[position] for position in sorted(picked)]
