"""The bulk ingest path: columns instead of one Example per row, and the build's faster kernels.

Each fast path is checked against the rule it replaces: rows taken as columns against
``as_example`` row by row, a whole index built through the fast path against one built row by
row (store, columns, vectors, filters, lexical results, save and load), the build's held-out
neighbours against ``exact_search``, the ASCII text normalisation against the general one.
"""

from __future__ import annotations

import sqlite3
import threading
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kshot.errors import DataError
from kshot.index import example_index
from kshot.index.batch import ExampleBatch, batch_of_rows
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.filters import _PUNCTUATION_TO_SPACE, normalize_text
from kshot.index.vector_build import held_out_neighbours
from kshot.index.vectors import exact_search
from kshot.selector import build_selector
from kshot.types import Example, as_example

# -- rows as columns ------------------------------------------------------------------------------


def per_row(rows: list[Any]) -> ExampleBatch:
    """The batch the row-by-row rule gives."""
    return ExampleBatch.of([as_example(row, i) for i, row in enumerate(rows)])


def columns(batch: ExampleBatch) -> tuple[list[Any], ...]:
    return tuple(
        list(c) for c in (batch.ids, batch.inputs, batch.outputs, batch.labels, batch.metadata)
    )


def outcome(rows: list[Any]) -> tuple[Any, ...]:
    """What converting ``rows`` gives through the batch path, or the error it raises."""
    try:
        return columns(batch_of_rows(rows))
    except DataError as exc:
        return ("error", str(exc))


def outcome_per_row(rows: list[Any]) -> tuple[Any, ...]:
    try:
        return columns(per_row(rows))
    except DataError as exc:
        return ("error", str(exc))


_field = st.one_of(
    st.none(), st.sampled_from(["", " ", "a", " b ", "x y"]), st.integers(-3, 3), st.booleans()
)
_metadata = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["k", "lang"]), st.integers(0, 2)), st.just([1])
)


@st.composite
def _dict_row(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, values in (
        ("input", _field),
        ("output", _field),
        ("label", _field),
        ("id", _field),
        ("metadata", _metadata),
    ):
        if draw(st.booleans()) or (key == "input" and draw(st.integers(0, 9))):
            row[key] = draw(values)
    return row


@settings(max_examples=300, deadline=None)
@given(st.lists(_dict_row(), max_size=6))
def test_dict_rows_convert_as_row_by_row(rows: list[dict[str, Any]]) -> None:
    assert outcome(rows) == outcome_per_row(rows)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            Example,
            input=st.sampled_from(["a", " b ", "", "  "]),
            output=st.sampled_from(["", "o"]),
            label=st.sampled_from([None, "", "l"]),
            metadata=st.sampled_from([{}, {"k": 1}]),
            id=st.sampled_from(["", " i ", "j"]),
        ),
        max_size=6,
    )
)
def test_example_rows_convert_as_row_by_row(rows: list[Example]) -> None:
    assert outcome(rows) == outcome_per_row(rows)


def test_the_fast_path_takes_common_rows_and_converts_like_from_mapping() -> None:
    rows = [
        {"input": "first", "id": " a ", "label": "", "metadata": {"k": 1}},
        {"input": "second", "output": None, "label": "x"},
    ]
    batch = batch_of_rows(rows)
    assert columns(batch) == (
        ["a", ""],
        ["first", "second"],
        ["", ""],
        [None, "x"],
        [{"k": 1}, {}],
    )


def test_rows_outside_the_fast_path_get_the_row_by_row_rule_and_errors() -> None:
    assert list(batch_of_rows([{"input": 5, "label": 7}]).inputs) == ["5"]
    assert list(batch_of_rows([MappingProxyType({"input": "m"})]).inputs) == ["m"]
    assert list(batch_of_rows(iter([Example("e"), {"input": "d"}])).inputs) == ["e", "d"]
    with pytest.raises(DataError, match=r"example 2 has an empty 'input' field"):
        batch_of_rows([{"input": "a"}, {"input": "b"}, {"input": " "}])
    with pytest.raises(DataError, match=r"example 1 has no 'input' field"):
        batch_of_rows([{"input": "a"}, {"text": "b"}])


# -- a whole index, fast path against row by row ---------------------------------------------------


def _corpus(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(3)
    words = ["card", "arrived", "refund", "pin", "blocked", "top-up", "fee", "Card!"]
    rows: list[dict[str, Any]] = []
    for i in range(n):
        text = " ".join(rng.choice(words, size=int(rng.integers(2, 6))))
        row: dict[str, Any] = {"input": f"{text} {i % 7}", "output": f"answer {i}"}
        if i % 3:  # a third without a label, a sixth with an empty one (no label either)
            row["label"] = "card" if i % 3 == 1 else ("refund" if i % 2 else "")
        if i % 4:
            row["id"] = f" id{i} "
        if i % 5:
            row["metadata"] = {"lang": ["en", "de"][i % 2], "n": i % 3}
        rows.append(row)
    return rows


def _store_rows(index: ExampleIndex) -> list[tuple[Any, ...]]:
    assert index.path is not None
    with sqlite3.connect(index.path / "examples.db") as conn:
        return conn.execute("SELECT * FROM examples ORDER BY row").fetchall()


def _answers(index: ExampleIndex, queries: list[str]) -> list[list[tuple[str, float]]]:
    out = []
    for name, filter in (
        ("similarity", None),
        ("similarity", {"label": "card"}),
        ("similarity", {"lang": "de", "n": [1, 2]}),
        ("jaccard", None),
        ("bm25", {"lang": "en"}),
    ):
        selector = build_selector(index, name)
        for scored in selector.select_batch(queries, 5, filter=filter):
            out.append([(s.example.id, round(s.score, 6)) for s in scored])
    return out


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_fast_path_builds_the_index_the_row_by_row_path_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str
) -> None:
    # Small chunks, so that the corpus spans several insert transactions.
    monkeypatch.setattr(example_index, "_INSERT_CHUNK", 37)
    rows = _corpus(300)
    encoder = HashingEncoder(dim=32)
    vectors = encoder.encode([r["input"] for r in rows])
    queries = ["card arrived", "refund fee 3", "blocked pin"]
    built = []
    # Plain dicts take the columnar path; read-only mapping views of the same rows do not.
    for name, corpus in (("fast", rows), ("slow", [MappingProxyType(r) for r in rows])):
        index = ExampleIndex.build(
            corpus, encoder, embeddings=vectors, factory=factory, path=tmp_path / name
        )
        built.append(index)
    fast, slow = built
    assert _store_rows(fast) == _store_rows(slow)
    a, b = fast._columns, slow._columns
    assert np.array_equal(a.rows[: a.n], b.rows[: b.n])
    assert np.array_equal(a.text_codes, b.text_codes)
    assert np.array_equal(a.label_codes[: a.n], b.label_codes[: b.n])
    assert a.label_names == b.label_names and a.fields() == b.fields() == ["label", "lang", "n"]
    assert fast.labels() == slow.labels() == {"card": 100, "refund": 50}
    assert [e.to_dict() for e in fast] == [e.to_dict() for e in slow]
    assert _answers(fast, queries) == _answers(slow, queries)
    # Adding through both paths, then a reload of each, keeps them equal.
    more = [{"input": "late card row", "id": "late", "label": "card", "metadata": {"lang": "en"}}]
    fast.add(more)
    slow.add([MappingProxyType(more[0])])
    for index in built:
        index.close()
    reloaded = [ExampleIndex.load(tmp_path / name, encoder) for name in ("fast", "slow")]
    assert _store_rows(reloaded[0]) == _store_rows(reloaded[1])
    assert _answers(reloaded[0], queries) == _answers(reloaded[1], queries)
    for index in reloaded:
        index.close()


def test_bad_metadata_is_named_by_its_place_in_the_corpus(
    monkeypatch: pytest.MonkeyPatch, hashing_encoder: HashingEncoder
) -> None:
    monkeypatch.setattr(example_index, "_INSERT_CHUNK", 4)
    rows: list[Mapping[str, Any]] = [{"input": f"row {i}"} for i in range(10)]
    rows[9] = {"input": "bad", "id": "b9", "metadata": {"when": object()}}
    with pytest.raises(DataError, match=r"example 9 \(id 'b9'\): metadata must hold JSON"):
        ExampleIndex.build(rows, hashing_encoder)


# -- the build's recall measurement ---------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    m=st.integers(1, 12),
    k=st.integers(1, 15),
    seed=st.integers(0, 1000),
    duplicates=st.booleans(),
)
def test_held_out_neighbours_equal_exact_search(
    n: int, m: int, k: int, seed: int, duplicates: bool
) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    if duplicates:  # exact ties, which must go to the lower position
        vectors = vectors[rng.integers(0, max(1, n // 4), n)]
    hidden = rng.choice(n, size=min(n, m), replace=False)
    queries = vectors[hidden]
    valid = np.ones(n, np.bool_)
    valid[hidden] = False
    _, expected = exact_search(queries, vectors, k, valid=valid)
    assert np.array_equal(held_out_neighbours(queries, vectors, k, hidden), expected)


def test_held_out_neighbours_work_block_by_block(monkeypatch: pytest.MonkeyPatch) -> None:
    from kshot.index import vector_build

    # Blocks of 1,024 vectors: the corpus spans several, and most candidates are pruned.
    monkeypatch.setattr(vector_build, "SCORE_BLOCK_FLOATS", 1)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5_000, 16)).astype(np.float32)
    vectors[4_000:] = vectors[:1_000]  # ties across blocks
    hidden = rng.choice(5_000, size=30, replace=False)
    valid = np.ones(5_000, np.bool_)
    valid[hidden] = False
    _, expected = exact_search(vectors[hidden], vectors, 10, valid=valid)
    assert np.array_equal(held_out_neighbours(vectors[hidden], vectors, 10, hidden), expected)


# -- text codes -----------------------------------------------------------------------------------


def _general(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCTUATION_TO_SPACE)
    return " ".join(folded.split())


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_texts_normalise_as_the_general_rule_says(text: str) -> None:
    assert normalize_text(text) == _general(text)


def test_every_ascii_character_normalises_as_the_general_rule_says() -> None:
    for code in range(128):
        text = f"A{chr(code)}b {chr(code)}"
        assert normalize_text(text) == _general(text), code


def test_the_vector_build_runs_on_its_own_thread_with_the_callers_faiss_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int]] = []
    real = example_index.build_vectors

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((threading.get_ident(), faiss.omp_get_max_threads()))
        return real(*args, **kwargs)

    monkeypatch.setattr(example_index, "build_vectors", spy)
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(3)
    try:
        rows = [{"input": f"text number {i}", "label": str(i % 3)} for i in range(300)]
        index = ExampleIndex.build(rows, HashingEncoder(32), factory="IVF4,Flat")
    finally:
        faiss.omp_set_num_threads(previous)
    assert seen == [(seen[0][0], 3)]
    assert seen[0][0] != threading.get_ident()
    assert len(index) == 300
    assert index.info()["factory"] == "IVF4,Flat"
