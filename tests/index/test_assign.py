"""SharedAssignment: IVF lists computed by several threads equal FAISS's own assignment."""

from __future__ import annotations

import threading
from typing import Any

import faiss
import numpy as np
import pytest

from kshot.errors import ConfigError
from kshot.index.assign import SharedAssignment
from kshot.index.vector_build import build_vectors
from kshot.index.vectors import VectorIndex

DIM = 16


def _unit(n: int, seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    unit: np.ndarray[Any, np.dtype[np.float32]] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def _trained(vectors: np.ndarray[Any, np.dtype[np.float32]], factory: str) -> VectorIndex:
    index = VectorIndex.create(DIM, factory)
    index.train(vectors[:2000])
    return index


def test_helpers_in_several_threads_assign_what_the_quantizer_answers() -> None:
    vectors = _unit(5000, 0)
    index = _trained(vectors, "IVF32,Flat")
    shared = SharedAssignment(vectors, chunk=97)  # many small chunks, a short last one
    helpers = [threading.Thread(target=shared.help) for _ in range(3)]
    for helper in helpers:
        helper.start()
    shared.open(index.quantizer)
    lists = shared.lists()
    for helper in helpers:
        helper.join(10)
    _, expected = index.quantizer.search(vectors, 1)
    np.testing.assert_array_equal(lists, expected[:, 0])


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF16,PQ4", "IVF16,SQ8"])
def test_adding_with_the_shared_assignment_builds_the_index_add_builds(factory: str) -> None:
    vectors = _unit(3000, 1)
    rows = np.arange(10, 3010, dtype=np.int64)
    plain = _trained(vectors, factory)
    shared_index = VectorIndex(
        faiss.deserialize_index(faiss.serialize_index(plain._index)), factory
    )
    plain.add(rows, vectors)
    shared = SharedAssignment(vectors, chunk=500)
    shared.open(shared_index.quantizer)
    shared_index.add_assigned(rows, vectors, shared.lists())
    assert bytes(faiss.serialize_index(plain._index)) == bytes(
        faiss.serialize_index(shared_index._index)
    )


def test_an_index_without_lists_has_no_quantizer_to_share() -> None:
    assert VectorIndex.create(DIM, "Flat").quantizer is None
    assert VectorIndex.create(DIM, "IVF8,Flat").quantizer is None  # not trained yet
    assert VectorIndex.create(DIM, "OPQ4,IVF8,PQ4").quantizer is None  # a transform first


def test_a_helper_waiting_for_a_build_that_fails_is_let_go() -> None:
    vectors = _unit(100, 2)
    shared = SharedAssignment(vectors)
    helper = threading.Thread(target=shared.help)
    helper.start()
    with pytest.raises(ConfigError, match="factory"):
        build_vectors(DIM, np.arange(100), vectors, "Nonsense12", 0.95, 0, assignment=shared)
    helper.join(10)
    assert not helper.is_alive()


def test_an_error_in_a_helper_reaches_the_owner() -> None:
    class Broken:
        def search(self, x: Any, k: int) -> Any:
            raise RuntimeError("quantizer gone")

    shared = SharedAssignment(_unit(100, 3), chunk=10)
    shared.open(Broken())
    helper = threading.Thread(target=shared.help)
    helper.start()
    with pytest.raises(RuntimeError, match="quantizer gone"):
        shared.lists()
    helper.join(10)
    assert not helper.is_alive()
