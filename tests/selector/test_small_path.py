"""The small-index fast path (a bounded scan of byte codes) answers what the general path answers.

The general path asks the index's vector search (FAISS for a few queries, BLAS blocks for a
batch); the fast path scans cached byte codes of the vectors and re-scores a candidate set proven
to hold the exact top-n (see ``test_bounded_scan.py``). Every vector-backed selector
must return the same ids, in the same order, with the same scores, on seeded random corpora
built to be awkward: repeated inputs, tombstones after deletes and updates, dense and narrow
filters, exclusions, near-duplicate pruning, k past the corpus. The spies check that each path
really ran, so the comparison cannot pass vacuously.

Exact ties between different examples are the one place the paths may differ: FAISS cuts its
candidate list among tied scores in no particular order, the scan by slot. There the fast path
is checked against a brute-force reference of the rule the selectors promise (ties by insertion
order).
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np
import pytest

import kshot.selector.scan as scan
from kshot.bench.lookup import LookupEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.slots import SlotView
from kshot.selector import build_selector
from kshot.selector.codes import ByteCodes
from kshot.types import Example, Scored

DIM = 24
VECTOR_SELECTORS: list[tuple[str, dict[str, Any]]] = [
    ("similarity", {}),
    ("similarity", {"dedupe_threshold": 0.9}),
    ("mmr", {"fetch_k": 12, "lambda": 0.4}),
    ("dpp", {"fetch_k": 10}),
    ("coverage", {"pool": "similarity", "fetch_k": 9}),
    ("hybrid", {"fetch_k": 10}),
    ("balanced", {"base": "similarity", "fetch_k": 10, "ensure_labels": ["L1"]}),
]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    unit_rows: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit_rows


def awkward_corpus(
    seed: int, n: int, *, ties: bool = False
) -> tuple[list[Example], np.ndarray, LookupEncoder, list[str]]:
    """Random unit vectors and repeated inputs; with ``ties``, one vector under several texts."""
    rng = np.random.default_rng(seed)
    vectors = unit(rng, n)
    if ties:
        twins = rng.choice(n, size=n // 5, replace=False)
        vectors[twins] = vectors[rng.choice(n // 10, size=len(twins))]
    words = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(words, size=4)) + f" {i}" for i in range(n)]
    for i in rng.choice(n, size=n // 10, replace=False):
        texts[i] = texts[int(rng.integers(n))]  # inputs repeated verbatim
    examples = [
        Example(input=t, label=f"L{i % 4}", metadata={"bucket": i % 9}, id=f"x{i}")
        for i, t in enumerate(texts)
    ]
    query_vectors = np.concatenate([unit(rng, 6), vectors[rng.choice(n, size=4)]])
    queries = [f"query {i} " + " ".join(rng.choice(words, size=3)) for i in range(10)]
    queries.append(texts[3])  # a query equal to a stored input: that example must not come back
    query_vectors = np.concatenate([query_vectors, vectors[3:4]])
    table = dict(zip(queries, query_vectors, strict=True))
    return examples, vectors, LookupEncoder(table=table, name="table", dim=DIM), queries


def picks(found: list[Scored]) -> list[tuple[str, float]]:
    return [(s.example.id, s.score) for s in found]


def assert_same(fast: list[list[Scored]], general: list[list[Scored]]) -> None:
    assert len(fast) == len(general)
    for a, b in zip(fast, general, strict=True):
        assert [s.example.id for s in a] == [s.example.id for s in b]
        assert [s.score for s in a] == pytest.approx([s.score for s in b], abs=1e-9)


class Paths:
    """Runs a request with the fast path on, then off, counting the index searches of each."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.searches = 0
        real = SlotView.vector_search

        def counted(view: SlotView, *args: Any, **kwargs: Any) -> Any:
            self.searches += 1
            return real(view, *args, **kwargs)

        monkeypatch.setattr(SlotView, "vector_search", counted)

    def both(self, run: Any) -> tuple[Any, Any, int, int]:
        self.searches = 0
        fast = run()
        fast_searches = self.searches
        with self.monkeypatch.context() as patch:
            patch.setattr(scan, "SCAN_MAX_CODES", 0)  # every index is "large": general path
            self.searches = 0
            general = run()
            general_searches = self.searches
        return fast, general, fast_searches, general_searches


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    return Paths(monkeypatch)


@pytest.fixture(params=[0, 1, 2])
def corpus(request: pytest.FixtureRequest) -> Iterator[tuple[ExampleIndex, list[str]]]:
    examples, vectors, encoder, queries = awkward_corpus(request.param, 300 + 70 * request.param)
    with ExampleIndex.build(examples, encoder, embeddings=vectors) as index:
        yield index, queries


@pytest.mark.parametrize(("name", "params"), VECTOR_SELECTORS)
def test_fast_path_equals_general_path(
    corpus: tuple[ExampleIndex, list[str]], paths: Paths, name: str, params: dict[str, Any]
) -> None:
    index, queries = corpus
    assert index.factory == "Flat"
    selector = build_selector(index, name, params)
    for k in (1, 4, 9):
        for flt, exclude in [
            (None, ()),
            ({"label": ["L0", "L2"]}, ()),  # dense: scanned
            ({"bucket": 3, "label": "L3"}, ()),  # narrow: gathered by the index, both paths
            (None, ("x1", "x2", "x5")),
        ]:
            options = {"filter": flt, "exclude": exclude}
            for query in queries:
                fast, general, _, general_searches = paths.both(
                    lambda q=query, o=options, kk=k: [selector.select(q, kk, **o)]
                )
                assert_same(fast, general)
                assert general_searches > 0
            fast, general, _, _ = paths.both(
                lambda o=options, kk=k: selector.select_batch(queries[:5], kk, **o)
            )
            assert_same(fast, general)


def test_the_fast_path_runs_and_the_general_path_is_what_it_replaces(
    corpus: tuple[ExampleIndex, list[str]], paths: Paths
) -> None:
    index, queries = corpus
    selector = build_selector(index, "similarity")
    fast, general, fast_searches, general_searches = paths.both(
        lambda: [selector.select(q, 4) for q in queries]
    )
    assert_same(fast, general)
    assert fast_searches == 0 and general_searches >= len(queries)
    # A batch of many queries goes to the index's blocked search on both paths.
    _, _, batch_searches, _ = paths.both(lambda: selector.select_batch(queries, 4))
    assert batch_searches >= 1


def test_k_past_the_corpus_returns_every_distinct_input(paths: Paths) -> None:
    examples, vectors, encoder, queries = awkward_corpus(7, 40)
    with ExampleIndex.build(examples, encoder, embeddings=vectors) as index:
        selector = build_selector(index, "similarity")
        fast, general, fast_searches, _ = paths.both(lambda: [selector.select(queries[0], 100)])
        assert fast_searches == 0
        assert_same(fast, general)
        distinct = len({ex.input.lower() for ex in examples})
        assert len(fast[0]) == distinct


def test_writes_extend_the_cached_codes_and_tombstones_never_come_back(paths: Paths) -> None:
    examples, vectors, encoder, queries = awkward_corpus(3, 200)
    with ExampleIndex.build(examples[:150], encoder, embeddings=vectors[:150]) as index:
        selector = build_selector(index, "similarity")
        selector.select(queries[0], 4)
        view = index.view
        owner, _, _, _ = view.slot_matrix()  # type: ignore[misc]
        first = scan._CODES[owner]
        assert first.n == 150
        index.add(examples[150:], embeddings=vectors[150:])
        best = [s.example.id for s in selector.select(queries[-2], 3)]
        # Appended slots give new codes over all 200 slots (a search on the old ones is left
        # alone), and every slot's vector lies within the recorded residual of its code.
        codes = scan._CODES[owner]
        assert codes is not first and codes.n == 200 and first.n == 150
        _, n, read, _ = view.slot_matrix()  # type: ignore[misc]
        np.testing.assert_allclose(read(0, n), vectors[:200], atol=1e-6)
        assert_codes_hold(codes, read(0, n))
        index.delete(best[:2])
        encoder.table["an updated text for seven"] = vectors[11]
        index.update("x7", input="an updated text for seven")
        for query in queries:
            fast, general, fast_searches, _ = paths.both(lambda q=query: [selector.select(q, 6)])
            assert fast_searches == 0
            assert_same(fast, general)
            assert not {s.example.id for s in fast[0]} & set(best[:2])


def assert_codes_hold(codes: ByteCodes, vectors: np.ndarray) -> None:
    """Each row of ``vectors`` is within ``codes.residual`` of what its stored code decodes to."""
    width = codes.dim + codes.pad
    held = faiss.rev_swig_ptr(codes.index.codes.data(), codes.n * width).reshape(codes.n, width)
    decoded = codes.lo + codes.step * held[:, : codes.dim].astype(np.float64)
    residuals = np.linalg.norm(vectors.astype(np.float64) - decoded, axis=1)
    assert residuals.max() <= codes.residual + 1e-12
    # The pad bytes bring every code to the same sum, which is what lets FAISS rank by it.
    assert (held.astype(np.int64).sum(axis=1) == codes.total).all()


def test_the_cached_codes_go_with_their_index() -> None:
    examples, vectors, encoder, queries = awkward_corpus(5, 60)
    index = ExampleIndex.build(examples, encoder, embeddings=vectors)
    build_selector(index, "similarity").select(queries[0], 4)
    owner = index.view.slot_matrix()[0]  # type: ignore[index]
    assert owner in scan._CODES
    gone = weakref.ref(owner)
    index.close()
    del index, owner
    gc.collect()
    # The cache holds its key weakly: the index's columns and their codes are collected with it.
    assert gone() is None


def test_approximate_and_large_indexes_take_the_general_path(paths: Paths) -> None:
    examples, vectors, encoder, queries = awkward_corpus(4, 400)
    with ExampleIndex.build(examples, encoder, embeddings=vectors, factory="IVF4,Flat") as ivf:
        assert ivf.view.slot_matrix() is None
        _, _, fast_searches, _ = paths.both(
            lambda: [build_selector(ivf, "similarity").select(q, 4) for q in queries]
        )
        assert fast_searches == len(queries)


def reference_similarity(index: ExampleIndex, query: str, k: int) -> list[tuple[str, float]]:
    """Every live example scored in float64, best first, ties by slot, then the hygiene rules."""
    view = index.view
    with view.reading():
        _, n, read, alive = view.slot_matrix()  # type: ignore[misc]
        matrix = read(0, n)
        vector = view.encode_queries([query])[0].astype(np.float64)
        scores = matrix.astype(np.float64) @ vector
        live = np.flatnonzero(alive if alive is not None else np.ones(len(matrix), bool))
        order = live[np.lexsort((live, -scores[live]))]
        banned = set(view.slots_matching_text(query))
        seen: set[int] = set()
        kept: list[int] = []
        for slot in order.tolist():
            code = view.slot_text_code(slot)
            if slot in banned or code in seen:
                continue
            seen.add(code)
            kept.append(slot)
            if len(kept) == k:
                break
        found = view.examples_at(kept)
    return [(ex.id, float(scores[s])) for ex, s in zip(found, kept, strict=True)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_with_exact_ties_the_fast_path_breaks_them_by_insertion_order(
    seed: int, paths: Paths
) -> None:
    examples, vectors, encoder, queries = awkward_corpus(seed, 250, ties=True)
    # Queries that sit on tied vectors, so ties fall inside and at the edge of the candidates.
    tied_queries = [f"on {i}" for i in range(0, 250, 25)]
    encoder.table.update({q: vectors[int(q.split()[1])] for q in tied_queries})
    with ExampleIndex.build(examples, encoder, embeddings=vectors) as index:
        index.delete(["x3", "x50"])
        selector = build_selector(index, "similarity")
        for query in queries + tied_queries:
            for k in (1, 5, 12):
                paths.searches = 0
                got = picks(selector.select(query, k))
                assert paths.searches == 0
                want = reference_similarity(index, query, k)
                assert [i for i, _ in got] == [i for i, _ in want]
                assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)
