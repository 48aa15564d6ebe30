"""ExampleIndex.tune: recall@10 measured on real queries, nprobe tuned, kept in the manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kshot.errors import ConfigError, IndexFormatError, QueryError
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.persistence import Manifest
from kshot.index.vectors import exact_search

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

DIM = 32


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    points = centres[rng.integers(0, 20, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def corpus() -> tuple[list[dict[str, str]], np.ndarray]:
    vectors = _clustered(2000, 0)
    return [{"input": f"row {i}", "id": f"r{i}"} for i in range(len(vectors))], vectors


def _recall(index: ExampleIndex, queries: np.ndarray, stored: np.ndarray) -> float:
    _, exact = exact_search(queries, stored, 10)
    with index.reading():
        _, slots = index.view.vector_search(queries, 10, None)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(slots, exact, strict=True))
    return hits / exact.size


def test_tune_measures_recall_on_the_queries_and_records_it(tmp_path, corpus) -> None:
    rows, vectors = corpus
    index = ExampleIndex.build(
        rows, HashingEncoder(DIM), embeddings=vectors, factory="IVF64,Flat", path=tmp_path / "i"
    )
    assert index.info()["recall_queries"] is None  # measured on stored rows at build
    queries = _clustered(100, 1)
    recall = index.tune(queries, target=0.99)
    assert recall >= 0.99 or index.info()["nprobe"] == 64
    # The figure is what the selectors' vector search now gets on those queries.
    assert recall == pytest.approx(_recall(index, queries, vectors))
    assert index.info()["recall_at_10"] == recall
    assert index.info()["recall_queries"] == 100
    nprobe = index.info()["nprobe"]
    index.save()
    index.close()
    manifest = json.loads((tmp_path / "i" / "manifest.json").read_text())
    assert (manifest["recall_at_10"], manifest["recall_queries"]) == (recall, 100)
    assert manifest["nprobe"] == nprobe
    with ExampleIndex.load(tmp_path / "i", read_only=True) as loaded:
        info = loaded.info()
        assert (info["recall_at_10"], info["recall_queries"], info["nprobe"]) == (
            recall,
            100,
            nprobe,
        )


def test_a_lower_target_probes_fewer_lists_but_never_under_sixteen(corpus) -> None:
    rows, vectors = corpus
    index = ExampleIndex.build(rows, HashingEncoder(DIM), embeddings=vectors, factory="IVF64,Flat")
    queries = _clustered(100, 2)
    index.tune(queries, target=1.0)
    most = index.info()["nprobe"]
    index.tune(queries, target=0.01)
    assert index.info()["nprobe"] == 16 <= most


def test_texts_are_encoded_and_an_exact_index_has_recall_one(corpus) -> None:
    rows, _ = corpus
    index = ExampleIndex.build(rows[:50], HashingEncoder(DIM))
    assert index.factory == "Flat"
    assert index.tune(["row 3", "some other words"]) == 1.0
    assert index.info()["recall_queries"] == 2


def test_a_rebuilt_vector_file_forgets_the_query_count(tmp_path, corpus) -> None:
    rows, vectors = corpus
    path = tmp_path / "i"
    index = ExampleIndex.build(
        rows, HashingEncoder(DIM), embeddings=vectors, factory="IVF64,Flat", path=path
    )
    index.tune(_clustered(50, 3))
    index.save()
    index.close()
    (path / "vectors.faiss").unlink()
    with ExampleIndex.load(path, read_only=True) as loaded:
        assert loaded.info()["recall_queries"] is None  # rebuilt: measured on stored rows


@pytest.mark.parametrize(
    ("queries", "target", "error", "message"),
    [
        (np.zeros((0, DIM), np.float32), None, QueryError, "at least one query"),
        (np.zeros((2, DIM + 1), np.float32), None, QueryError, "shape"),
        ([""], None, QueryError, "empty"),
        (["fine"], 0.0, ConfigError, "target must be in"),
        (["fine"], 1.5, ConfigError, "target must be in"),
    ],
)
def test_bad_queries_and_targets_are_refused(corpus, queries, target, error, message) -> None:
    rows, _ = corpus
    index = ExampleIndex.build(rows[:50], HashingEncoder(DIM))
    with pytest.raises(error, match=message):
        index.tune(queries, target=target)
    assert index.info()["recall_queries"] is None


def test_an_index_smaller_than_k_is_refused() -> None:
    index = ExampleIndex.build([{"input": f"t {i}"} for i in range(5)], HashingEncoder(DIM))
    with pytest.raises(ConfigError, match="needs at least 10"):
        index.tune(["t 1"])


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "100"])
def test_the_manifest_refuses_a_bad_query_count(bad: object) -> None:
    fields = {"kshot_version": "0", "encoder": "e", "dim": 4, "factory": "Flat", "count": 1,
              "generation": 1, "vectors_sha256": "x"}  # fmt: skip
    with pytest.raises(IndexFormatError, match="recall_queries"):
        Manifest(**fields, recall_queries=bad)  # type: ignore[arg-type]


def test_a_graph_index_is_measured_not_taken_as_exact(corpus) -> None:
    rows, vectors = corpus
    index = ExampleIndex.build(rows, HashingEncoder(DIM), embeddings=vectors, factory="HNSW8,Flat")
    queries = _clustered(100, 4)
    recall = index.tune(queries)
    assert recall < 1.0  # an 8-link graph on these vectors misses neighbours
    assert recall == pytest.approx(_recall(index, queries, vectors))
    assert index.info()["recall_queries"] == 100
