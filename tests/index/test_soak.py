"""Soak: a writer process SIGKILLed at random moments, round after round; the index always holds.

After every kill: the index loads (for writing: the dead writer's lock is gone), its count agrees
with the store, SQLite's ``integrity_check`` passes, and the vector index agrees with the store:
it holds exactly the live rows, each with its stored embedding, and each is found by a search
for that embedding.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex

DIM = 32
ROUNDS = 40

WRITER = """
import random, sys
import kshot.index.example_index as ei
import kshot.index.persistence as persistence
from kshot.index import ExampleIndex, HashingEncoder

# A small drift limit, so that kills also land inside the vector file's rewrites.
ei.drift_limit = persistence.drift_limit = lambda live: 40
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
index = ExampleIndex.load(path, HashingEncoder(32))
print("ready", flush=True)
n = 0
while True:
    ids = [ex.id for ex in index]
    op = rng.random()
    if op < 0.45 or len(ids) < 50:
        count = rng.randint(1, 15)
        index.add([{"input": f"s{seed} n{n + j} w{rng.randint(0, 999)}", "id": f"s{seed}-{n + j}",
                    "label": f"L{j % 4}"} for j in range(count)])
        n += count
    elif op < 0.7:
        index.update(rng.choice(ids), input=f"updated s{seed} {n} w{rng.randint(0, 999)}")
        n += 1
    elif op < 0.95:
        index.delete(rng.sample(ids, rng.randint(1, 5)))
    else:
        index.save()
"""


def check(path: Path) -> int:
    """Load and check the index; return its size."""
    with ExampleIndex.load(path, HashingEncoder(DIM)) as index:
        listed = list(index)
        assert len(listed) == len(index)
        conn = sqlite3.connect(path / "examples.db")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {
                int(row): np.frombuffer(blob, np.float32)
                for row, blob in conn.execute("SELECT row, embedding FROM examples")
            }
            assert conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == len(index)
        finally:
            conn.close()
        held = index._vectors.row_ids()
        assert held is not None and held.tolist() == sorted(stored)
        faiss_index = faiss.downcast_index(index._vectors._index)
        rows = np.array(sorted(stored), np.int64)
        for row in rows.tolist():
            np.testing.assert_array_equal(faiss_index.reconstruct(row), stored[row])
        queries = np.stack([stored[r] for r in rows.tolist()])
        with index.reading():
            scores, slots = index.view.vector_search(queries, 5, None)
            found_rows = index.view.slot_rows(np.where(slots >= 0, slots, 0))
        for i, row in enumerate(rows.tolist()):
            assert scores[i, 0] == pytest.approx(1.0, abs=1e-5)
            tied = found_rows[i][scores[i] >= scores[i, 0] - 1e-5]
            assert row in tied.tolist() or len(tied) == 5  # hashing collisions may tie
        return len(index)


@pytest.mark.slow
def test_soak_writer_killed_at_random_points(
    tmp_path: Path, logged: logging.handlers.BufferingHandler
) -> None:
    path = tmp_path / "soak"
    base = [
        {"input": f"base {i} w{i % 17}", "id": f"b{i}", "label": f"L{i % 4}"} for i in range(300)
    ]
    ExampleIndex.build(base, HashingEncoder(DIM), path=path).close()
    rng = random.Random(2026)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    sizes, warned_rounds = [], 0
    for round_ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(round_)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore[union-attr]
        time.sleep(rng.uniform(0.02, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()  # type: ignore[union-attr]
        before = len(logged.buffer)
        sizes.append(check(path))
        # Only a kill between the vector file's rename and the manifest's leaves a mismatch.
        new = [record.getMessage() for record in logged.buffer[before:]]
        assert all("does not match its checksum" in m for m in new), new
        warned_rounds += bool(new)
    print(
        f"\nsoak: {ROUNDS} rounds, sizes {min(sizes)}..{max(sizes)}, "
        f"{len(set(sizes))} distinct, rounds with a rebuild warning: {warned_rounds}"
    )
    assert len(set(sizes)) > 1, "the writer never committed anything; give it more time"
