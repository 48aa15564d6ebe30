"""Fast paths against slow references and against LangChain, on small random data.

Exact search must return the same top-k as a plain sort; the approximate index must reach its
recall target; Jaccard must equal a plain Python set computation; MMR must pick what LangChain's
``maximal_marginal_relevance`` picks; the similarity selector must return LangChain FAISS's top-k
on the same embeddings. No timing assertions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest

from kshot._ranking import mmr_batch, top_k
from kshot.index.example_index import ExampleIndex
from kshot.index.lexical import LexicalIndex, tokenize
from kshot.index.vectors import VectorIndex, choose_factory, exact_search
from kshot.selector.base import build_selector

DIM = 32


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, dim: int = DIM, centres: int = 50) -> np.ndarray:
    c = unit(rng, centres, dim)
    x = c[rng.integers(0, centres, n)] + rng.normal(0, 0.15, (n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Plain stable sort: descending score, ties by ascending position."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]


class TableEncoder:
    """Texts -> fixed vectors (the comparison's 'query vector in hand')."""

    def __init__(self, table: dict[str, np.ndarray], dim: int = DIM) -> None:
        self.table = table
        self._dim = dim

    @property
    def name(self) -> str:
        return f"table:{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool | None = None
    ) -> np.ndarray:
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


WORDS = [
    "card",
    "transfer",
    "fee",
    "pin",
    "account",
    "money",
    "cash",
    "top",
    "up",
    "pending",
    "arrived",
    "delivered",
    "reset",
    "close",
    "delete",
    "data",
    "international",
    "cost",
    "charged",
    "why",
    "when",
    "how",
    "my",
    "the",
    "a",
    "is",
    "has",
    "not",
    "yet",
    "still",
]


def sentences(rng: random.Random, n: int) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 9)))
        text = f"{text} {len(out)}"  # distinct inputs: kshot drops repeated inputs
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# --- exact and approximate vector search ------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 4, 10, 64])
def test_exact_search_equals_sort(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    vectors, queries = unit(rng, 500), unit(rng, 20)
    scores, positions = exact_search(queries, vectors, k)
    full = queries @ vectors.T
    np.testing.assert_array_equal(positions, reference_top_k(full, k))
    np.testing.assert_allclose(scores, np.take_along_axis(full, positions, 1), rtol=1e-6)


def test_exact_search_ties_break_by_position() -> None:
    rng = np.random.default_rng(0)
    base = unit(rng, 10)
    vectors = np.repeat(base, 7, axis=0)  # every vector 7 times
    perm = rng.permutation(len(vectors))
    vectors = vectors[perm]
    _, positions = exact_search(base, vectors, 10)
    full = base @ vectors.T
    np.testing.assert_array_equal(positions, reference_top_k(full, 10))


@pytest.mark.parametrize("seed", range(3))
def test_top_k_equals_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 20, (8, 3000)).astype(np.float64)  # many ties
    np.testing.assert_array_equal(top_k(scores, 12), reference_top_k(scores, 12))
    for row in scores:
        np.testing.assert_array_equal(top_k(row, 12), reference_top_k(row, 12))
    big = rng.integers(0, 1000, 70_000).astype(np.float64)  # the subsampling path
    np.testing.assert_array_equal(top_k(big, 25), reference_top_k(big, 25))


def test_faiss_flat_equals_exact() -> None:
    rng = np.random.default_rng(1)
    vectors, queries = unit(rng, 2000), unit(rng, 30)
    index = VectorIndex.create(DIM, "Flat")
    index.add(np.arange(2000, dtype=np.int64), vectors)
    _, rows = index.search(queries, 10)
    _, positions = exact_search(queries, vectors, 10)
    # FAISS may order equal scores differently; with continuous random data there are none.
    np.testing.assert_array_equal(rows, positions)


def test_ivf_reaches_recall_target() -> None:
    rng = np.random.default_rng(2)
    vectors, queries = clustered(rng, 8_000), clustered(rng, 100)
    index = VectorIndex.create(DIM, "IVF32,Flat")
    index.train(vectors)
    index.add(np.arange(len(vectors), dtype=np.int64), vectors)
    _, exact = exact_search(queries, vectors, 10)
    stats = index.tune(queries, exact.astype(np.int64), 10, 0.95)
    _, found = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact, strict=True)])
    assert stats.recall_at_10 is not None and stats.recall_at_10 >= 0.95
    assert recall >= 0.95
    assert choose_factory(49_999) == "Flat" and choose_factory(1_000_000).startswith("IVF")


# --- Jaccard ---------------------------------------------------------------------------------


def python_jaccard_top_k(token_sets: list[set[str]], query: str, k: int) -> list[tuple[int, float]]:
    q = set(tokenize(query))
    scored = [(i, len(q & t) / len(q | t) if q | t else 0.0) for i, t in enumerate(token_sets)]
    scored.sort(key=lambda p: (-p[1], p[0]))
    return scored[:k]


@pytest.mark.parametrize("seed", range(2))
def test_jaccard_equals_python(seed: int) -> None:
    rng = random.Random(seed)
    texts = sentences(rng, 1500)
    token_sets = [set(tokenize(t)) for t in texts]
    queries = sentences(random.Random(seed + 100), 15)
    index = LexicalIndex()
    index.add(np.arange(500), texts[:500])  # several segments, like incremental adds
    index.add(np.arange(500, 1200), texts[500:1200])
    index.add(np.arange(1200, 1500), texts[1200:])
    for query in queries:
        ref_all = python_jaccard_top_k(token_sets, query, 40)
        for k in (1, 5, 40):
            rows, scores = index.jaccard_top_k(query, k)
            ref = ref_all[:k]
            assert rows.tolist() == [i for i, _ in ref]
            np.testing.assert_allclose(scores, [s for _, s in ref], rtol=0, atol=1e-12)


def test_jaccard_batch_equals_single() -> None:
    rng = random.Random(9)
    texts = sentences(rng, 800)
    index = LexicalIndex()
    index.add(np.arange(800), texts)
    queries = sentences(random.Random(10), 10)
    batch = index.jaccard_top_k_batch(queries, 7)
    for q, (rows, scores) in zip(queries, batch, strict=True):
        r1, s1 = index.jaccard_top_k(q, 7)
        assert rows.tolist() == r1.tolist()
        assert scores.tolist() == s1.tolist()


# --- MMR against LangChain -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fetch_k", [5, 20, 200])
@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_mmr_equals_langchain(seed: int, fetch_k: int, lam: float) -> None:
    from langchain_community.vectorstores.utils import maximal_marginal_relevance

    rng = np.random.default_rng(seed)
    q = unit(rng, 1)[0]
    cands = clustered(rng, fetch_k, centres=4)
    ours = mmr_batch(q[None], cands[None], 4, lam)[0]
    theirs = maximal_marginal_relevance(np.array([q]), list(cands), lam, 4)
    assert ours.tolist() == list(theirs)


def test_mmr_batch_equals_one_query_at_a_time() -> None:
    rng = np.random.default_rng(3)
    qs = unit(rng, 16)
    cands = np.stack([clustered(rng, 50, centres=5) for _ in range(16)])
    batch = mmr_batch(qs, cands, 6, 0.5)
    for i in range(16):
        assert batch[i].tolist() == mmr_batch(qs[i : i + 1], cands[i : i + 1], 6, 0.5)[0].tolist()


# --- selectors against LangChain FAISS on the same embeddings ----------------------------------


@pytest.fixture(scope="module")
def shared() -> dict[str, object]:
    from langchain_community.vectorstores import FAISS
    from langchain_core.embeddings import Embeddings

    rng = np.random.default_rng(7)
    texts = sentences(random.Random(7), 3000)
    queries = sentences(random.Random(8), 40)
    vectors = clustered(rng, len(texts))
    qvecs = clustered(rng, len(queries))
    encoder = TableEncoder(dict(zip(queries, qvecs, strict=True)))

    class Table(Embeddings):  # type: ignore[misc]
        def embed_documents(self, docs: list[str]) -> list[list[float]]:
            raise AssertionError("documents come with their embeddings")

        def embed_query(self, text: str) -> list[float]:
            return encoder.table[text].tolist()  # type: ignore[no-any-return]

    examples = [{"input": t, "output": "o", "id": f"e{i}"} for i, t in enumerate(texts)]
    index = ExampleIndex.build(examples, encoder, embeddings=vectors)
    store = FAISS.from_embeddings(
        text_embeddings=list(zip(texts, vectors.tolist(), strict=True)),
        embedding=Table(),
        metadatas=examples,
    )
    return {"index": index, "store": store, "queries": queries}


@pytest.mark.parametrize("k", [1, 4, 10])
def test_similarity_equals_langchain_faiss(shared: dict[str, object], k: int) -> None:
    from langchain_core.example_selectors import SemanticSimilarityExampleSelector

    index, store, queries = shared["index"], shared["store"], shared["queries"]
    assert isinstance(index, ExampleIndex) and isinstance(queries, list)
    ours = build_selector(index, "similarity")
    theirs = SemanticSimilarityExampleSelector(vectorstore=store, k=k, input_keys=["input"])
    batch = ours.select_batch(queries, k)
    for q, got in zip(queries, batch, strict=True):
        single = [s.example.id for s in ours.select(q, k)]
        assert [s.example.id for s in got] == single
        assert single == [row["id"] for row in theirs.select_examples({"input": q})]


@pytest.mark.parametrize("fetch_k", [4, 20, 100])
def test_mmr_selector_equals_langchain(shared: dict[str, object], fetch_k: int) -> None:
    from langchain_core.example_selectors import MaxMarginalRelevanceExampleSelector

    index, store, queries = shared["index"], shared["store"], shared["queries"]
    assert isinstance(index, ExampleIndex) and isinstance(queries, list)
    ours = build_selector(index, "mmr", {"fetch_k": fetch_k, "lambda": 0.5})
    theirs = MaxMarginalRelevanceExampleSelector(
        vectorstore=store, k=4, fetch_k=fetch_k, input_keys=["input"]
    )
    for q in queries:
        got = [s.example.id for s in ours.select(q, 4)]
        assert got == [row["id"] for row in theirs.select_examples({"input": q})]


def test_ivf_index_recall_on_new_queries() -> None:
    """An IVF-built ExampleIndex reaches its recorded recall on queries outside the corpus."""
    rng = np.random.default_rng(11)
    texts = sentences(random.Random(11), 10_000)
    # Corpus and queries from one draw, so the queries are new points of the same clusters.
    drawn = clustered(rng, len(texts) + 100)
    vectors, qvecs = drawn[: len(texts)], drawn[len(texts) :]
    encoder = TableEncoder({})
    index = ExampleIndex.build(
        [{"input": t} for t in texts], encoder, embeddings=vectors, factory="IVF32,Flat"
    )
    assert index.recall_at_10 is not None and index.recall_at_10 >= 0.95
    _, exact = exact_search(qvecs, vectors, 10)
    with index.reading():
        _, slots = index.view.vector_search(qvecs, 10, None)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(slots, exact, strict=True)])
    assert recall >= index.recall_at_10 - 0.03
