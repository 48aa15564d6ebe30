from __future__ import annotations

import itertools
from collections.abc import Callable

import bm25s
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kshot.errors import DataError, NotFoundError, QueryError
from kshot.index import lexical
from kshot.index.lexical import LexicalIndex, tokenize

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "kiwi", "lemon", "mango"]
texts_st = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=6).map(" ".join),
    min_size=1,
    max_size=25,
)


def jaccard(a: set[str], b: set[str]) -> float:
    """Jaccard similarity from its definition (0 when both sets are empty)."""
    return len(a & b) / len(a | b) if a | b else 0.0


def brute_jaccard(
    texts: dict[int, str],
    query: str,
    k: int,
    allowed: set[int] | None = None,
    exclude: set[int] | None = None,
) -> tuple[list[int], list[float]]:
    q = set(tokenize(query))
    rows = [
        (-jaccard(q, set(tokenize(t))), rid)
        for rid, t in texts.items()
        if (allowed is None or rid in allowed) and (exclude is None or rid not in exclude)
    ]
    rows.sort()
    top = rows[:k]
    return [r for _, r in top], [-s for s, _ in top]


def frequent_term_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep frequent-term bits in segments of any size, for the most frequent terms of each."""
    monkeypatch.setattr(lexical, "_BITS_MIN_DOCS", 1)
    monkeypatch.setattr(lexical, "_BITS_MIN_SHARE", 1 << 40)


def build(texts: list[str], start: int = 0, **kw: object) -> tuple[LexicalIndex, dict[int, str]]:
    idx = LexicalIndex(**kw)  # type: ignore[arg-type]
    rowids = np.arange(start, start + len(texts), dtype=np.int64) * 3
    idx.add(rowids, texts)
    return idx, dict(zip(rowids.tolist(), texts, strict=True))


# ---------------------------------------------------------------- tokenisation


def test_tokenize_nfkc_casefold() -> None:
    assert tokenize("Straße ＡＢＣ ﬁne,  x_y 42!") == ["strasse", "abc", "fine", "x_y", "42"]
    assert tokenize("   ") == []


def draw_id_filters(
    data: st.DataObject, ids: list[int]
) -> tuple[set[int] | None, set[int] | None, dict[str, np.ndarray | None]]:
    """Drawn ``allowed`` / ``exclude`` id sets (or ``None``) and the arrays a top-k call takes.

    ``allowed`` goes in sorted and ``exclude`` in set order, so the index sorts what it needs.
    """
    allowed = data.draw(st.none() | st.sets(st.sampled_from(ids)))
    exclude = data.draw(st.none() | st.sets(st.sampled_from(ids)))
    arrays = {
        "allowed": None if allowed is None else np.array(sorted(allowed), dtype=np.int64),
        "exclude": None if exclude is None else np.array(list(exclude), dtype=np.int64),
    }
    return allowed, exclude, arrays


# ---------------------------------------------------------------- jaccard


@settings(max_examples=80)
@given(
    texts_st,
    st.lists(st.sampled_from([*WORDS, "zzz"]), max_size=5).map(" ".join),
    st.integers(1, 30),
)
def test_jaccard_matches_python_sets(texts: list[str], query: str, k: int) -> None:
    idx, by_id = build(texts)
    ids, scores = idx.jaccard_top_k(query, k)
    exp_ids, exp_scores = brute_jaccard(by_id, query, k)
    assert ids.tolist() == exp_ids
    np.testing.assert_allclose(scores, exp_scores)
    assert ids.dtype == np.int64


@settings(max_examples=60)
@given(
    texts_st,
    st.lists(st.sampled_from(WORDS), max_size=4).map(" ".join),
    st.integers(1, 12),
    st.data(),
)
def test_allowed_exclude_and_fill(
    texts: list[str], query: str, k: int, data: st.DataObject
) -> None:
    idx, by_id = build(texts)
    all_ids = sorted(by_id)
    allowed, exclude, filters = draw_id_filters(data, all_ids)
    ids, scores = idx.jaccard_top_k(query, k, **filters)
    exp_ids, exp_scores = brute_jaccard(by_id, query, k, allowed, exclude)
    assert ids.tolist() == exp_ids
    np.testing.assert_allclose(scores, exp_scores)
    n_allowed = len(
        [r for r in all_ids if (allowed is None or r in allowed) and r not in (exclude or set())]
    )
    assert len(ids) == min(k, n_allowed)


def test_fill_with_zero_score_in_rowid_order() -> None:
    idx, _ = build(["apple", "banana", "cherry apple", "date", "fig"])
    ids, scores = idx.jaccard_top_k("apple", 4)
    assert ids.tolist() == [0, 6, 3, 9]
    assert scores.tolist() == [1.0, 0.5, 0.0, 0.0]
    ids, scores = idx.jaccard_top_k("!!!", 2, exclude=np.array([0]))
    assert ids.tolist() == [3, 6] and scores.tolist() == [0.0, 0.0]


def test_ties_by_ascending_rowid() -> None:
    idx = LexicalIndex()
    idx.add(np.array([5, 7, 9, 11]), ["a b", "a b", "a c", "a b"])
    ids, _ = idx.jaccard_top_k("a b", 3)
    assert ids.tolist() == [5, 7, 11]
    ids, _ = idx.bm25_top_k("a b", 3)
    assert ids.tolist() == [5, 7, 11]


@settings(max_examples=40)
@given(texts_st, st.lists(st.integers(1, 6), min_size=1, max_size=6), st.data())
def test_incremental_equals_from_scratch(
    texts: list[str], step_sizes: list[int], data: st.DataObject
) -> None:
    idx = LexicalIndex(merge_factor=2, max_segments=3)
    by_id: dict[int, str] = {}
    pos = 0
    rid = 0
    steps = itertools.cycle(step_sizes)
    while pos < len(texts):
        n = next(steps)
        chunk = texts[pos : pos + n]
        ids = np.arange(rid, rid + len(chunk), dtype=np.int64)
        idx.add(ids, chunk)
        by_id.update(zip(ids.tolist(), chunk, strict=True))
        pos += n
        rid += len(chunk) + 2
        if by_id and data.draw(st.booleans()):
            gone = data.draw(st.sets(st.sampled_from(sorted(by_id)), max_size=3))
            idx.remove(np.array(sorted(gone), dtype=np.int64))
            for g in gone:
                del by_id[g]
    assert len(idx) == len(by_id)
    scratch = LexicalIndex()
    scratch.add(np.array(sorted(by_id), dtype=np.int64), [by_id[i] for i in sorted(by_id)])
    for query in ["apple banana", "fig", "kiwi lemon mango", ""]:
        for k in (1, 3, 50):
            a = idx.jaccard_top_k(query, k)
            b = scratch.jaccard_top_k(query, k)
            assert a[0].tolist() == b[0].tolist()
            np.testing.assert_allclose(a[1], b[1])
            c = idx.bm25_top_k(query, k)
            d = scratch.bm25_top_k(query, k)
            assert c[0].tolist() == d[0].tolist()
            np.testing.assert_allclose(c[1], d[1], rtol=1e-6)
    assert idx.rowids().tolist() == sorted(by_id)


def test_write_validation() -> None:
    idx, _ = build(["a", "b"])
    with pytest.raises(DataError):
        idx.add(np.array([3]), ["again"])  # not above the largest id (3)
    with pytest.raises(DataError):
        idx.add(np.array([10, 10]), ["x", "y"])
    with pytest.raises(DataError):
        idx.add(np.array([10]), ["x", "y"])
    with pytest.raises(NotFoundError):
        idx.remove(np.array([0, 1]))
    assert len(idx) == 2  # nothing removed by the failed call
    idx.remove(np.array([0]))
    with pytest.raises(NotFoundError):
        idx.remove(np.array([0]))
    with pytest.raises(QueryError, match="at least 1"):
        idx.jaccard_top_k("a", 0)
    assert idx.nbytes > 0


def test_bm25_agrees_with_bm25s() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(40)]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(1, 12))) for _ in range(200)]
    queries = [" ".join(rng.choice(vocab, size=3)) for _ in range(20)]
    idx, _ = build(texts)
    # The one variant the index scores with (the selectors' documented BM25).
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index([tokenize(t) for t in texts], show_progress=False)
    for q in queries:
        ref_scores = ref.get_scores(tokenize(q))
        ids, scores = idx.bm25_top_k(q, 10)
        order = sorted(range(len(texts)), key=lambda i: (-ref_scores[i], i))[:10]
        assert ids.tolist() == [3 * i for i in order]
        np.testing.assert_allclose(scores, ref_scores[order], rtol=1e-6)


def test_bm25_allowed_exclude_fill_and_batch() -> None:
    texts = ["apple apple banana", "banana", "cherry", "apple", "date"]
    idx, _ = build(texts)
    ids, scores = idx.bm25_top_k("apple", 5)
    assert ids.tolist()[:2] in ([0, 9], [9, 0])
    assert ids.tolist()[2:] == [3, 6, 12] and scores.tolist()[2:] == [0.0, 0.0, 0.0]
    ids, _ = idx.bm25_top_k("apple", 5, allowed=np.array([12, 3, 9, 100]), exclude=np.array([9]))
    assert ids.tolist() == [3, 12]
    batch = idx.bm25_top_k_batch(["apple", "cherry"], 2, exclude=[np.array([0]), None])
    assert batch[0][0].tolist() == idx.bm25_top_k("apple", 2, exclude=np.array([0]))[0].tolist()
    assert batch[1][0].tolist() == idx.bm25_top_k("cherry", 2)[0].tolist()
    jb = idx.jaccard_top_k_batch(["apple", "cherry"], 2, allowed=np.array([3, 6]))
    assert [r[0].tolist() for r in jb] == [[3, 6], [6, 3]]
    # a write invalidates BM25 (global IDF), and the next query sees it
    idx.add(np.array([20]), ["cherry cherry"])
    assert idx.bm25_top_k("cherry", 1)[0].tolist() in ([6], [20])
    idx.remove(np.array([6, 20]))
    assert 6 not in idx.bm25_top_k("cherry", 5)[0].tolist()


def test_empty_index() -> None:
    idx = LexicalIndex()
    assert idx.jaccard_top_k("a", 3)[0].tolist() == []
    assert idx.bm25_top_k("a", 3)[0].tolist() == []
    assert len(idx) == 0


@pytest.mark.parametrize("bits", [False, True])
@pytest.mark.parametrize("k", [1, 5, 40])
def test_jaccard_pruned_path_exact_on_zipf_corpus(
    k: int, bits: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large postings take the counting + count-level pruning path; compare to brute force.

    With ``bits``, every segment keeps bits for its most frequent terms (the default keeps them
    from 4096 documents up), so the common words of a query are counted by popcount.
    """
    if bits:
        frequent_term_bits(monkeypatch)
    rng = np.random.default_rng(k)
    vocab = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301) ** 1.1
    p /= p.sum()
    texts = [" ".join(rng.choice(vocab, size=rng.integers(1, 9), p=p)) for _ in range(3000)]
    idx = LexicalIndex(merge_factor=1, max_segments=4)
    by_id: dict[int, str] = {}
    for start in range(0, 3000, 700):
        ids = np.arange(start, min(3000, start + 700), dtype=np.int64)
        idx.add(ids, texts[start : start + 700])
        by_id.update(zip(ids.tolist(), texts[start : start + 700], strict=True))
    gone = rng.choice(3000, size=300, replace=False)
    idx.remove(gone)
    for g in gone.tolist():
        del by_id[g]
    allowed = set(rng.choice(sorted(by_id), size=1500, replace=False).tolist())
    for _ in range(15):
        query = " ".join(rng.choice(vocab, size=rng.integers(1, 7), p=p)) + " unseen"
        for allow in (None, allowed):
            arr = None if allow is None else np.array(sorted(allow), dtype=np.int64)
            ids_, scores = idx.jaccard_top_k(query, k, allowed=arr, exclude=np.array([5, 6]))
            exp_ids, exp_scores = brute_jaccard(by_id, query, k, allow, {5, 6})
            assert ids_.tolist() == exp_ids
            np.testing.assert_allclose(scores, exp_scores)
    assert all(len(seg.bit_terms) == 64 for seg in idx._segments) == bits


@settings(max_examples=30)
@given(texts_st, st.data())
def test_document_frequencies_count_live_documents(texts: list[str], data: st.DataObject) -> None:
    idx, by_id = build(texts)
    gone = data.draw(st.sets(st.sampled_from(sorted(by_id)), max_size=4))
    idx.remove(np.array(sorted(gone), dtype=np.int64))
    live = [set(tokenize(t)) for rid, t in by_id.items() if rid not in gone]
    asked = [*WORDS[:5], "absent"]
    assert idx.document_frequencies(asked) == {w: sum(w in doc for doc in live) for w in asked}


@settings(max_examples=60)
@given(texts_st, st.lists(st.sampled_from(WORDS), min_size=1, max_size=8), st.integers(1, 8))
def test_jaccard_with_frequent_term_bits_matches_python_sets(
    texts: list[str], words: list[str], k: int
) -> None:
    query = " ".join(words)
    with pytest.MonkeyPatch.context() as patch:
        frequent_term_bits(patch)
        idx, by_id = build(texts)
        gone = sorted(by_id)[::4]
        idx.remove(np.array(gone, dtype=np.int64))
        for g in gone:
            del by_id[g]
        ids, scores = idx.jaccard_top_k(query, k)
        terms = idx._query_terms(query)[0]
        common, rare = idx._segments[0].split_terms(terms)
    exp_ids, exp_scores = brute_jaccard(by_id, query, k)
    assert ids.tolist()[: len(exp_ids)] == exp_ids[: len(ids)]
    np.testing.assert_allclose(scores[: len(exp_scores)], exp_scores[: len(scores)])
    # Every known word of the query is a frequent term here: the popcount path counted them all.
    assert rare.size == 0 and (common != 0) == (terms.size > 0)


def test_jaccard_bits_count_a_query_of_more_terms_than_a_byte_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frequent_term_bits(monkeypatch)
    vocab = [f"t{i}" for i in range(400)]
    texts = [" ".join(vocab[i : i + 300]) for i in range(0, 100, 10)] + ["t1 t2", "t399"]
    idx, by_id = build(texts)
    query = " ".join(vocab[:300])  # 300 distinct known terms: counts past 255
    ids, scores = idx.jaccard_top_k(query, 3)
    exp_ids, exp_scores = brute_jaccard(by_id, query, 3)
    assert ids.tolist() == exp_ids and scores[0] == 1.0
    np.testing.assert_allclose(scores, exp_scores)


def test_bm25_equals_bm25s_scores_bit_for_bit_with_ties_and_filters() -> None:
    """The index's BM25 is bm25s's float32 scores, ranked by score then row id, in full."""
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(30)]
    texts = [" ".join(rng.choice(vocab, size=rng.integers(1, 8))) for _ in range(300)]
    texts += texts[:60]  # duplicates: equal scores that only the row id orders
    idx, _ = build(texts)
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index([tokenize(t) for t in texts], show_progress=False)
    allowed = np.arange(0, len(texts), 2) * 3
    for q in [" ".join(rng.choice(vocab, size=4)) for _ in range(25)] + ["nothing known"]:
        ref_scores = ref.get_scores(tokenize(q)) if tokenize(q)[0] in vocab else None
        if ref_scores is None:
            ref_scores = np.zeros(len(texts), np.float32)
        for allow, exclude in [(None, None), (allowed, np.array([0, 6, 9]))]:
            ids, scores = idx.bm25_top_k(q, 25, allowed=allow, exclude=exclude)
            pool = [
                i
                for i in range(len(texts))
                if (allow is None or 3 * i in allow) and (exclude is None or 3 * i not in exclude)
            ]
            order = sorted(pool, key=lambda i: (-ref_scores[i], i))[:25]
            assert ids.tolist() == [3 * i for i in order]
            assert scores.dtype == np.float64
            np.testing.assert_array_equal(scores, ref_scores[order].astype(np.float64))


# ---------------------------------------------------------------- bm25 against brute force

ZIPF_WORDS = [w for i, w in enumerate(WORDS) for _ in range(len(WORDS) - i)]  # "apple" most


def bm25s_reference(live: dict[int, str]) -> tuple[list[int], Callable[[str], np.ndarray]]:
    """The live row ids (ascending) and bm25s's float32 scores of them for a query."""
    rids = sorted(live)
    docs = [tokenize(live[r]) for r in rids]
    if not any(docs):  # bm25s cannot index a corpus without a token: every score is zero
        return rids, lambda query: np.zeros(len(rids), np.float32)
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index(docs, show_progress=False)

    def scores(query: str) -> np.ndarray:
        ids = [ref.vocab_dict[t] for t in tokenize(query) if t in ref.vocab_dict and t != ""]
        return np.asarray(ref.get_scores_from_ids(ids), np.float32)

    return rids, scores


def brute_bm25(
    reference: tuple[list[int], Callable[[str], np.ndarray]],
    query: str,
    k: int,
    allowed: set[int] | None,
    exclude: set[int] | None,
) -> tuple[list[int], list[float]]:
    """bm25s's own scores for every live document (float32), ranked by score then row id."""
    rids, score = reference
    scores = score(query)
    pool = [
        i
        for i, r in enumerate(rids)
        if (allowed is None or r in allowed) and (exclude is None or r not in exclude)
    ]
    top = sorted(pool, key=lambda i: (-scores[i], rids[i]))[:k]
    return [rids[i] for i in top], [float(scores[i]) for i in top]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from(ZIPF_WORDS), min_size=0, max_size=8).map(" ".join),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.sampled_from([*ZIPF_WORDS, "zzz"]), min_size=0, max_size=9).map(" ".join),
    st.integers(1, 80),
    st.data(),
)
def test_bm25_top_k_equals_brute_force_bm25s(
    texts: list[str], query: str, k: int, data: st.DataObject
) -> None:
    """Row ids, float32 scores bit for bit, ties by row id and zero-score padding, under
    several segments, tombstones, repeated query words, filters, and k past the matches."""
    idx = LexicalIndex(merge_factor=data.draw(st.integers(1, 3)), max_segments=3)
    live: dict[int, str] = {}
    step = data.draw(st.integers(1, 20))
    for start in range(0, len(texts), step):
        chunk = texts[start : start + step]
        rids = np.arange(start, start + len(chunk), dtype=np.int64) * 2 + 1
        idx.add(rids, chunk)
        live.update(zip(rids.tolist(), chunk, strict=True))
    gone = data.draw(st.sets(st.sampled_from(sorted(live)), max_size=len(live) // 3))
    if gone:
        idx.remove(np.array(sorted(gone), dtype=np.int64))
        for g in gone:
            del live[g]
    everyone = [*sorted(live), 10_000]  # with an id the index never had
    allowed, exclude, filters = draw_id_filters(data, everyone)
    ids, scores = idx.bm25_top_k(query, k, **filters)
    exp_ids, exp_scores = brute_bm25(bm25s_reference(live), query, k, allowed, exclude)
    assert ids.tolist() == exp_ids
    assert scores.dtype == np.float64
    np.testing.assert_array_equal(scores, np.asarray(exp_scores, dtype=np.float64))
