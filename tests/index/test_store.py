from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from kshot.errors import DataError, IndexFormatError
from kshot.index.store import ExampleStore
from kshot.types import Example

DIM = 4


def vecs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.normal(size=(n, DIM)).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def ex(i: int, **kw: object) -> Example:
    fields: dict[str, object] = {"input": f"text {i}", "output": f"out {i}", "label": f"l{i % 2}"}
    fields.update(kw)
    return Example(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ExampleStore:
    path = None if request.param == "memory" else tmp_path / "examples.db"
    s = ExampleStore(path, dim=DIM)
    yield s
    s.close()


def test_insert_assigns_rows_and_ids(store: ExampleStore) -> None:
    rows, ids = store.insert([ex(0, id="a"), ex(1), ex(2)], vecs(3))
    assert rows.tolist() == [1, 2, 3]
    assert ids == ["a", "ex2", "ex3"]
    rows2, ids2 = store.insert([ex(3)], vecs(1))
    assert rows2.tolist() == [4]
    assert ids2 == ["ex4"]
    assert len(store) == 4
    assert store.rows_of(["a", "ex3", "nope"]) == [1, 3, None]


def test_fetch_round_trips_every_field(store: ExampleStore) -> None:
    original = Example(
        input="héllo ✓", output="o", label=None, metadata={"a": [1, 2], "b": {"c": None}}, id="x"
    )
    rows, _ = store.insert([original, ex(1, id="y")], vecs(2))
    assert store.fetch([int(rows[1]), int(rows[0])]) == [ex(1, id="y"), original]
    assert store.fetch([]) == []


def test_fetch_many_rows_beyond_the_parameter_limit(store: ExampleStore) -> None:
    n = 2000
    rows, _ = store.insert([ex(i) for i in range(n)], vecs(n))
    got = store.fetch(rows[::-1].tolist())
    assert [e.input for e in got] == [f"text {i}" for i in reversed(range(n))]


def test_iter_batches_returns_embeddings_in_row_order(store: ExampleStore) -> None:
    v = vecs(7)
    store.insert([ex(i) for i in range(7)], v)
    batches = list(store.iter_batches(batch_size=3))
    assert [len(b.ids) for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.vstack([b.embeddings for b in batches]), v)
    assert np.concatenate([b.rows for b in batches]).tolist() == list(range(1, 8))
    assert batches[0].labels[:2] == ["l0", "l1"]


def test_every_write_bumps_the_generation(store: ExampleStore) -> None:
    assert store.generation == 0
    rows, _ = store.insert([ex(0), ex(1)], vecs(2))
    assert store.generation == 1
    store.replace(int(rows[0]), ex(9, id="ex1"), vecs(1)[0])
    assert store.generation == 2
    store.delete([int(rows[1])])
    assert store.generation == 3


def test_replace_keeps_the_id_under_a_new_row(store: ExampleStore) -> None:
    rows, _ = store.insert([ex(0, id="k")], vecs(1))
    new_row = store.replace(int(rows[0]), ex(5, id="k"), vecs(1, seed=3)[0])
    assert new_row > int(rows[0])
    assert store.rows_of(["k"]) == [new_row]
    assert store.fetch([new_row])[0].input == "text 5"
    (batch,) = store.iter_batches()
    np.testing.assert_array_equal(batch.embeddings[0], vecs(1, seed=3)[0])


def test_rows_are_never_reused_after_delete(store: ExampleStore) -> None:
    rows, _ = store.insert([ex(0), ex(1)], vecs(2))
    store.delete([int(rows[1])])
    rows2, ids2 = store.insert([ex(2)], vecs(1))
    assert rows2.tolist() == [3]
    assert ids2 == ["ex3"]


def test_duplicate_id_in_a_batch_is_refused_and_nothing_is_written(store: ExampleStore) -> None:
    store.insert([ex(0, id="a")], vecs(1))
    generation = store.generation
    with pytest.raises(DataError, match=r"duplicate example id 'b' in the batch"):
        store.insert([ex(1, id="b"), ex(2, id="b")], vecs(2))
    assert len(store) == 1
    assert store.generation == generation


def test_existing_id_is_refused_and_nothing_is_written(store: ExampleStore) -> None:
    store.insert([ex(0, id="a")], vecs(1))
    with pytest.raises(DataError, match=r"example id 'a' already exists.*use update"):
        store.insert([ex(1, id="new"), ex(2, id="a")], vecs(2))
    assert len(store) == 1
    assert store.rows_of(["new"]) == [None]
    # The store still works after the rolled-back transaction.
    store.insert([ex(3, id="new")], vecs(1))
    assert len(store) == 2


def test_metadata_must_be_json(store: ExampleStore) -> None:
    with pytest.raises(DataError, match=r"example 1 \(id 'bad'\): metadata must hold JSON"):
        store.insert([ex(0), ex(1, id="bad", metadata={"x": object()})], vecs(2))
    assert len(store) == 0


def test_failed_replace_rolls_back(store: ExampleStore) -> None:
    rows, _ = store.insert([ex(0, id="a")], vecs(1))
    with pytest.raises(DataError, match="metadata must hold JSON"):
        store.replace(int(rows[0]), ex(0, id="a", metadata={"x": {1, 2}}), vecs(1)[0])
    assert store.rows_of(["a"]) == [int(rows[0])]
    assert store.fetch([int(rows[0])])[0].input == "text 0"


def test_embedding_shape_is_checked(store: ExampleStore) -> None:
    with pytest.raises(DataError, match=r"embeddings have shape \(2, 3\), expected \(2, 4\)"):
        store.insert([ex(0), ex(1)], np.zeros((2, 3), np.float32))


def test_info_table(store: ExampleStore) -> None:
    assert store.get_info("encoder") is None
    store.set_info("encoder", "hashing:4")
    store.set_info("encoder", "hashing:8")
    assert store.get_info("encoder") == "hashing:8"


def test_file_store_is_durable_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "examples.db"
    store = ExampleStore(path, dim=DIM)
    store.insert([ex(0, id="a"), ex(1, id="b")], vecs(2))
    # No close, no checkpoint: the committed rows are in the WAL and a second connection sees them.
    other = ExampleStore(path, dim=DIM)
    assert len(other) == 2
    assert other.fetch([2])[0].id == "b"
    store.close()
    other.close()


def test_backup_is_a_complete_standalone_copy(tmp_path: Path) -> None:
    store = ExampleStore(None, dim=DIM)
    store.set_info("encoder", "hashing:4")
    v = vecs(5)
    store.insert([ex(i) for i in range(5)], v)
    store.backup_to(tmp_path / "copy.db")
    copy = ExampleStore(tmp_path / "copy.db", dim=DIM)
    assert copy.get_info("encoder") == "hashing:4"
    assert copy.generation == store.generation
    np.testing.assert_array_equal(next(copy.iter_batches()).embeddings, v)
    copy.close()
    store.close()


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "examples.db"
    path.write_bytes(b"this is not a database at all, just some bytes" * 100)
    with pytest.raises(IndexFormatError, match="is not a kshot example store"):
        ExampleStore(path, dim=DIM)


def test_stored_embeddings_of_another_dimension_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "examples.db"
    store = ExampleStore(path, dim=DIM)
    store.insert([ex(0)], vecs(1))
    store.close()
    wrong = ExampleStore(path, dim=DIM + 1)
    with pytest.raises(IndexFormatError, match="do not have dimension 5"):
        list(wrong.iter_batches())
    wrong.close()


def test_sqlite_integrity_error_type_is_not_leaked(store: ExampleStore) -> None:
    store.insert([ex(0, id="a")], vecs(1))
    try:
        store.insert([ex(0, id="a")], vecs(1))
    except DataError as exc:
        assert isinstance(exc.__cause__, sqlite3.IntegrityError)
    else:  # pragma: no cover
        pytest.fail("expected a DataError")
