from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kshot.errors import ConfigError
from kshot.prompt import Order, order_examples


def test_similar_last_puts_best_next_to_query() -> None:
    assert order_examples(["best", "second", "third"]) == ["third", "second", "best"]
    assert order_examples(["a", "b"], "similar_last") == ["b", "a"]


def test_similar_first_keeps_ranking() -> None:
    assert order_examples(["a", "b", "c"], Order.SIMILAR_FIRST) == ["a", "b", "c"]


def test_random_is_seeded_and_pure() -> None:
    items = list(range(20))
    a = order_examples(items, "random", seed=1)
    assert a == order_examples(items, "random", seed=1)
    assert a != order_examples(items, "random", seed=2)
    assert sorted(a) == items
    assert items == list(range(20))


def test_unknown_order_lists_choices() -> None:
    with pytest.raises(ConfigError, match="similar_last, similar_first, random"):
        order_examples([1], "best_first")


def test_order_is_a_str_enum() -> None:
    assert Order("random") is Order.RANDOM
    assert Order.SIMILAR_LAST == "similar_last"


@given(st.lists(st.integers()), st.sampled_from(list(Order)), st.integers(0, 2**32))
def test_every_order_is_a_permutation(items: list[int], order: Order, seed: int) -> None:
    assert sorted(order_examples(items, order, seed=seed)) == sorted(items)
