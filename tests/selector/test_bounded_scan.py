"""The byte-code scan keeps every true top-n member: checked against brute force, margin included.

The corpora are built to defeat the codes: tight clusters whose members score within the
quantisation error of each other (so the codes misrank them), exact duplicates at different
slots (ties, which must break by slot), tombstones, filters and exclusions. The reference scores
every allowed slot in float64 and sorts by score, ties by slot. One test turns the margin off and
shows that the same comparison then fails: the codes alone lose true neighbours on these corpora,
so the exactness test is not passing by luck.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import kshot.selector.scan as scan
from kshot.bench.lookup import LookupEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.slots import SlotView
from kshot.selector.codes import ByteCodes
from kshot.selector.fetch import nearest
from kshot.types import Example

DIM = 32


def clustered(seed: int, n: int, spread: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight clusters (a fifth of them exact copies of others) and queries."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, DIM))
    x = centers[rng.integers(6, size=n)] + spread * rng.normal(size=(n, DIM))
    copies = rng.choice(n, size=n // 5, replace=False)
    x[copies] = x[rng.choice(n, size=len(copies))]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centers[rng.integers(6, size=12)] + spread * rng.normal(size=(12, DIM))
    q = np.concatenate([q, x[rng.choice(n, size=4)]])  # queries sitting on stored (tied) vectors
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def build(vectors: np.ndarray) -> ExampleIndex:
    examples = [
        Example(input=f"text {i}", label=f"L{i % 3}", metadata={"b": i % 5}, id=f"x{i}")
        for i in range(len(vectors))
    ]
    return ExampleIndex.build(examples, LookupEncoder(name="table", dim=DIM), embeddings=vectors)


def brute_force(
    view: SlotView, queries: np.ndarray, n: int, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every allowed slot scored in float64, best first, ties by slot; padded like ``nearest``."""
    _, count, read, alive = view.slot_matrix()  # type: ignore[misc]
    matrix = read(0, count).astype(np.float64)
    allowed = mask if mask is not None else alive
    live = np.flatnonzero(np.ones(count, bool) if allowed is None else allowed)
    slots = np.full((len(queries), n), -1, np.int64)
    scores = np.full((len(queries), n), -np.inf)
    for i, q in enumerate(queries.astype(np.float64)):
        s = (matrix[live] * q).sum(axis=1)
        order = np.lexsort((live, -s))[:n]
        slots[i, : len(order)] = live[order]
        scores[i, : len(order)] = s[order]
    return scores, slots


class Passes:
    """Counts the code searches and the candidate depths they asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.depths: list[int] = []
        self.general = 0
        real_search = ByteCodes.search
        real_vector_search = SlotView.vector_search

        def search(codes: ByteCodes, query_bytes: Any, m: int, valid: Any) -> Any:
            self.depths.append(m)
            return real_search(codes, query_bytes, m, valid)

        def vector_search(view: SlotView, *args: Any, **kwargs: Any) -> Any:
            self.general += 1
            return real_vector_search(view, *args, **kwargs)

        monkeypatch.setattr(ByteCodes, "search", search)
        monkeypatch.setattr(SlotView, "vector_search", vector_search)


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Passes:
    return Passes(monkeypatch)


@pytest.fixture(params=[0, 1, 2])
def index(request: pytest.FixtureRequest) -> Iterator[tuple[ExampleIndex, np.ndarray]]:
    vectors, queries = clustered(request.param, 500 + 150 * request.param)
    with build(vectors) as built:
        built.delete([f"x{i}" for i in range(0, len(vectors), 17)])
        yield built, queries


REQUESTS: list[tuple[dict[str, Any] | None, tuple[str, ...]]] = [
    (None, ()),
    ({"label": ["L0", "L2"]}, ()),
    ({"b": [1, 2, 3]}, ("x3", "x4", "x40")),
]


@pytest.mark.parametrize(("flt", "exclude"), REQUESTS)
def test_the_bounded_scan_returns_the_brute_force_top_n(
    index: tuple[ExampleIndex, np.ndarray],
    passes: Passes,
    flt: dict[str, Any] | None,
    exclude: tuple[str, ...],
) -> None:
    built, queries = index
    view = built.view
    with view.reading():
        mask = view.resolve(flt, exclude)
        for n in (1, 4, 9, 40, 130, 2000):
            for rows in (slice(0, 1), slice(5, 8), slice(12, 16)):  # single queries and batches
                got_scores, got_slots = nearest(view, queries[rows], n, mask)
                want_scores, want_slots = brute_force(view, queries[rows], n, mask)
                np.testing.assert_array_equal(got_slots, want_slots)
                np.testing.assert_allclose(got_scores, want_scores, rtol=0, atol=1e-12)
    assert passes.general == 0  # every request took the scan
    # The corpus is hard enough that some queries needed a wider second pass.
    assert len(set(passes.depths)) > 1


def test_without_the_margin_the_codes_lose_true_neighbours(
    index: tuple[ExampleIndex, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    built, queries = index
    real = ByteCodes.queries

    def no_margin(codes: ByteCodes, vectors: np.ndarray) -> Any:
        found = real(codes, vectors)
        return dataclasses.replace(found, margin=np.zeros_like(found.margin))

    monkeypatch.setattr(ByteCodes, "queries", no_margin)
    monkeypatch.setattr(scan, "_EXTRA", 0)
    view = built.view
    lost = 0
    with view.reading():
        for q in queries:
            for n in (4, 9):
                _, got = nearest(view, q[None], n, None)
                _, want = brute_force(view, q[None], n, None)
                lost += not np.array_equal(got, want)
    assert lost > 0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_margin_bounds_every_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors, queries = clustered(seed, 300, spread=[0.02, 0.3, 1.0, 5.0][seed])
    codes = ByteCodes.build(vectors[:200])
    # Appends outside the coded ranges are clipped; their residuals enter the bound.
    outside = vectors[200:] * rng.uniform(0.5, 1.5, size=(100, 1)).astype(np.float32)
    codes = codes.extended(outside) or ByteCodes.build(np.concatenate([vectors[:200], outside]))
    stored = np.concatenate([vectors[:200], outside]).astype(np.float64)
    prepared = codes.queries(queries)
    found, positions = codes.search(prepared.bytes, codes.n, None)
    approx = prepared.offset[:, None] + prepared.alpha[:, None] * found
    exact = np.take_along_axis(queries.astype(np.float64) @ stored.T, positions, axis=1)
    assert (np.abs(exact - approx) <= prepared.margin[:, None]).all()
    # The bound is tight enough to prune: a small fraction of the score range.
    assert prepared.margin.max() < 0.1


def test_appends_outside_the_ranges_re_encode_and_stay_exact(passes: Passes) -> None:
    vectors, queries = clustered(5, 400)
    with build(vectors[:300]) as built:
        view = built.view
        with view.reading():
            nearest(view, queries[:1], 4, None)
            owner = view.slot_matrix()[0]  # type: ignore[index]
            first = scan._CODES[owner]
        # New vectors in the same clusters fit the ranges: the codes are extended, same ranges.
        built.add(
            [Example(input=f"more {i}", id=f"m{i}") for i in range(50)], embeddings=vectors[300:350]
        )
        with view.reading():
            nearest(view, queries[:1], 4, None)
            grown = scan._CODES[owner]
        assert grown.n == 350 and grown.lo is first.lo
        # A vector along a new direction leaves them: everything is encoded again.
        odd = np.zeros((1, DIM), np.float32)
        odd[0, 0] = 1.0
        built.add([Example(input="odd one", id="odd")], embeddings=odd)
        with view.reading():
            got = nearest(view, np.concatenate([odd, queries[:3]]), 6, None)
            fresh = scan._CODES[owner]
            want = brute_force(view, np.concatenate([odd, queries[:3]]), 6, None)
        assert fresh.n == 351 and fresh.lo is not first.lo
        np.testing.assert_array_equal(got[1], want[1])
        assert int(got[1][0, 0]) == 350  # the odd vector is its own best match
    assert passes.general == 0
