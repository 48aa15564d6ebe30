"""``balanced``: label quotas around any base strategy."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from kshot.errors import ConfigError, UnknownSelectorError
from kshot.index.example_index import ExampleIndex, Mask
from kshot.selector.base import (
    BaseSelector,
    Param,
    available_selectors,
    register,
    selector_class,
)

__all__ = ["BalancedSelector"]


@register("balanced")
class BalancedSelector(BaseSelector):
    """Cover as many labels as the candidates allow, best candidates of each label first.

    The base strategy ranks ``fetch_k`` candidates; picks then go round-robin over labels in the
    order of each label's best candidate, so k picks span min(k, labels among candidates) labels.
    Labels in ``ensure_labels`` are searched for directly when the pool lacks them. The result is
    ranked by the base strategy's score.
    """

    description = "round-robin over labels around a base strategy"
    params = (
        Param("base", str, "similarity", "the strategy that ranks candidates"),
        Param("fetch_k", int, 50, "candidates the base strategy ranks (at least k)", 1, 10_000),
        Param("ensure_labels", list, [], "labels to include whenever an example has them"),
    )

    def __init__(self, index: ExampleIndex, **params: Any) -> None:
        super().__init__(index, **params)
        base = self.config["base"]
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
        self._base = base_class(index)

    def _pick(self, queries: list[str], k: int, mask: Mask | None) -> list[list[tuple[int, float]]]:
        fetch_k = max(int(self.config["fetch_k"]), k)
        pools = self._base._pick(queries, fetch_k, mask)
        out = []
        for query, pool in zip(queries, pools, strict=True):
            pool = self._with_ensured(query, pool, mask)
            out.append(self._round_robin(pool, k))
        return out

    def _with_ensured(
        self, query: str, pool: list[tuple[int, float]], mask: Mask | None
    ) -> list[tuple[int, float]]:
        ensure = [str(label) for label in self.config["ensure_labels"]]
        if not ensure:
            return pool
        present = {int(c) for c in self.index.slot_labels([s for s, _ in pool])}
        extra: list[tuple[int, float]] = []
        for label in ensure:
            code = self.index.label_code(label)
            if code is None or code in present:
                continue
            label_mask = self.index.resolve({"label": label})
            if label_mask is not None and mask is not None:
                label_mask &= mask
            found = self._base._pick([query], 1, label_mask)[0]
            extra.extend(found)
        taken = {s for s, _ in pool}
        combined = pool + [(s, score) for s, score in extra if s not in taken]
        # An ensured example may repeat the input of one already in the pool.
        return self.clean(query, combined, len(combined))

    def _round_robin(self, pool: list[tuple[int, float]], k: int) -> list[tuple[int, float]]:
        ensure = {self.index.label_code(str(x)) for x in self.config["ensure_labels"]}
        groups: OrderedDict[int, list[tuple[int, float]]] = OrderedDict()
        codes = self.index.slot_labels([s for s, _ in pool])
        for (slot, score), code in zip(pool, codes, strict=True):
            groups.setdefault(int(code), []).append((slot, score))
        # Ensured labels go first in the rotation so they survive a small k.
        order = sorted(groups, key=lambda c: (c not in ensure, list(groups).index(c)))
        picked: list[tuple[int, float]] = []
        depth = 0
        while len(picked) < k and any(depth < len(groups[c]) for c in order):
            for code in order:
                if depth < len(groups[code]) and len(picked) < k:
                    picked.append(groups[code][depth])
            depth += 1
        rank = {slot: i for i, (slot, _) in enumerate(pool)}
        return sorted(picked, key=lambda item: rank[item[0]])
