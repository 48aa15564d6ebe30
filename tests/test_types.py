"""One row-to-Example rule: the index, the corpus readers and the LangChain adapter agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from kshot.corpus import read_examples
from kshot.errors import DataError
from kshot.index import HashingEncoder
from kshot.integrations.langchain import KshotExampleSelector
from kshot.types import Example, as_example

ROWS: list[dict[str, Any]] = [
    {"id": " a ", "input": "reset my PIN", "output": "pin", "label": ""},
    {"id": "b", "input": "card not here", "output": "", "label": "card"},
    {"id": 3, "input": 42, "output": None, "label": 7},
]


def _by_id(examples: list[Example]) -> dict[str, tuple[str, str, str | None]]:
    return {e.id: (e.input, e.output, e.label) for e in examples}


EXPECTED = {
    "a": ("reset my PIN", "pin", None),
    "b": ("card not here", "", "card"),
    "3": ("42", "", "7"),
}


def test_index_rows_follow_the_rule() -> None:
    assert _by_id([as_example(row, i) for i, row in enumerate(ROWS)]) == EXPECTED


def test_an_example_with_an_empty_label_has_none() -> None:
    assert as_example(Example("x", label="")).label is None


def test_corpus_rows_follow_the_rule(tmp_path: Path) -> None:
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in ROWS), encoding="utf-8")
    # JSON kept an empty label as "" before: only CSV mapped it to no label.
    assert _by_id(read_examples(jsonl)) == EXPECTED
    delimited = tmp_path / "c.csv"
    with delimited.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "input", "output", "label"])
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in ROWS)
    assert _by_id(read_examples(delimited)) == EXPECTED


def test_langchain_rows_follow_the_rule() -> None:
    selector = KshotExampleSelector.from_examples(ROWS, HashingEncoder(dim=64), k=3)
    assert _by_id(selector.index.get(["a", "b", "3"])) == EXPECTED


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "x"}, r"example 0 has no 'input' field \(it has: text\); every example"),
        ({"input": "  ", "id": "q"}, r"example 0 \(id 'q'\) has an empty 'input' field"),
        ({"input": ["x"]}, r"example 0 field 'input' is a list; expected a string or a number"),
        ({"input": "x", "metadata": 3}, r"'metadata' field that is a int; 'metadata' must be"),
    ],
)
def test_bad_rows_name_the_row_and_the_field(row: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        Example.from_mapping(row)
    assert info.value.field in {"input", "metadata"}


def test_where_and_hint_come_from_the_caller() -> None:
    with pytest.raises(DataError, match=r"^f\.csv: row 2 has no 'text' field .*; pass --x$"):
        Example.from_mapping(
            {"input": "x"}, input_key="text", where="f.csv: row 2", hint="pass --x"
        )
