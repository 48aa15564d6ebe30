"""Filter value validation, shared by the Python API, the CLI and HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from kshot.api import select
from kshot.errors import FilterError
from kshot.index import ExampleIndex, HashingEncoder
from kshot.index.filters import filter_values

ROWS = [
    {"id": f"e{i}", "input": f"text {i}", "label": "ab"[i % 2],
     "metadata": {"dataset": "d1", "n": i, "gold": i % 2 == 0}}
    for i in range(6)
]  # fmt: skip


@pytest.mark.parametrize(
    ("filter", "words"),
    [
        ({"label": 5}, ["'label'", "a string", "number 5"]),
        ({"label": [["a"]]}, ["'label'", "a string", "list ['a']"]),
        ({"label": None}, ["'label'", "a string", "got null"]),
        ({"label": True}, ["'label'", "boolean True"]),
        ({"n": None}, ["'n'", "a string, a number or a boolean", "null"]),
        ({"n": [1, {"x": 1}]}, ["'n'", "object"]),
        ({"n": float("nan")}, ["'n'", "NaN"]),
    ],
)
def test_wrong_value_types_name_the_field_and_the_accepted_types(
    filter: dict[str, Any], words: list[str]
) -> None:
    with pytest.raises(FilterError) as caught:
        filter_values(filter)
    for word in words:
        assert word in str(caught.value)


def test_good_values_pass() -> None:
    assert filter_values({"label": ["b", "a"], "n": 1, "gold": False, "x": 1.5}) == {
        "label": ["a", "b"], "n": [1], "gold": [False], "x": [1.5]
    }  # fmt: skip


def test_a_value_of_a_kind_the_field_never_holds_is_refused() -> None:
    index = ExampleIndex.build(ROWS, HashingEncoder(32))
    with pytest.raises(FilterError, match=r"'dataset'.*True is a boolean.*only string"):
        select(index, "text", 3, filter={"dataset": True})
    with pytest.raises(FilterError, match=r"'n'.*'3' is a string.*only number"):
        select(index, "text", 3, filter={"n": "3"})
    # The right kind that matches nothing is a legitimate empty answer.
    assert select(index, "text", 3, filter={"dataset": "d2"}) == []
    assert select(index, "text", 3, filter={"n": 99}) == []
    assert len(select(index, "text", 3, filter={"gold": True, "n": [0, 2]})) == 2
