"""Order policies: where the chosen examples go relative to the query."""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum
from typing import TypeVar

from kshot.errors import ConfigError

__all__ = ["Order", "order_examples"]

T = TypeVar("T")


class Order(StrEnum):
    """How ranked examples are laid out in the prompt.

    ``similar_last`` (the default) puts the most relevant example right before the query, where
    models attend to it most; ``similar_first`` keeps the ranking order; ``random`` shuffles with a
    seed.
    """

    SIMILAR_LAST = "similar_last"
    SIMILAR_FIRST = "similar_first"
    RANDOM = "random"

    @classmethod
    def parse(cls, value: Order | str) -> Order:
        """Return the policy named ``value``; raise ConfigError listing the choices otherwise."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(o.value for o in cls)
            raise ConfigError(f"unknown order {value!r}; choose one of: {choices}") from None


def order_examples(
    ranked: Sequence[T], order: Order | str = Order.SIMILAR_LAST, *, seed: int = 0
) -> list[T]:
    """Return ``ranked`` (best first) in prompt order under ``order``.

    A pure function: the input is not modified, and ``random`` depends only on ``seed`` and the
    items' positions.
    """
    policy = Order.parse(order)
    if policy is Order.SIMILAR_FIRST:
        return list(ranked)
    if policy is Order.SIMILAR_LAST:
        return list(reversed(ranked))
    items = list(ranked)
    random.Random(seed).shuffle(items)
    return items
