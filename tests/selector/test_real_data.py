"""Selectors on real data: the real MiniLM encoder over a BANKING77 subset (~1,540 examples)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kshot.bench.lookup import LookupEncoder
from kshot.index.encoder import SentenceTransformerEncoder
from kshot.index.example_index import ExampleIndex
from kshot.selector import available_selectors, build_selector
from kshot.types import Example, Scored

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_faiss_thread")]

PER_LABEL = 20
N_QUERIES = 50
K = 4


@pytest.fixture(scope="module")
def subset(banking_train: list[Example]) -> list[Example]:
    """The first 20 training examples of each of the 77 intents, in corpus order."""
    taken: Counter[str | None] = Counter()
    rows = []
    for example in banking_train:
        if taken[example.label] < PER_LABEL:
            taken[example.label] += 1
            rows.append(example)
    return rows


@pytest.fixture(scope="module")
def queries(banking_test: list[Example]) -> list[Example]:
    """50 test examples spread evenly over the test split (so over many intents)."""
    step = len(banking_test) // N_QUERIES
    return banking_test[::step][:N_QUERIES]


@pytest.fixture(scope="module")
def encoder(minilm: SentenceTransformerEncoder) -> LookupEncoder:
    """The real MiniLM encoder, remembering every text it encoded: the tests repeat queries."""
    return LookupEncoder(minilm)


@pytest.fixture(scope="module")
def vectors(subset: list[Example], encoder: LookupEncoder) -> dict[str, np.ndarray]:
    """Each subset example's MiniLM embedding by id (encoded once for the module)."""
    matrix = encoder.encode([ex.input for ex in subset], batch_size=128)
    return {ex.id: row for ex, row in zip(subset, matrix, strict=True)}


@pytest.fixture(scope="module")
def index(
    subset: list[Example], vectors: dict[str, np.ndarray], encoder: LookupEncoder
) -> ExampleIndex:
    return ExampleIndex.build(subset, encoder, embeddings=[vectors[ex.id] for ex in subset])


def label_match(found: list[list[Scored]], queries: list[Example]) -> float:
    """Mean fraction of the chosen examples that carry the query's own intent."""
    rates = [
        np.mean([s.example.label == q.label for s in picks]) if picks else 0.0
        for picks, q in zip(found, queries, strict=True)
    ]
    return float(np.mean(rates))


def distinct_labels(found: list[list[Scored]]) -> float:
    return float(np.mean([len({s.example.label for s in picks}) for picks in found]))


def run(
    index: ExampleIndex, name: str, queries: list[Example], **params: object
) -> list[list[Scored]]:
    selector = build_selector(index, name, params)
    return selector.select_batch([q.input for q in queries], K)


def test_subset_is_what_the_tests_assume(subset: list[Example], queries: list[Example]) -> None:
    assert len({ex.label for ex in subset}) == 77
    assert 1400 <= len(subset) <= 1600
    assert len(queries) == N_QUERIES
    assert len({q.label for q in queries}) >= 30


@pytest.mark.parametrize("name", ["similarity", "mmr"])
def test_nearest_examples_share_the_query_intent(
    index: ExampleIndex, queries: list[Example], name: str
) -> None:
    found = run(index, name, queries)
    assert all(len(picks) == K for picks in found)
    # The intent most of the k examples carry (ties: the best-ranked one) is the query's own.
    majority = [
        Counter(s.example.label for s in picks).most_common(1)[0][0] == q.label
        for picks, q in zip(found, queries, strict=True)
    ]
    assert np.mean(majority) > 0.6
    if name == "similarity":
        assert label_match(found, queries) > 0.6


def test_every_informed_selector_beats_random(index: ExampleIndex, queries: list[Example]) -> None:
    chance = label_match(run(index, "random", queries, seed=0), queries)
    assert chance < 0.1  # 77 balanced intents: about 1/77
    for name in available_selectors():
        if name in {"random", "balanced"}:
            continue
        rate = label_match(run(index, name, queries), queries)
        assert rate > 0.3, f"{name}: label match {rate:.2f}"


def test_balanced_covers_more_intents_than_similarity(
    index: ExampleIndex, queries: list[Example]
) -> None:
    similar = run(index, "similarity", queries)
    balanced = run(index, "balanced", queries)
    assert distinct_labels(balanced) > distinct_labels(similar)
    assert distinct_labels(balanced) == pytest.approx(K)  # 50 candidates span >= 4 intents


def test_diversity_selectors_spread_more_than_similarity(
    index: ExampleIndex, queries: list[Example], vectors: dict[str, np.ndarray]
) -> None:
    def mean_pairwise_cosine(found: list[list[Scored]]) -> float:
        values = []
        for picks in found:
            matrix = np.stack([vectors[s.example.id] for s in picks])
            gram = matrix @ matrix.T
            values.append(gram[np.triu_indices(len(picks), 1)].mean())
        return float(np.mean(values))

    similar = mean_pairwise_cosine(run(index, "similarity", queries))
    for name in ("mmr", "dpp"):
        assert mean_pairwise_cosine(run(index, name, queries)) < similar, name


def test_filters_hold_on_real_data(index: ExampleIndex, queries: list[Example]) -> None:
    wanted = ["card_arrival", "lost_or_stolen_card"]
    for name in available_selectors():
        selector = build_selector(index, name)
        found = selector.select_batch([q.input for q in queries[:10]], K, filter={"label": wanted})
        assert all(len(picks) == K for picks in found), name
        assert all(s.example.label in wanted for picks in found for s in picks), name


def test_the_query_itself_is_never_chosen(index: ExampleIndex, subset: list[Example]) -> None:
    sample = subset[::97]
    for name in available_selectors():
        found = build_selector(index, name).select_batch([ex.input for ex in sample], K)
        for ex, picks in zip(sample, found, strict=True):
            assert ex.id not in {s.example.id for s in picks}, name
