"""The index's memory layout: compact numpy columns, vectors held once (by FAISS), texts and ids
in the store only, a temporary store on disk, given unit vectors not copied."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

import kshot.index.columns as columns_module
import kshot.index.slots as slots_module
from kshot.index.columns import Codes, Columns
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex, _checked_embeddings
from kshot.index.store import ExampleStore
from kshot.index.vectors import VectorIndex, exact_search
from kshot.selector import build_selector
from kshot.types import Example

DIM = 16


def _unit(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _rows(n: int) -> list[dict[str, object]]:
    return [
        {
            "id": f"r{i}",
            "input": f"text number {i % 50} here",
            "label": f"l{i % 3}",
            "metadata": {"lang": ["en", "de"][i % 2], "n": i % 7},
        }
        for i in range(n)
    ]


def test_columns_hold_no_python_object_per_example() -> None:
    n = 3000
    index = ExampleIndex.build(_rows(n), HashingEncoder(DIM), embeddings=_unit(n))
    cols = index._columns
    for name, value in vars(cols).items():
        if isinstance(value, (list, dict, set)):
            # Label names and per-field bookkeeping are per distinct label or field, not per row.
            assert len(value) < 50, f"Columns.{name} grows with the corpus ({len(value)})"
    assert not hasattr(cols, "vectors"), "the FAISS index is the one in-memory copy of the vectors"
    # 8 + 1 + 4 bytes of rows/alive/labels, 20 per code column (the text and 2 fields), doubling.
    assert cols.nbytes < 2 * n * (13 + 3 * 20) + 3 * 20_000


def test_slot_vectors_come_from_the_vector_index_after_writes_and_reload(tmp_path: Path) -> None:
    n = 2000
    vectors = _unit(n)
    index = ExampleIndex.build(
        _rows(n), HashingEncoder(DIM), embeddings=vectors, factory="IVF8,Flat", path=tmp_path / "i"
    )
    index.delete(["r3", "r10"])
    index.update("r5", input="a new text")
    with index.reading():
        # a tombstone (slot 3 held r3) reads as zeros, never raises
        assert index.view.slot_vectors([0, 3]).any(axis=1).tolist() == [True, False]
    new_vector = HashingEncoder(DIM).encode(["a new text"])[0]
    index.close()
    loaded = ExampleIndex.load(tmp_path / "i", HashingEncoder(DIM))
    view = loaded.view
    with loaded.reading():
        slots = view.live_slots(None)
        got = view.slot_vectors(slots)
        rows = view.slot_rows(slots)
    stored = loaded._store.embeddings(rows.tolist())
    np.testing.assert_array_equal(got, stored)
    ids = [ex.id for ex in loaded.get([f"r{i}" for i in (0, 5, 7)])]
    assert ids == ["r0", "r5", "r7"]
    with loaded.reading():
        (slot,) = loaded._slots_of_ids(["r5"])
        np.testing.assert_allclose(view.slot_vectors([slot])[0], new_vector, atol=1e-6)
    loaded.close()


def test_vector_index_reconstruct_by_row() -> None:
    v = _unit(500)
    rows = np.arange(100, 600, dtype=np.int64)
    for factory in ("Flat", "IVF4,Flat"):
        index = VectorIndex.create(DIM, factory)
        index.train(v)
        index.add(rows, v)
        index.remove(np.array([100, 150], np.int64))
        np.testing.assert_array_equal(index.reconstruct(np.array([599, 101])), v[[499, 1]])
        assert index.reconstruct(np.array([], np.int64)).shape == (0, DIM)


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_masked_and_batched_search_over_the_vector_index_is_exact(
    factory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 1500
    vectors = _unit(n, seed=1)
    index = ExampleIndex.build(_rows(n), HashingEncoder(DIM), embeddings=vectors, factory=factory)
    index._vectors.nprobe = 4  # IVF4 probing every list: exact too
    index.delete([f"r{i}" for i in range(0, n, 7)])
    queries = _unit(9, seed=2)
    view = index.view
    for limit in (0, 10**9):  # FAISS's own array (or search) vs the reconstructed allowed set
        monkeypatch.setattr(slots_module, "EXACT_FILTER_LIMIT", limit)
        for filter in (None, {"lang": "de"}, {"label": ["l1", "l2"], "n": [1, 2, 3]}):
            with index.reading():
                mask = view.resolve(filter)
                scores, slots = view.vector_search(queries, 5, mask)
                allowed = view.live_slots(mask)
            want_scores, positions = exact_search(queries, vectors[allowed], 5)
            np.testing.assert_array_equal(slots, allowed[positions])
            np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_query_text_match_is_checked_against_the_stored_texts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every text hashed to one code: the code narrows the candidates, the store decides.
    monkeypatch.setattr(columns_module, "text_code", lambda text: 7)
    monkeypatch.setattr(slots_module, "text_code", lambda text: 7)
    texts = ["My card hasn't arrived.", "card arrived", "my card hasn't  ARRIVED", "other"]
    index = ExampleIndex.build([{"input": t} for t in texts], HashingEncoder(DIM))
    with index.reading():
        assert index.view.slots_matching_text("my card hasn't arrived") == [0, 2]
        assert index.view.slots_matching_text("nothing like it") == []
    picked = build_selector(index, "similarity").select("my card hasn't arrived", 4)
    # (the pairwise check between candidates takes the forced code as is: one survives)
    assert picked and {s.example.input for s in picked} <= {"card arrived", "other"}


def test_codes_find_every_slot_of_a_code_across_folds() -> None:
    rng = np.random.default_rng(0)
    codes = Codes()
    held = np.empty(0, np.int64)
    for size in (10, 5000, 3, 20_000, 700, 1):
        batch = rng.integers(0, 40, size).astype(np.int64)
        codes.append(batch)
        held = np.concatenate([held, batch])
        for code in (0, 17, 39, 99):
            np.testing.assert_array_equal(codes.slots_of(code), np.flatnonzero(held == code))


def test_metadata_field_seen_late_and_filters_by_kind() -> None:
    index = ExampleIndex.build(
        [{"input": "a"}, {"input": "b"}, {"input": "c", "metadata": {"tag": "x", "k": 1}}],
        HashingEncoder(DIM),
    )
    index.add([{"input": "d", "metadata": {"tag": "x"}}, {"input": "e", "metadata": {"k": True}}])
    view = index.view
    with index.reading():
        assert view.live_slots(view.resolve({"tag": "x"})).tolist() == [2, 3]
        assert view.live_slots(view.resolve({"k": 1})).tolist() == [2]
        assert view.live_slots(view.resolve({"k": True})).tolist() == [4]
        assert view.live_slots(view.resolve({"tag": "y"})).tolist() == []
    assert index.fields() == ["label", "k", "tag"]
    assert Columns(DIM).fields() == ["label"]


def test_temporary_store_lives_in_a_file_that_close_removes() -> None:
    store = ExampleStore(None, dim=DIM)
    ((_, _, file),) = store._conn.execute("PRAGMA database_list").fetchall()
    assert file and Path(file).is_file(), "the pages of an unsaved index stay on disk"
    store.insert([Example(input="x", id="a")], _unit(1))
    store.close()
    assert not Path(file).exists()
    with pytest.raises(sqlite3.ProgrammingError):
        store._conn.execute("SELECT 1")


def test_given_unit_vectors_are_not_copied_and_others_are_normalised() -> None:
    items = [Example(input=f"t{i}") for i in range(300)]
    unit = _unit(300)
    same = _checked_embeddings(unit, items, DIM, "enc", lambda texts: unit)
    assert np.shares_memory(same, unit)
    scaled = unit * np.linspace(0.5, 3, 300, dtype=np.float32)[:, None]
    normalised = _checked_embeddings(scaled, items, DIM, "enc", lambda texts: unit)
    assert not np.shares_memory(normalised, scaled)
    np.testing.assert_allclose(normalised, unit, atol=1e-6)


def test_store_reads_batches_without_blobs_and_embeddings_by_row() -> None:
    store = ExampleStore(None, dim=DIM)
    v = _unit(30)
    rows, _ = store.insert([Example(input=f"t{i}", id=f"i{i}") for i in range(30)], v)
    (batch,) = store.iter_batches(embeddings=False)
    assert batch.embeddings.shape == (0, DIM) and batch.inputs[3] == "t3"
    np.testing.assert_array_equal(store.embeddings([int(rows[7]), int(rows[2])]), v[[7, 2]])
    got_rows, everything = store.all_embeddings()
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_array_equal(everything, v)
    assert store.rows_of(["i4", "nope", "i0"]) == [int(rows[4]), None, int(rows[0])]
    assert store.inputs([int(rows[9])]) == ["t9"]
    store.close()
