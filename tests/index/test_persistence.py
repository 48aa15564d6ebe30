from __future__ import annotations

import json
import logging
import logging.handlers
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from kshot.api import select
from kshot.errors import (
    ConfigError,
    DataError,
    EncoderMismatchError,
    IndexFormatError,
    IndexLockedError,
)
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.persistence import Manifest
from kshot.types import Example

DIM = 64


class ExplodingEncoder:
    """Has the index's encoder name and dimension, but refuses to embed anything."""

    def __init__(self, name: str = f"hashing:{DIM}", dim: int = DIM) -> None:
        self.name = name
        self.dim = dim

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        raise AssertionError(f"re-embedding was not expected ({len(texts)} texts)")


def load_quietly(path: Path, **kwargs: object) -> tuple[ExampleIndex, list[str]]:
    """Load and return the warnings logged while loading (a Python warning fails the test)."""
    handler = logging.handlers.BufferingHandler(capacity=1000)
    handler.setLevel(logging.WARNING)
    logging.getLogger("kshot").addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            index = ExampleIndex.load(path, **kwargs)  # type: ignore[arg-type]
    finally:
        logging.getLogger("kshot").removeHandler(handler)
    return index, [record.getMessage() for record in handler.buffer]


def load_strictly(path: Path, **kwargs: object) -> ExampleIndex:
    """Load, failing on any warning, logged or raised."""
    index, warned = load_quietly(path, **kwargs)
    assert not warned, warned
    return index


def read(path: Path, **kwargs: object) -> ExampleIndex:
    """Load read-only and strictly: for checks beside a writer that is still open."""
    return load_strictly(path, read_only=True, **kwargs)


def snapshot(index: ExampleIndex) -> dict[str, Example]:
    return {ex.id: ex for ex in index}


def top_ids(index: ExampleIndex, queries: list[str], k: int = 5) -> list[list[str]]:
    vectors = HashingEncoder(DIM).encode(queries)
    with index.reading():
        _, slots = index.view.vector_search(vectors, k, None)
        return [
            [ex.id for ex in index.view.examples_at([s for s in row if s >= 0])] for row in slots
        ]


QUERIES = ["card PIN reset", "transfer fee", "close my account", "top up cash"]


@pytest.fixture
def saved(tmp_path: Path, toy_examples: list[Example], hashing_encoder: HashingEncoder) -> Path:
    path = tmp_path / "idx"
    # Close the connection now: tests below damage the files, which an open one may have mapped.
    ExampleIndex.build(toy_examples, hashing_encoder, path=path).close()
    return path


# -- round trip -----------------------------------------------------------------------------------


def test_build_save_load_round_trip(saved: Path, toy_examples: list[Example]) -> None:
    assert sorted(p.name for p in saved.iterdir() if not p.name.startswith("examples.db-")) == [
        "examples.db",
        "manifest.json",
        "vectors.faiss",
        "writer.lock",
    ]
    manifest = Manifest.read(saved / "manifest.json")
    assert (manifest.encoder, manifest.dim, manifest.count, manifest.factory) == (
        f"hashing:{DIM}",
        DIM,
        12,
        "Flat",
    )
    index = load_strictly(saved)
    assert index.path == saved
    assert len(index) == 12
    assert snapshot(index) == {ex.id: ex for ex in toy_examples}
    assert index.encoder_name == f"hashing:{DIM}"
    built = ExampleIndex.build(toy_examples, HashingEncoder(DIM))
    assert top_ids(index, QUERIES) == top_ids(built, QUERIES)
    # The encoder named in the manifest is made on first use.
    assert select(index, "reset my PIN", 1)[0].example.id in {"t00", "t01"}


def test_save_to_a_new_directory_and_refuse_to_overwrite(
    saved: Path, tmp_path: Path, toy_examples: list[Example]
) -> None:
    index = load_strictly(saved)
    copy = index.save(tmp_path / "nested" / "copy")
    assert copy == tmp_path / "nested" / "copy"
    assert index.path == copy  # the index now lives in the copy
    index.add([{"input": "only in the copy", "id": "c"}])
    index.save()
    assert len(read(copy)) == 13
    assert len(load_strictly(saved)) == 12  # the source is no longer locked by `index`
    other = ExampleIndex.build(toy_examples[:3], HashingEncoder(DIM))
    with pytest.raises(ConfigError, match="already exists; pass overwrite=True"):
        other.save(copy)
    assert len(read(copy)) == 13
    with pytest.raises(IndexLockedError, match=rf"by this process \(pid {os.getpid()}\)"):
        other.save(copy, overwrite=True)  # `index` still writes there
    index.close()
    other.save(copy, overwrite=True)
    assert len(read(copy)) == 3
    assert not [p for p in copy.parent.iterdir() if p.name.startswith(".")], "no leftovers"


def test_writes_survive_a_restart_without_save(saved: Path) -> None:
    index = load_strictly(saved)
    ids = index.add(
        [{"input": "added after the save", "label": "new", "id": "a1"}, {"input": "x y"}]
    )
    index.update("t00", input="a totally different input now", label="changed")
    index.update("t01", metadata={"topic": "moved"})
    index.delete(["t02", "t03"])
    expected = snapshot(index)
    expected_top = top_ids(index, QUERIES)
    # No save, no close (a crash): the store is durable, the vector file lags it by a few rows.
    index._writer.release()  # type: ignore[union-attr]
    manifest = Manifest.read(saved / "manifest.json")

    # The lagging file is brought up to date from the stored embeddings, silently.
    reloaded = load_strictly(saved, encoder=ExplodingEncoder())
    assert Manifest.read(saved / "manifest.json") == manifest
    assert snapshot(reloaded) == expected
    assert len(reloaded) == 12
    assert set(ids) <= set(expected)
    assert top_ids(reloaded, QUERIES) == expected_top
    with reloaded.reading():
        mask = reloaded.view.resolve({"topic": "moved"})
        assert mask is not None
        assert [reloaded.get(["t01"])[0].id] == [
            ex.id for ex in reloaded.view.examples_at(reloaded.view.live_slots(mask).tolist())
        ]
    reloaded.save()
    reloaded.close()
    again = load_strictly(saved, encoder=ExplodingEncoder())
    assert snapshot(again) == expected
    assert top_ids(again, QUERIES) == expected_top


def test_writes_survive_a_restart_with_save(saved: Path) -> None:
    index = load_strictly(saved)
    index.add([{"input": "saved addition", "id": "s1"}])
    index.update("t04", output="new output")
    index.delete(["t05"])
    index.save()
    expected = snapshot(index)
    index.close()
    reloaded = load_strictly(saved, encoder=ExplodingEncoder())
    assert snapshot(reloaded) == expected
    assert reloaded.get(["t04"])[0].output == "new output"


def test_many_deletes_compact_the_vectors_on_save(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    rows = [{"input": f"row {i} word{i % 7}", "id": f"r{i}"} for i in range(3000)]
    index = ExampleIndex.build(rows, hashing_encoder, factory="HNSW16,Flat", path=tmp_path / "h")
    index.delete([f"r{i}" for i in range(0, 3000, 2)])
    index.save()
    index.close()
    reloaded = load_strictly(tmp_path / "h")
    assert len(reloaded) == 1500
    found = select(reloaded, "row 4 word4", 50)
    assert all(int(s.example.id[1:]) % 2 == 1 for s in found)


# -- directories that are not an index ------------------------------------------------------------


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"nowhere is not a directory; build an index"):
        ExampleIndex.load(tmp_path / "nowhere")


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("hi")
    with pytest.raises(IndexFormatError, match="is not a directory"):
        ExampleIndex.load(tmp_path / "file")


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"is not a kshot index: manifest.json is missing"):
        ExampleIndex.load(tmp_path)
    assert list(tmp_path.iterdir()) == [], "loading must not create files"


def test_foreign_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "some other tool", "version": 3}))
    with pytest.raises(IndexFormatError, match="is not a kshot manifest"):
        ExampleIndex.load(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"\x00\xff garbage \x89PNG", b"{not json", b"[1, 2, 3]", b"", b'"kshot-index"'],
)
def test_garbage_manifest(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "manifest.json").write_bytes(content)
    with pytest.raises(IndexFormatError, match=r"manifest\.json is not"):
        ExampleIndex.load(tmp_path)


def test_manifest_of_a_future_format_version(saved: Path) -> None:
    data = json.loads((saved / "manifest.json").read_text())
    data["format_version"] = 99
    (saved / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="format version 99; this kshot reads version 1"):
        ExampleIndex.load(saved)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dim", "64"),
        ("dim", 0),
        ("count", "twelve"),
        ("count", -1),
        ("generation", None),
        ("factory", 5),
        ("encoder", None),
        ("vectors_sha256", 12),
        ("nprobe", "4"),
        ("recall_at_10", "high"),
        ("normalized", "yes"),
        ("extra", []),
    ],
)
def test_manifest_with_a_field_of_the_wrong_type(saved: Path, field: str, value: object) -> None:
    data = json.loads((saved / "manifest.json").read_text())
    data[field] = value
    (saved / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match=rf"manifest.json: field '{field}'"):
        ExampleIndex.load(saved)


def test_manifest_with_unknown_or_missing_fields(saved: Path) -> None:
    data = json.loads((saved / "manifest.json").read_text())
    data["surprise"] = 1
    (saved / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="unexpected or missing fields"):
        ExampleIndex.load(saved)
    del data["surprise"], data["dim"]
    (saved / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="unexpected or missing fields"):
        ExampleIndex.load(saved)


def test_manifest_without_a_store(saved: Path) -> None:
    for name in os.listdir(saved):
        if name.startswith("examples.db"):
            (saved / name).unlink()
    with pytest.raises(IndexFormatError, match=r"has a manifest but no examples\.db"):
        ExampleIndex.load(saved)
    assert not (saved / "examples.db").exists()


def test_manifest_and_store_that_disagree(saved: Path) -> None:
    data = json.loads((saved / "manifest.json").read_text())
    data["encoder"] = "hashing:999"
    data["dim"] = 999
    (saved / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(
        IndexFormatError, match=r"written by encoder 'hashing:64' \(dim 64\).*inconsistent"
    ):
        ExampleIndex.load(saved)


# -- the vector file is a cache: rebuilt, never re-embedded ---------------------------------------


def corrupt_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def corrupt_truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_empty(path: Path) -> None:
    path.write_bytes(b"")


def corrupt_delete(path: Path) -> None:
    path.unlink()


def corrupt_flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-7] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (corrupt_garbage, "does not match its checksum"),
        (corrupt_truncate, "does not match its checksum"),
        (corrupt_empty, "does not match its checksum"),
        (corrupt_flip_one_byte, "does not match its checksum"),
        (corrupt_delete, "is missing"),
    ],
)
def test_damaged_vector_file_is_rebuilt_without_re_embedding(
    saved: Path, damage: object, problem: str
) -> None:
    expected_top = top_ids(read(saved), QUERIES)
    damage(saved / "vectors.faiss")  # type: ignore[operator]
    index, warned = load_quietly(saved, encoder=ExplodingEncoder())
    assert len(warned) == 1 and problem in warned[0], warned  # one warning, logged only
    assert len(index) == 12
    assert top_ids(index, QUERIES) == expected_top
    index.save()
    index.close()
    assert top_ids(read(saved, encoder=ExplodingEncoder()), QUERIES) == expected_top


def test_vector_file_that_faiss_cannot_read(saved: Path) -> None:
    # A file whose checksum is right (the manifest is updated to match) but that is not FAISS.
    import hashlib

    (saved / "vectors.faiss").write_bytes(b"definitely not a faiss index" * 10)
    data = json.loads((saved / "manifest.json").read_text())
    data["vectors_sha256"] = hashlib.sha256((saved / "vectors.faiss").read_bytes()).hexdigest()
    (saved / "manifest.json").write_text(json.dumps(data))
    index, warned = load_quietly(saved, encoder=ExplodingEncoder())
    assert len(warned) == 1 and "cannot be read by FAISS" in warned[0], warned
    assert len(top_ids(index, QUERIES)[0]) == 5


def test_vector_file_of_another_index(saved: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ExampleIndex.build([{"input": "one"}, {"input": "two"}], HashingEncoder(DIM), path=other)
    shutil.copy(other / "vectors.faiss", saved / "vectors.faiss")
    index, warned = load_quietly(saved, encoder=ExplodingEncoder())
    assert len(warned) == 1 and "rebuilt it from the stored embeddings" in warned[0], warned
    assert len(index) == 12
    assert len(top_ids(index, QUERIES, k=20)[0]) == 12


# -- encoder mismatch -----------------------------------------------------------------------------


def test_loading_with_another_encoder_names_both(saved: Path) -> None:
    with pytest.raises(
        EncoderMismatchError, match=r"built with encoder 'hashing:64'.*not 'hashing:32'"
    ):
        ExampleIndex.load(saved, encoder=HashingEncoder(32))
    with pytest.raises(
        EncoderMismatchError,
        match=r"'hashing:64' \(dim 64\), not 'sentence-transformers/all-MiniLM-L6-v2'",
    ):
        ExampleIndex.load(saved, model="sentence-transformers/all-MiniLM-L6-v2")
    with pytest.raises(IndexFormatError):  # EncoderMismatchError is an IndexFormatError
        ExampleIndex.load(saved, model="hashing:32")


def test_loading_with_an_encoder_of_another_dimension(saved: Path) -> None:
    with pytest.raises(
        EncoderMismatchError,
        match=r"holds vectors of dimension 64, but encoder 'hashing:64' makes dimension 32",
    ):
        ExampleIndex.load(saved, encoder=ExplodingEncoder(dim=32))


def test_loading_with_the_same_encoder_by_name(saved: Path) -> None:
    index = load_strictly(saved, model=f"hashing:{DIM}")
    assert len(index) == 12


# -- a corrupt example store ----------------------------------------------------------------------


@pytest.fixture
def big_saved(tmp_path: Path, hashing_encoder: HashingEncoder) -> Path:
    path = tmp_path / "big"
    rows = [{"input": f"stored text {i} " + "padding " * 10, "id": f"r{i}"} for i in range(3000)]
    index = ExampleIndex.build(rows, hashing_encoder, path=path)
    index.save()
    index._store.close()
    return path


@pytest.mark.parametrize("where", ["garbage", "truncated", "middle", "tail"])
def test_corrupt_store(big_saved: Path, where: str) -> None:
    db = big_saved / "examples.db"
    for extra in big_saved.glob("examples.db-*"):
        extra.unlink()
    data = bytearray(db.read_bytes())
    n = len(data)
    rng = random.Random(0)
    if where == "garbage":
        data = bytearray(rng.randbytes(n))
    elif where == "truncated":
        data = data[: n // 3]
    elif where == "middle":  # the header and schema survive; data pages do not
        data[n // 2 : n // 2 + 16384] = rng.randbytes(16384)
    else:
        data = data[: n - 8192]
    db.write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"examples.db"):
        load_quietly(big_saved)


def test_empty_store_file(saved: Path) -> None:
    for extra in saved.glob("examples.db-*"):
        extra.unlink()
    (saved / "examples.db").write_bytes(b"")
    with pytest.raises(IndexFormatError, match=r"examples.db"):
        ExampleIndex.load(saved)


# -- crash safety: real processes, SIGKILLed ------------------------------------------------------

CHILD_PRELUDE = """
import os, sys, time
from pathlib import Path
import kshot.index.persistence as ei
from kshot.index import ExampleIndex, HashingEncoder
"""

ADD_LOOP = (
    CHILD_PRELUDE
    + """
index = ExampleIndex.load(sys.argv[1], HashingEncoder(64))
print("ready", flush=True)
batch = int(sys.argv[2])
while True:
    index.add([
        {"input": f"batch {batch} item {j} text", "label": f"L{j}", "output": f"o{batch}",
         "metadata": {"batch": batch, "j": j}, "id": f"b{batch}-{j}"}
        for j in range(5)
    ])
    if batch % 3 == 2:
        index.delete([f"b{batch}-0"])
    batch += 1
"""
)


def run_child(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(args[0]).parent if args else None,
    )


def wait_for(predicate: object, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child did not reach the expected point in time")
        time.sleep(0.01)


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, f"the child failed on its own:\n{stderr}"


def check_add_loop_state(index: ExampleIndex, base: int, rounds: int) -> int:
    """Every example is whole and every add was all-or-nothing; return the number of batches."""
    added = {ex.id: ex for ex in index if ex.id.startswith("b")}
    batches = {int(i[1:].split("-")[0]) for i in added}
    count = max(batches) + 1 if batches else 0
    assert batches == set(range(count))
    undeleted = 0
    for b in range(count):
        got = sorted(int(i.split("-")[1]) for i in added if i.startswith(f"b{b}-"))
        if b % 3 == 2 and got == list(range(5)):
            undeleted += 1  # killed between the add and its follow-up delete
        else:
            assert got == ([1, 2, 3, 4] if b % 3 == 2 else list(range(5))), (b, got)
        for j in got:
            ex = added[f"b{b}-{j}"]
            assert ex.input == f"batch {b} item {j} text"
            assert (ex.label, ex.output, dict(ex.metadata)) == (
                f"L{j}",
                f"o{b}",
                {"batch": b, "j": j},
            )
    assert undeleted <= rounds
    assert len(index) == base + len(added)
    return count


def test_killed_while_adding(tmp_path: Path, toy_examples: list[Example]) -> None:
    path = tmp_path / "idx"
    ExampleIndex.build(toy_examples, HashingEncoder(DIM), path=path).close()
    rng = random.Random(1234)
    previous = 0
    for rounds in range(1, 4):
        proc = run_child(ADD_LOOP, str(path), str(previous))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))
        kill(proc)
        index, warned = load_quietly(path, encoder=ExplodingEncoder())
        batches = check_add_loop_state(index, base=12, rounds=rounds)
        assert batches >= previous
        # A lagging vector file is normal after writes and is caught up silently; only a kill
        # between the vector file's rename and the manifest's leaves a checksum to mismatch.
        assert all("does not match its checksum" in w for w in warned), warned
        previous = batches
        # The rebuilt vectors agree with the store: each added example is its own nearest
        # neighbour (score 1; hashing collisions may tie it with another, never beat it).
        recent = range(max(0, batches - 3), batches)
        vectors = HashingEncoder(DIM).encode([f"batch {b} item 3 text" for b in recent])
        with index.reading():
            # Search the whole index: with many batches, more than a handful of texts can hash
            # to the very same vector, and any of them may come first.
            scores, slots = index.view.vector_search(vectors, len(index), None)
            for b, row_scores, row_slots in zip(recent, scores, slots, strict=True):
                assert row_scores[0] == pytest.approx(1.0, abs=1e-5)
                tied = row_slots[row_scores >= row_scores[0] - 1e-5].tolist()
                assert f"b{b}-3" in {ex.id for ex in index.view.examples_at(tied)}
        index.save()
        index.close()
    assert previous > 0, "the child never committed an add; give it more time"


SAVE_PAUSED = (
    CHILD_PRELUDE
    + """
src, target, mode, pause_at, marker = sys.argv[1:6]
pause_at = int(pause_at)
index = ExampleIndex.load(src, HashingEncoder(64))
index.add([{"input": "the new state", "id": "new-state"}])
steps = 0

def pausing(func):
    def step(*args, **kwargs):
        global steps
        steps += 1
        if steps == pause_at:
            Path(marker).write_text(f"paused before step {steps}: {func.__name__} {args}")
            time.sleep(600)
        return func(*args, **kwargs)
    return step

real_replace = os.replace
os.replace = pausing(real_replace)
ei.exchange_paths = pausing(ei.exchange_paths)
if mode == "no-exchange":
    ei.exchange_paths = lambda a, b: False
if mode == "same":
    index.save()
else:
    index.save(target, overwrite=True)
Path(marker).write_text(f"done after {steps} steps")
time.sleep(600)
"""
)


@pytest.mark.parametrize("mode", ["new", "overwrite", "no-exchange", "same"])
def test_killed_inside_save(tmp_path: Path, toy_examples: list[Example], mode: str) -> None:
    """Kill the saving process before each rename it makes: the target is old or new, never broken.

    All pause points of one mode run as parallel children, so the test stays quick.
    """
    # Steps: the vector file and the manifest renamed into place, then the target swapped in
    # (one exchange, or two renames without one); the last point lets the save finish.
    pause_points = range(1, 6 if mode == "no-exchange" else 5)
    procs = []
    for pause_at in pause_points:
        root = tmp_path / f"p{pause_at}"
        src = root / "src"
        ExampleIndex.build(toy_examples, HashingEncoder(DIM), path=src).close()
        target = src if mode == "same" else root / "target"
        if mode in ("overwrite", "no-exchange"):
            ExampleIndex.build(toy_examples[:5], HashingEncoder(DIM), path=target).close()
        marker = root / "marker"
        proc = run_child(SAVE_PAUSED, str(src), str(target), mode, str(pause_at), str(marker))
        procs.append((pause_at, proc, target, marker))
    outcomes = []
    for _pause_at, proc, target, marker in procs:
        wait_for(marker.exists, proc)
        time.sleep(0.02)
        kill(proc)
        outcomes.append(marker.read_text().split(":")[0])
        if mode == "new" and not target.exists():
            state = "old"  # the old state of a new target is no index at all
        else:
            index, warned = load_quietly(target, read_only=True)
            ids = {ex.id for ex in index}
            if mode == "same":
                # The add was durable before the save began; only the vector file may be stale.
                assert len(index) == 13
                assert "new-state" in ids
                state = "new"
            elif "new-state" in ids:
                assert len(index) == 13
                assert not warned, warned
                state = "new"
            else:
                assert mode != "new"
                assert ids == {f"t{i:02d}" for i in range(5)}
                # Without an atomic exchange, a kill between the two renames leaves the old
                # index aside; load puts it back and says so.
                assert all("a save was interrupted; restored" in w for w in warned), warned
                assert not warned or mode == "no-exchange"
                state = "old"
            assert top_ids(index, QUERIES)[0]
        # Whatever was left behind, saving again to the same target works.
        with load_quietly(target.parent / "src")[0] as fresh:
            fresh.save(target, overwrite=True) if mode != "same" else fresh.save()
        assert len(read(target)) == 13
        outcomes[-1] += f" -> {state}"
    assert any("done" in o for o in outcomes), outcomes  # the pause points cover the whole save


SAVE_LOOP = (
    CHILD_PRELUDE
    + """
src, first, second, start = sys.argv[1:5]
index = ExampleIndex.load(src, HashingEncoder(64))
n = int(start)
while True:
    # Each save moves the index into its target, so the two directories take turns: one is the
    # live index, the other is overwritten by a complete copy.
    target = (first, second)[n % 2]
    index.add([{"input": f"loop addition {n}", "id": f"loop{n}"}])
    index.save(target, overwrite=True)
    n += 1
    print(n, flush=True)
"""
)


def test_killed_at_a_random_moment_while_saving_a_larger_index(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    rows = [{"input": f"bulk text {i} " + "pad " * 20, "id": f"r{i}"} for i in range(4000)]
    ExampleIndex.build(rows, hashing_encoder, path=tmp_path / "src").close()
    targets = [tmp_path / "a", tmp_path / "b"]
    rng = random.Random(99)
    start = 0
    for _round in range(2):
        proc = run_child(SAVE_LOOP, str(tmp_path / "src"), *map(str, targets), str(start))
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == str(start + 1), proc.stderr.read() if proc.stderr else first
        time.sleep(rng.uniform(0.0, 0.8))
        kill(proc)
        counts = []
        for target in targets:
            if not target.exists():
                continue  # never saved there yet
            index, _ = load_quietly(target)
            loops = sorted(
                (int(ex.id[4:]) for ex in index if ex.id.startswith("loop")),
            )
            # One complete state: loop0..loop{m-1} for some m, all 4,000 bulk rows.
            assert loops == list(range(len(loops)))
            assert len(index) == 4000 + len(loops)
            select(index, "bulk text 7", 3)
            counts.append(len(loops))
            index._store.close()
        assert counts
        start = max(counts)
        newest = targets[0] if not targets[1].exists() or counts[0] >= counts[-1] else targets[1]
        shutil.rmtree(tmp_path / "src")
        shutil.copytree(newest, tmp_path / "src")
        for target in targets:
            shutil.rmtree(target, ignore_errors=True)


def test_data_error_does_not_touch_the_directory(saved: Path) -> None:
    before = {p.name: p.read_bytes() for p in saved.iterdir() if p.name != "examples.db-shm"}
    index = load_strictly(saved)
    with pytest.raises(DataError):
        index.add([{"input": "ok", "id": "t00"}])
    with pytest.raises(DataError):
        index.add([{"nope": 1}])
    del index
    after = load_strictly(saved)
    assert len(after) == 12
    assert {p.name for p in saved.iterdir()} >= set(before) - {"examples.db-wal"}


def test_build_into_an_existing_directory_is_refused_before_embedding(
    saved: Path, toy_examples: list[Example]
) -> None:
    with pytest.raises(ConfigError, match="already exists"):
        ExampleIndex.build(toy_examples, ExplodingEncoder(), path=saved)
    assert len(load_strictly(saved)) == 12


def test_adding_precomputed_embeddings_does_not_load_the_encoder(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder should not be loaded")

    monkeypatch.setattr("kshot.index.example_index.encoder_from_name", no_model)
    index = load_strictly(saved)
    vector = HashingEncoder(DIM).encode(["precomputed text"])
    assert index.add([{"input": "precomputed text", "id": "p"}], embeddings=vector) == ["p"]
    with index.reading():
        _, slots = index.view.vector_search(vector, 1, None)
        assert index.view.examples_at(slots[0].tolist())[0].id == "p"
    with pytest.raises(
        DataError, match=r"expected \(1, 64\) for 1 examples and encoder 'hashing:64'"
    ):
        index.add([{"input": "x"}], embeddings=np.ones((1, 8)))
