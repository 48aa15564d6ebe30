"""One writer per index, read-only openers beside it, vector files that never lie, small IVF."""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kshot.errors import IndexFormatError, IndexLockedError, ReadOnlyError
from kshot.index import example_index as example_index_module
from kshot.index import persistence
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.persistence import Manifest
from kshot.index.store import ExampleStore
from kshot.index.vectors import fit_factory
from kshot.types import Example

DIM = 64


@pytest.fixture
def saved(tmp_path: Path, toy_examples: list[Example]) -> Path:
    path = tmp_path / "idx"
    ExampleIndex.build(toy_examples, HashingEncoder(DIM), path=path).close()
    return path


def nearest(index: ExampleIndex, text: str) -> tuple[str, float]:
    """The id and score of the stored vector nearest to ``text``'s (selectors skip the query's
    own text, so this searches the vectors directly)."""
    query = HashingEncoder(DIM).encode([text])
    with index.reading():
        scores, slots = index.view.vector_search(query, 1, None)
        return index.view.examples_at([int(slots[0, 0])])[0].id, float(scores[0, 0])


def child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


HOLD = """
import sys
from kshot.index import ExampleIndex
index = ExampleIndex.load(sys.argv[1])
print("holding", flush=True)
for line in sys.stdin:
    if line.strip() == "delete":
        index.delete(["t00"])
        index.update("t01", input="a new text for t01")
        index.add([{"input": "added by the writer", "id": "w1"}])
        print("written", flush=True)
    elif line.strip() == "close":
        index.close()
        print("closed", flush=True)
"""


def holder(path: Path) -> subprocess.Popen[str]:
    proc = child(HOLD, str(path))
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read() if proc.stderr else ""
    return proc


def tell(proc: subprocess.Popen[str], command: str, answer: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == answer


# -- one writer -----------------------------------------------------------------------------------


def test_a_second_writer_process_is_refused_with_the_holders_pid(saved: Path) -> None:
    proc = holder(saved)
    try:
        with pytest.raises(IndexLockedError, match=rf"open for writing by process {proc.pid}") as e:
            ExampleIndex.load(saved)
        assert "--read-only" in str(e.value) and "read_only=True" in str(e.value)
        # A read-only opener is fine beside it.
        with ExampleIndex.load(saved, read_only=True) as reader:
            assert len(reader) == 12
        tell(proc, "close", "closed")
        ExampleIndex.load(saved).close()  # close() released the lock
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_writer_leaves_no_lock(saved: Path) -> None:
    proc = holder(saved)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with ExampleIndex.load(saved) as index:  # the kernel dropped the flock with the process
        assert len(index) == 12


def test_a_second_writer_in_the_same_process_is_refused(saved: Path) -> None:
    with ExampleIndex.load(saved), pytest.raises(IndexLockedError, match="this process"):
        ExampleIndex.load(saved)
    ExampleIndex.load(saved).close()  # the with block released it


def test_read_only_refuses_every_write(saved: Path) -> None:
    with ExampleIndex.load(saved, read_only=True) as index:
        assert index.read_only
        for write in (
            lambda: index.add([{"input": "x"}]),
            lambda: index.update("t00", output="y"),
            lambda: index.delete(["t00"]),
            lambda: index.save(),
        ):
            with pytest.raises(ReadOnlyError, match="opened read-only"):
                write()
    assert not (saved / "examples.db-journal").exists()


def test_overwriting_a_directory_another_writer_holds_is_refused(
    saved: Path, toy_examples: list[Example]
) -> None:
    other = ExampleIndex.build(toy_examples[:3], HashingEncoder(DIM))
    proc = holder(saved)
    try:
        with pytest.raises(IndexLockedError, match=f"process {proc.pid}"):
            other.save(saved, overwrite=True)
        with ExampleIndex.load(saved, read_only=True) as reader:
            assert len(reader) == 12  # untouched
    finally:
        proc.kill()
        proc.wait()


def test_after_an_overwrite_swap_the_live_directory_is_still_locked(
    saved: Path, toy_examples: list[Example]
) -> None:
    with ExampleIndex.build(toy_examples[:3], HashingEncoder(DIM)) as other:
        other.save(saved, overwrite=True)  # swaps directories (renameat2 exchange)
        assert other.path == saved
        proc = child(
            "import sys\nfrom kshot.index import ExampleIndex\nExampleIndex.load(sys.argv[1])",
            str(saved),
        )
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert f"open for writing by process {os.getpid()}" in err
    with ExampleIndex.load(saved) as index:
        assert len(index) == 3
    assert not [p for p in saved.parent.iterdir() if p.name.startswith(".")], "no leftovers"


# -- read-only beside a writer --------------------------------------------------------------------


def test_a_reader_beside_a_writer_keeps_a_consistent_snapshot_and_follows_it(
    saved: Path,
) -> None:
    proc = holder(saved)
    try:
        with ExampleIndex.load(saved, read_only=True) as reader:
            with reader.reading():
                slots = reader.view.live_slots(None).tolist()
            tell(proc, "delete", "written")  # deletes t00, updates t01, adds w1
            # Slots read before the write still name rows the snapshot holds: no KeyError.
            assert {ex.id for ex in reader.view.examples_at(slots)} >= {"t00", "t01"}
            # The next read moves to the writer's state.
            ids = {ex.id for ex in reader}
            assert "t00" not in ids and "w1" in ids and len(reader) == 12
            assert reader.get(["t01"])[0].input == "a new text for t01"
            assert nearest(reader, "a new text for t01")[0] == "t01"
            assert nearest(reader, "added by the writer")[0] == "w1"
    finally:
        proc.kill()
        proc.wait()


# -- the vector file: the set of rows, not a count ------------------------------------------------


def test_a_vector_file_covering_other_rows_is_never_trusted(
    saved: Path, tmp_path: Path, logged: logging.handlers.BufferingHandler
) -> None:
    """The issue's two-writer outcome: the file holds a stale row and lacks a new one, while its
    generation, count and checksum all match."""
    shutil.copy(saved / "vectors.faiss", tmp_path / "old.faiss")
    with ExampleIndex.load(saved) as index:
        index.update("t04", input="an entirely patched text")
        index.save()
        generation = Manifest.read(saved / "manifest.json").generation
    shutil.copy(tmp_path / "old.faiss", saved / "vectors.faiss")
    data = json.loads((saved / "manifest.json").read_text())
    data["vectors_sha256"] = hashlib.sha256((saved / "vectors.faiss").read_bytes()).hexdigest()
    assert data["generation"] == generation and data["count"] == 12
    (saved / "manifest.json").write_text(json.dumps(data))
    with ExampleIndex.load(saved, read_only=True) as index:
        live = {int(r) for r in index.view.slot_rows(index.view.live_slots(None))}
        held = index._vectors.row_ids()
        assert held is not None and set(held.tolist()) == live
        found, score = nearest(index, "an entirely patched text")
        assert found == "t04" and score == pytest.approx(1.0, abs=1e-5)
    assert not logged.buffer


# -- writes leave a loadable, current directory ---------------------------------------------------


def test_loads_after_python_writes_do_not_warn(
    saved: Path, logged: logging.handlers.BufferingHandler
) -> None:
    with ExampleIndex.load(saved) as index:
        index.add([{"input": "one more", "id": "n1"}])
        index.update("t02", input="changed text")
        index.delete(["t03"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning besides the log
        with ExampleIndex.load(saved) as index:
            assert len(index) == 12
            index.add([{"input": "after a crash", "id": "n2"}])
            index._writer.release()  # type: ignore[union-attr]  # as if killed: no close
        with ExampleIndex.load(saved, read_only=True) as index:
            assert "n2" in {ex.id for ex in index}
            assert nearest(index, "after a crash")[0] == "n2"
    assert not logged.buffer


def test_drift_past_the_limit_rewrites_the_vector_file(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(example_index_module, "drift_limit", lambda live: 3)
    with ExampleIndex.load(saved) as index:
        before = Manifest.read(saved / "manifest.json")
        index.add([{"input": f"drift {i}", "id": f"d{i}"} for i in range(2)])
        assert Manifest.read(saved / "manifest.json") == before  # within the bound: no rewrite
        index.add([{"input": "drift 2", "id": "d2"}, {"input": "drift 3", "id": "d3"}])
        after = Manifest.read(saved / "manifest.json")
        assert (after.count, after.generation) == (16, index._store.generation)


def test_update_encodes_outside_the_write_lock(saved: Path) -> None:
    entered, finish = threading.Event(), threading.Event()

    class SlowEncoder(HashingEncoder):
        def encode(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
            if list(texts) == ["the slow new text"]:
                entered.set()
                assert finish.wait(60)
            return super().encode(texts)

    with ExampleIndex.load(saved, encoder=SlowEncoder(DIM)) as index:
        done: list[str] = []
        writer = threading.Thread(
            target=lambda: done.append(index.update("t05", input="the slow new text").input)
        )
        writer.start()
        assert entered.wait(60)
        read_done = threading.Event()
        reader = threading.Thread(target=lambda: (index.get(["t06"]), read_done.set()))
        reader.start()
        # Old code held the write lock while encoding: this read could not finish.
        assert read_done.wait(60), "a read was blocked by the encoding update"
        finish.set()
        writer.join(60)
        reader.join(60)
        assert done == ["the slow new text"]
        assert index.get(["t05"])[0].input == "the slow new text"


# -- small IVF indexes whose vectors must be rebuilt ----------------------------------------------


def test_fit_factory() -> None:
    assert fit_factory("IVF16,Flat", 200) == "IVF16,Flat"
    assert fit_factory("IVF16,Flat", 10) == "Flat"
    assert fit_factory("IVF1024,Flat", 500) == "IVF12,Flat"
    assert fit_factory("HNSW32,Flat", 3) == "HNSW32,Flat"


def test_an_ivf_rebuild_with_fewer_rows_than_lists_falls_back_with_one_warning(
    tmp_path: Path, logged: logging.handlers.BufferingHandler
) -> None:
    rows = [{"input": f"row {i} word{i % 7} thing{i % 11}", "id": f"r{i}"} for i in range(200)]
    path = tmp_path / "ivf"
    with ExampleIndex.build(
        rows, HashingEncoder(DIM), factory="IVF16,Flat", path=path, recall_target=0.9, seed=7
    ) as index:
        index.delete([f"r{i}" for i in range(190)])
    manifest = Manifest.read(path / "manifest.json")
    assert (manifest.build_factory, manifest.recall_target, manifest.seed) == ("IVF16,Flat", 0.9, 7)
    (path / "vectors.faiss").unlink()
    logged.flush()
    with ExampleIndex.load(path, read_only=True) as index:
        assert len(index) == 10
        assert index.factory == "Flat"
        assert nearest(index, "row 195 word6 thing8") == ("r195", pytest.approx(1.0, abs=1e-5))
    warned = [record.getMessage() for record in logged.buffer]
    assert len(warned) == 1, warned
    assert "is missing" in warned[0] and "using Flat" in warned[0]


def test_rebuilds_use_the_builds_recall_target_and_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [{"input": f"row {i} word{i % 7} thing{i % 11}", "id": f"r{i}"} for i in range(400)]
    path = tmp_path / "ivf"
    ExampleIndex.build(
        rows, HashingEncoder(DIM), factory="IVF8,Flat", path=path, recall_target=0.8, seed=5
    ).close()
    (path / "vectors.faiss").unlink()
    seen: list[tuple[str, float, int]] = []
    real = persistence.build_vectors

    def spy(*args: Any, **kwargs: Any) -> Any:
        factory, target, seed = args[3:6]
        seen.append((factory, target, seed))
        return real(*args, **kwargs)

    monkeypatch.setattr(persistence, "build_vectors", spy)
    ExampleIndex.load(path, read_only=True).close()
    assert seen == [("IVF8,Flat", 0.8, 5)]


# -- stores that are not kshot's ------------------------------------------------------------------


def test_an_empty_store_file_says_so(saved: Path) -> None:
    for extra in saved.glob("examples.db-*"):
        extra.unlink()
    (saved / "examples.db").write_bytes(b"")
    with pytest.raises(IndexFormatError, match=r"examples.db is empty \(0 bytes\)") as e:
        ExampleIndex.load(saved)
    assert "encoder None" not in str(e.value)
    assert (saved / "examples.db").stat().st_size == 0


def test_a_foreign_sqlite_file_is_refused_untouched(saved: Path) -> None:
    for extra in saved.glob("examples.db-*"):
        extra.unlink()
    db = saved / "examples.db"
    db.unlink()
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    for read_only in (False, True):
        with pytest.raises(IndexFormatError, match="not a kshot example store"):
            ExampleIndex.load(saved, read_only=read_only)
    conn = sqlite3.connect(db)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["songs"]


def test_a_store_opened_for_reading_writes_nothing(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path / "s.db", dim=4)
    store.close()
    reader = ExampleStore(tmp_path / "s.db", dim=4, mode="read")
    with pytest.raises(sqlite3.OperationalError):
        reader.set_info("x", "y")
    reader.close()
