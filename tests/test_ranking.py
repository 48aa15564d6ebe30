from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from kshot._ranking import (
    check_k,
    coverage_greedy,
    dpp_greedy,
    mmr_batch,
    reciprocal_rank_fusion,
    top_k,
)
from kshot.errors import ConfigError, QueryError

tokens = st.sets(st.sampled_from([f"t{i}" for i in range(12)]), max_size=8)
seeds = st.integers(0, 2**32 - 1)


def mmr_one(
    q: np.ndarray | None,
    cands: np.ndarray,
    k: int,
    lam: float,
    *,
    relevance: np.ndarray | None = None,
    valid: np.ndarray | None = None,
) -> list[int]:
    """One query through the batched kernel, padding dropped."""
    row = mmr_batch(
        None if q is None else q[None],
        cands[None],
        k,
        lam,
        relevance=None if relevance is None else relevance[None],
        valid=None if valid is None else valid[None],
    )[0]
    return [int(i) for i in row if i >= 0]


def brute_mmr(q: np.ndarray, cands: np.ndarray, k: int, lam: float, valid: np.ndarray) -> list[int]:
    """MMR from its definition, one candidate at a time."""
    rel = cands @ q
    picks: list[int] = []
    while len(picks) < k:
        best, best_score = -1, -np.inf
        for i in range(len(cands)):
            if not valid[i] or i in picks:
                continue
            if picks:
                score = lam * rel[i] - (1 - lam) * max(float(cands[i] @ cands[j]) for j in picks)
            else:
                score = rel[i]
            if score > best_score:
                best, best_score = i, score
        if best < 0:
            break
        picks.append(best)
    return picks


def unit_rows(rng: np.random.Generator, *shape: int) -> np.ndarray:
    x = rng.standard_normal(shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_top_k(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> list[int]:
    ids = np.arange(len(scores)) if ids is None else ids
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], ids[i], i))
    return order[:k]


# ---------------------------------------------------------------- top_k


@given(
    st.lists(st.integers(-3, 3), min_size=0, max_size=40),
    st.integers(1, 45),
    seeds,
)
def test_top_k_matches_sort_with_ties(values: list[int], k: int, seed: int) -> None:
    scores = np.asarray(values, dtype=np.float64)
    ids = np.random.default_rng(seed).permutation(len(values)) * 7 + 3
    assert top_k(scores, k).tolist() == brute_top_k(scores, k)
    assert top_k(scores, k, ids=ids).tolist() == brute_top_k(scores, k, ids)


@given(st.integers(1, 6), st.integers(1, 30), st.integers(1, 35), seeds)
def test_top_k_2d_rowwise(m: int, n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 3, size=(m, n)).astype(np.float32)
    ids = rng.permutation(n)
    got = top_k(scores, k, ids=ids)
    assert got.shape == (m, min(k, n))
    for r in range(m):
        assert got[r].tolist() == brute_top_k(scores[r], k, ids)
    got_pos = top_k(scores, k)
    for r in range(m):
        assert got_pos[r].tolist() == brute_top_k(scores[r], k)


def test_top_k_nan_is_minus_inf() -> None:
    assert top_k(np.array([np.nan, -np.inf, 1.0]), 3).tolist() == [2, 0, 1]


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_every_kernel_refuses_k_below_one(k: object) -> None:
    """One rule for k everywhere: a whole number of at least 1 (0 used to pass in the kernels)."""
    rng = np.random.default_rng(0)
    cands = unit_rows(rng, 1, 3, 2)
    for call in (
        lambda: check_k(k),
        lambda: top_k(np.array([1.0, 2.0]), k),  # type: ignore[arg-type]
        lambda: mmr_batch(unit_rows(rng, 1, 2), cands, k),  # type: ignore[arg-type]
        lambda: dpp_greedy(np.ones(2), np.eye(2), k),  # type: ignore[arg-type]
        lambda: coverage_greedy({"a": 1.0}, [{"a"}], k),  # type: ignore[arg-type]
    ):
        with pytest.raises(QueryError, match="at least 1"):
            call()


def test_top_k_deterministic_under_ties() -> None:
    scores = np.zeros(1000)
    ids = np.arange(1000)[::-1]
    assert top_k(scores, 5, ids=ids).tolist() == [999, 998, 997, 996, 995]
    assert top_k(scores, 5).tolist() == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------- MMR


@settings(max_examples=60)
@given(
    st.integers(1, 40),
    st.integers(2, 16),
    st.integers(1, 12),
    st.floats(0.0, 1.0),
    seeds,
)
def test_mmr_equals_langchain(n: int, d: int, k: int, lam: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = unit_rows(rng, d)
    cands = unit_rows(rng, n, d)
    expected = maximal_marginal_relevance(q, cands.tolist(), lambda_mult=lam, k=k)
    assert mmr_one(q, cands, k, lam) == expected


@given(st.integers(1, 40), st.integers(2, 8), st.integers(1, 45), seeds)
def test_mmr_lambda_one_is_top_k(n: int, d: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = unit_rows(rng, d)
    cands = unit_rows(rng, n, d)
    assert mmr_one(q, cands, k, 1.0) == top_k(cands @ q, k).tolist()


@given(
    st.integers(1, 30),
    st.integers(1, 35),
    st.floats(0.0, 1.0),
    st.lists(st.booleans(), min_size=30, max_size=30),
    seeds,
)
def test_mmr_no_duplicates_and_mask(
    n: int, k: int, lam: float, mask: list[bool], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # duplicated candidates on purpose
    base = unit_rows(rng, max(1, n // 2), 4)
    cands = base[rng.integers(0, len(base), size=n)]
    valid = np.asarray(mask[:n])
    got = mmr_one(unit_rows(rng, 4), cands, k, lam, valid=valid)
    assert len(set(got)) == len(got)
    assert len(got) == min(k, int(valid.sum()))
    assert all(valid[i] for i in got)


def test_mmr_relevance_inf_is_masked() -> None:
    rng = np.random.default_rng(1)
    cands = unit_rows(rng, 5, 3)
    rel = np.array([0.1, -np.inf, 0.9, -np.inf, 0.2])
    got = mmr_one(None, cands, 5, 0.5, relevance=rel)
    assert sorted(got) == [0, 2, 4]
    assert got[0] == 2


@settings(max_examples=50)
@given(
    st.integers(1, 5),
    st.integers(1, 25),
    st.integers(2, 8),
    st.integers(1, 30),
    st.floats(0.0, 1.0),
    seeds,
)
def test_mmr_batch_equals_per_row(m: int, n: int, d: int, k: int, lam: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    qs = unit_rows(rng, m, d)
    cands = unit_rows(rng, m, n, d)
    valid = rng.random((m, n)) < 0.7
    got = mmr_batch(qs, cands, k, lam, valid=valid)
    assert got.shape == (m, min(k, n))
    for r in range(m):
        row = brute_mmr(qs[r], cands[r], k, lam, valid[r])
        padded = row + [-1] * (got.shape[1] - len(row))
        assert got[r].tolist() == padded


# ---------------------------------------------------------------- DPP


@given(st.integers(1, 30), st.integers(1, 35), seeds)
def test_dpp_no_duplicates_identity_first_pick(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rel = rng.random(n)
    got = dpp_greedy(rel, np.eye(n), k)
    assert len(got) == min(k, n)
    assert len(set(got.tolist())) == len(got)
    assert got[0] == int(np.argmax(rel))
    # with S = I the kernel is diagonal: picks follow relevance
    assert got.tolist() == top_k(rel, k).tolist()


@given(st.integers(1, 25), st.integers(1, 30), seeds)
def test_dpp_with_duplicates_fills_to_k(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = unit_rows(rng, max(1, n // 3), 3)
    emb = base[rng.integers(0, len(base), size=n)]
    rel = rng.random(n) + 0.1
    got = dpp_greedy(rel, emb @ emb.T, k)
    assert len(got) == min(k, n)
    assert len(set(got.tolist())) == len(got)
    assert got.tolist() == dpp_greedy(rel, emb @ emb.T, k).tolist()


def test_dpp_prefers_diverse_item() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    got = dpp_greedy(np.array([1.0, 0.99, 0.5]), emb @ emb.T, 2)
    assert got.tolist() == [0, 2]
    with pytest.raises(ConfigError):
        dpp_greedy(np.array([-1.0]), np.eye(1), 1)


# ---------------------------------------------------------------- coverage


def brute_coverage(weights: dict[str, float], cands: list[set[str]], rel: list[float], k: int):
    covered: set[str] = set()
    picks: list[int] = []
    avail = set(range(len(cands)))
    while len(picks) < min(k, len(cands)):
        gains = {i: sum(weights[t] for t in cands[i] & set(weights) - covered) for i in avail}
        best = max(gains.values())
        if best > 0:
            i = min((i for i in avail if gains[i] == best), key=lambda i: (-rel[i], i))
            covered |= cands[i] & set(weights)
        else:
            i = min(avail, key=lambda i: (-rel[i], i))
        picks.append(i)
        avail.remove(i)
    return picks


@given(
    st.dictionaries(st.sampled_from([f"t{i}" for i in range(12)]), st.integers(1, 4), max_size=8),
    st.lists(tokens, min_size=1, max_size=15),
    st.integers(1, 16),
    seeds,
)
def test_coverage_greedy_matches_brute_force(
    weights: dict[str, int], cands: list[set[str]], k: int, seed: int
) -> None:
    rel = np.random.default_rng(seed).integers(0, 3, size=len(cands)).astype(float)
    w = {t: float(v) for t, v in weights.items()}
    got = coverage_greedy(w, cands, k, relevance=rel)
    assert got.tolist() == brute_coverage(w, cands, rel.tolist(), k)


def test_coverage_simple() -> None:
    w = {"a": 1.0, "b": 1.0, "c": 1.0}
    cands = [{"a"}, {"a", "b"}, {"c"}, {"z"}]
    assert coverage_greedy(w, cands, 4).tolist() == [1, 2, 0, 3]


# ---------------------------------------------------------------- RRF


def test_rrf_scores_and_ties() -> None:
    ids, scores = reciprocal_rank_fusion([np.array([10, 20, 30]), np.array([30, 20, 10])], 60)
    # 10 and 30 tie at 1/61 + 1/63, just above 20 at 2/62; the tie goes to the lower id
    expected = {10: 1 / 61 + 1 / 63, 20: 2 / 62, 30: 1 / 63 + 1 / 61}
    order = sorted(expected, key=lambda i: (-expected[i], i))
    assert ids.tolist() == order
    np.testing.assert_allclose(scores, [expected[i] for i in order])
    assert ids.tolist()[:2] == [10, 30]


@given(st.lists(st.lists(st.integers(0, 20), max_size=10), max_size=4))
def test_rrf_matches_definition(rankings: list[list[int]]) -> None:
    ids, scores = reciprocal_rank_fusion([np.asarray(r, dtype=np.int64) for r in rankings])
    expected: dict[int, float] = {}
    for r in rankings:
        seen: set[int] = set()
        for rank, i in enumerate(r, start=1):
            if i in seen:
                continue
            seen.add(i)
            expected[i] = expected.get(i, 0.0) + 1 / (60 + rank)
    assert sorted(ids.tolist()) == sorted(expected)
    np.testing.assert_allclose(scores, [expected[i] for i in ids.tolist()])
    assert all((scores[j] > scores[j + 1]) or (ids[j] < ids[j + 1]) for j in range(len(ids) - 1))


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 50), st.integers(1, 4), st.booleans(), seeds)
def test_top_k_large_n_with_ties(k: int, levels: int, sorted_ids: bool, seed: int) -> None:
    """Large inputs take the subsample path; it must agree with a full sort, ties included."""
    rng = np.random.default_rng(seed)
    n = 40_000
    scores = rng.integers(0, levels, size=n).astype(np.float64)
    scores[rng.integers(0, n, size=5)] = levels + 1.0
    ids = np.sort(rng.integers(0, 500, size=n)) if sorted_ids else rng.integers(0, 500, size=n)
    expected = np.lexsort((np.arange(n), ids, -scores))[:k]
    assert top_k(scores, k, ids=ids).tolist() == expected.tolist()
    assert top_k(scores, k).tolist() == np.lexsort((np.arange(n), -scores))[:k].tolist()
    cont = rng.random(n)
    assert top_k(cont, k).tolist() == np.argsort(-cont, kind="stable")[:k].tolist()
