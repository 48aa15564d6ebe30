"""Compressed (SQ8, PQ, IVF-PQ) and memory-mapped vector indexes: build, save, load, answer."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from kshot.cli import app
from kshot.errors import ConfigError
from kshot.index import ExampleIndex
from kshot.index.encoder import HashingEncoder
from kshot.index.factories import holds_vectors, is_compressed, pq_m_values, validate_factory
from kshot.index.persistence import IndexLayout, Manifest
from kshot.index.store import ExampleStore
from kshot.index.vectors import VectorIndex, exact_search
from kshot.selector.base import build_selector
from tests.selector.test_contract import (
    CORPUS,
    FILTERS,
    QUERIES,
    SEEDED,
    SELECTORS,
    allowed_texts,
    check_hygiene,
)

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

DIM = 32
N = 3_000


def clustered(n: int = N, seed: int = 0) -> np.ndarray:
    """Unit vectors around 30 centres, as real embeddings cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, DIM))
    points = centres[rng.integers(0, 30, n)] + 0.35 * rng.normal(size=(n, DIM))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def corpus(n: int = N) -> list[dict[str, object]]:
    return [
        {"input": f"row {i}", "label": "rare" if i % 500 == 7 else f"l{i % 5}", "id": f"r{i}"}
        for i in range(n)
    ]


# -- factory strings ------------------------------------------------------------------------------


def test_pq_parts_must_divide_the_dimension_and_the_error_names_the_valid_ones() -> None:
    assert pq_m_values(384)[-6:] == [32, 48, 64, 96, 128, 192, 384][-6:]
    with pytest.raises(ConfigError) as caught:
        validate_factory("IVF1024,PQ40", 384)
    message = str(caught.value)
    assert "PQ40" in message and "384" in message
    assert "valid M values: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 384" in message
    validate_factory("IVF1024,PQ48", 384)
    validate_factory("IVF64,PQ32x4", 384)
    with pytest.raises(ConfigError, match="1 to 16 bits"):
        validate_factory("IVF64,PQ48x20", 384)


def test_pq_without_inverted_lists_or_with_fast_scan_is_refused() -> None:
    # FAISS's flat PQ and fast-scan indexes take no search parameters, so no filter.
    with pytest.raises(ConfigError, match="'IVF1024,PQ48'"):
        validate_factory("PQ48", 384)
    with pytest.raises(ConfigError, match="use 'PQ48x4'"):
        validate_factory("IVF64,PQ48x4fs", 384)


def test_a_refine_stage_is_refused_with_the_reason() -> None:
    for factory in ("IVF1024,PQ48,RFlat", "IVF1024,PQ48,Refine(Flat)"):
        with pytest.raises(ConfigError, match="second float32 copy"):
            validate_factory(factory, 384)


def test_which_factories_keep_vectors_in_memory() -> None:
    assert [is_compressed(f) for f in ("Flat", "IVF64,Flat", "HNSW32,Flat")] == [False] * 3
    assert all(is_compressed(f) for f in ("SQ8", "IVF64,SQ8", "PQ16", "IVF64,PQ16x4", "OPQ8,PQ8"))
    assert holds_vectors("IVF64,Flat", mmap=False)
    assert not holds_vectors("Flat", mmap=True)
    assert not holds_vectors("IVF64,SQ8", mmap=False)


def test_a_bad_factory_fails_before_embedding() -> None:
    class Refuses(HashingEncoder):
        def encode(self, *args: object, **kwargs: object) -> np.ndarray:
            raise AssertionError("embedded before checking the factory")

    with pytest.raises(ConfigError, match="valid M values"):
        ExampleIndex.build(corpus(10), Refuses(DIM), factory="IVF2,PQ5")


def test_cli_reports_a_bad_factory_in_one_line(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in corpus(20)))
    out = tmp_path / "ix"
    command = [sys.executable, "-m", "kshot.cli", "index", "build", str(source)]
    command += ["--out", str(out), "--model", "hashing:32", "--factory", "IVF8,PQ5"]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "valid M values: 1, 2, 4, 8, 16, 32" in lines[0], done.stderr
    assert not out.exists()


def test_cli_help_names_the_compressed_factories_and_mmap() -> None:
    result = CliRunner().invoke(app, ["index", "build", "--help"])
    assert "IVF1024,PQ48" in result.stdout and "SQ8" in result.stdout
    assert "--mmap" in result.stdout


# -- building, saving, loading --------------------------------------------------------------------

#: (factory, mmap): compressed in memory, compressed and mapped, exact and mapped.
KINDS = [("IVF16,PQ8x4", False), ("SQ8", True), ("IVF16,SQ8", False), ("Flat", True)]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered()


@pytest.fixture(scope="module", params=KINDS, ids=lambda kind: f"{kind[0]}{'+mmap' * kind[1]}")
def saved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, vectors: np.ndarray
) -> tuple[Path, str, bool]:
    factory, mmap = request.param
    path = tmp_path_factory.mktemp("ix") / "index"
    index = ExampleIndex.build(
        corpus(), HashingEncoder(DIM), embeddings=vectors, factory=factory, path=path, mmap=mmap
    )
    index.close()
    return path, factory, mmap


def held_out_recall(index: ExampleIndex, vectors: np.ndarray) -> float:
    """Recall@10 of the selectors' vector search for fresh queries near the corpus."""
    rng = np.random.default_rng(5)
    queries = vectors[rng.choice(len(vectors), 100, replace=False)] + 0.2 * rng.normal(
        size=(100, DIM)
    )
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    _, exact = exact_search(queries, vectors, 10)
    with index.reading():
        _, slots = index.view.vector_search(queries, 10, None)
    return sum(len(set(a) & set(b)) for a, b in zip(slots, exact, strict=True)) / exact.size


def test_manifest_and_info_report_the_measured_recall(
    saved: tuple[Path, str, bool], vectors: np.ndarray
) -> None:
    path, factory, mmap = saved
    manifest = Manifest.read(IndexLayout(path).manifest)
    assert (manifest.factory, manifest.build_factory, manifest.mmap) == (factory, factory, mmap)
    with ExampleIndex.load(path, HashingEncoder(DIM), read_only=True) as index:
        info = index.info()
        assert info["recall_at_10"] == manifest.recall_at_10
        assert info["mmap"] is mmap
        assert info["vectors_in_memory"] is False
        measured = held_out_recall(index, vectors)
    if factory == "Flat":
        assert manifest.recall_at_10 is None and measured == 1.0
        return
    # Measured at build on held-out stored rows, it predicts what fresh queries get.
    assert manifest.recall_at_10 is not None and 0 < manifest.recall_at_10 <= 1
    assert abs(measured - manifest.recall_at_10) < 0.15
    if factory.startswith("IVF"):
        assert manifest.nprobe is not None and manifest.nprobe <= 16


def test_coarse_codes_report_their_lower_recall(vectors: np.ndarray) -> None:
    # 4 parts of 2 bits: the codes cannot tell neighbours apart, and the manifest says so.
    coarse = ExampleIndex.build(
        corpus(), HashingEncoder(DIM), embeddings=vectors, factory="IVF8,PQ4x2"
    )
    fine = ExampleIndex.build(corpus(), HashingEncoder(DIM), embeddings=vectors, factory="SQ8")
    assert coarse.recall_at_10 is not None and fine.recall_at_10 is not None
    assert coarse.recall_at_10 < 0.9 < fine.recall_at_10


def test_no_float32_copy_in_memory_and_an_mmap_load_maps_the_file(
    saved: tuple[Path, str, bool],
) -> None:
    path, _, mmap = saved
    with ExampleIndex.load(path, HashingEncoder(DIM), read_only=True) as index:
        assert not index.info()["vectors_in_memory"]
        assert index._vectors.mapped is mmap


def test_every_selector_answers_with_exact_scores_like_the_exact_index(
    saved: tuple[Path, str, bool], vectors: np.ndarray
) -> None:
    path, factory, _ = saved
    exact = ExampleIndex.build(corpus(), HashingEncoder(DIM), embeddings=vectors)
    texts = [f"row {i}" for i in range(0, N, 157)]
    wanted = {"label": ["l1", "l2", "rare"]}
    with ExampleIndex.load(path, HashingEncoder(DIM), read_only=True) as index:
        for name in SELECTORS:
            selector = build_selector(index, name, SEEDED.get(name, {}))
            reference = build_selector(exact, name, SEEDED.get(name, {}))
            same = 0
            for text in texts:
                found = selector.select(text, 4, filter=wanted)
                assert len(found) == 4
                assert all(s.example.label in wanted["label"] for s in found)
                want = reference.select(text, 4, filter=wanted)
                same += [s.example.id for s in found] == [s.example.id for s in want]
                if name == "similarity":
                    rows = [int(s.example.id[1:]) for s in found]
                    query = HashingEncoder(DIM).encode([text])[0]
                    np.testing.assert_allclose(
                        [s.score for s in found], vectors[rows] @ query, rtol=0, atol=1e-5
                    )
            if "PQ" not in factory:  # SQ8's 8 bits rank the re-scored candidates right
                assert same == len(texts), name


def test_a_filter_allowing_few_examples_still_returns_k(saved: tuple[Path, str, bool]) -> None:
    path, _, _ = saved
    with ExampleIndex.load(path, HashingEncoder(DIM), read_only=True) as index:
        for name in ("similarity", "mmr", "dpp"):
            found = build_selector(index, name).select("row 3", 4, filter={"label": "rare"})
            assert len(found) == 4 and {s.example.label for s in found} == {"rare"}


@pytest.mark.parametrize("kind", [("SQ8", False), ("Flat", True)], ids=["SQ8", "Flat+mmap"])
def test_the_selector_contract_holds_over_compressed_and_mapped_indexes(
    tmp_path: Path, kind: tuple[str, bool]
) -> None:
    factory, mmap = kind
    built = ExampleIndex.build(
        CORPUS, HashingEncoder(64), factory=factory, mmap=mmap, path=tmp_path / "ix"
    )
    built.close()
    reference = ExampleIndex.build(CORPUS, HashingEncoder(64))
    with ExampleIndex.load(tmp_path / "ix", HashingEncoder(64), read_only=True) as index:
        for name in SELECTORS:
            selector = build_selector(index, name, SEEDED.get(name, {}))
            exact = build_selector(reference, name, SEEDED.get(name, {}))
            for flt, keep in FILTERS:
                for query in QUERIES:
                    found = selector.select(query, 5, filter=flt)
                    check_hygiene(query, found, 5)
                    assert all(keep(s.example) for s in found)
                    assert len(found) == min(5, len(allowed_texts(query, keep)))
                    want = exact.select(query, 5, filter=flt)
                    assert [s.example.id for s in found] == [s.example.id for s in want]
                    np.testing.assert_allclose(
                        [s.score for s in found], [s.score for s in want], atol=1e-5
                    )


# -- writes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: f"{kind[0]}{'+mmap' * kind[1]}")
def test_writes_to_a_compressed_or_mapped_index_survive_save_and_load(
    tmp_path: Path, vectors: np.ndarray, kind: tuple[str, bool], caplog: pytest.LogCaptureFixture
) -> None:
    factory, mmap = kind
    path = tmp_path / "ix"
    ExampleIndex.build(
        corpus(), HashingEncoder(DIM), embeddings=vectors, factory=factory, path=path, mmap=mmap
    ).close()
    fresh = clustered(3, seed=9)
    with ExampleIndex.load(path, HashingEncoder(DIM)) as index:
        # FAISS aborts the process on changing a mapped index: the first write copies it.
        index.add([{"input": f"new {i}", "id": f"n{i}"} for i in range(3)], embeddings=fresh)
        assert index._vectors.mapped is False
        index.delete(["r0", "r1"])
        index.update("r2", label="changed")
        index.save()
    with (
        ExampleIndex.load(path, HashingEncoder(DIM), read_only=True) as index,
        caplog.at_level(logging.WARNING),
    ):
        assert len(index) == N + 1
        assert index._vectors.mapped is mmap
        assert index.get(["r2"])[0].label == "changed"
        with index.reading():
            scores, slots = index.view.vector_search(fresh, 1, None)
        assert [index.view.examples_at([int(s)])[0].id for s in slots[:, 0]] == ["n0", "n1", "n2"]
        np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
        found = build_selector(index, "mmr").select("row 5", 10)
        assert not {"r0", "r1"} & {s.example.id for s in found}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_corrupt_compressed_file_is_rebuilt_from_the_store(
    tmp_path: Path, vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ix"
    built = ExampleIndex.build(
        corpus(), HashingEncoder(DIM), embeddings=vectors, factory="IVF16,SQ8", path=path
    )
    recall = built.recall_at_10
    built.close()
    IndexLayout(path).vectors.write_bytes(b"not faiss")
    with caplog.at_level(logging.WARNING), ExampleIndex.load(path, HashingEncoder(DIM)) as index:
        assert index.factory == "IVF16,SQ8" and index.recall_at_10 == recall
        assert not index.info()["vectors_in_memory"]
        found = build_selector(index, "similarity").select("row 9", 3)
        assert len(found) == 3
    assert any("rebuilt it from the stored embeddings" in r.message for r in caplog.records)


def test_store_embeddings_by_row(tmp_path: Path, vectors: np.ndarray) -> None:
    with ExampleIndex.load(
        ExampleIndex.build(
            corpus(50), HashingEncoder(DIM), embeddings=vectors[:50], path=tmp_path / "ix"
        ).path,  # type: ignore[arg-type]
        HashingEncoder(DIM),
        read_only=True,
    ) as index:
        store: ExampleStore = index._store
        rows = index._columns.rows[[3, 40, 7]]
        np.testing.assert_allclose(store.embeddings(rows.tolist()), vectors[[3, 40, 7]], atol=1e-6)
        with pytest.raises(KeyError):  # a row the store does not hold is a bug, not a zero
            store.embeddings([10**9])


def test_a_mapped_index_refuses_nothing_it_can_copy(tmp_path: Path, vectors: np.ndarray) -> None:
    flat = VectorIndex.create(DIM, "Flat")
    flat.add(np.arange(100, dtype=np.int64), vectors[:100])
    flat.save(tmp_path / "v.faiss")
    mapped = VectorIndex.load(tmp_path / "v.faiss", "Flat", mmap=True)
    assert mapped.mapped
    held = mapped.row_ids()
    assert held is not None and len(held) == 100
    mapped.remove(np.array([5], np.int64))
    mapped.add(np.array([500], np.int64), vectors[100:101])
    assert not mapped.mapped and mapped.ntotal == 100
