"""Pure ranking kernels: top-k, MMR, DPP, coverage, reciprocal-rank fusion.

The bottom layer that the index (``top_k``) and the selectors both import, as
sentence-transformers keeps its similarity and retrieval kernels in ``util`` below its models.
Every function takes numpy arrays (or plain Python containers) and returns numpy arrays; none of
them knows about indexes, stores or encoders. All of them are deterministic: ties are broken by
ascending id (or position) so that the same inputs always give the same picks.

Vectors are expected to be L2-normalised rows, so that a dot product is the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from kshot.errors import ConfigError, QueryError
from kshot.types import FloatArray, IntArray

__all__ = [
    "check_k",
    "coverage_greedy",
    "dpp_greedy",
    "mmr_batch",
    "reciprocal_rank_fusion",
    "top_k",
]

_SUBSAMPLE_MIN_N = 1 << 15
_SUBSAMPLE_STRIDE = 16


def check_k(k: Any) -> int:
    """Return ``k`` as an int when it is a whole number of at least 1; raise otherwise.

    The one rule for every ``k`` in kshot (kernels, lexical index, selectors, HTTP, CLI): asking
    for no examples is always a caller's mistake (a zero-shot prompt needs no selection), so
    refusing it everywhere gives one message instead of an empty answer on some paths only.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise QueryError(f"k must be a whole number of at least 1, got {k!r}")
    return int(k)


def _as_float_scores(scores: npt.ArrayLike) -> FloatArray:
    """Scores as a float array with NaN replaced by -inf (copying only when needed)."""
    s = np.asarray(scores)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    nan = np.isnan(s)
    if nan.any():
        s = np.where(nan, -np.inf, s)
    return s


def _top_k_1d(s: FloatArray, k: int, ids: npt.NDArray[Any] | None) -> IntArray:
    n = s.shape[0]
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64)
    if k == n:
        cand = np.arange(n, dtype=np.int64)
    else:
        threshold = None
        if n >= _SUBSAMPLE_MIN_N and k * 4 * _SUBSAMPLE_STRIDE < n:
            # theta, the k-th largest of a strided subsample, is <= the k-th largest overall:
            # either k elements beat theta (the top-k is among them), or theta IS the k-th value.
            sub = s[::_SUBSAMPLE_STRIDE]
            theta = np.partition(sub, sub.shape[0] - k)[sub.shape[0] - k]
            above = np.flatnonzero(s > theta)
            if above.shape[0] < k:
                threshold = theta
            elif above.shape[0] < n // 2:
                sub_ids = None if ids is None else ids[above]
                return above[_top_k_1d(s[above], k, sub_ids)]
        if threshold is None:
            # the k-th largest value; partition moves no index array and negates no copy
            threshold = np.partition(s, n - k)[n - k]
            above = np.flatnonzero(s > threshold)
        tied = np.flatnonzero(s == threshold)
        need = k - above.shape[0]
        if tied.shape[0] > need:
            if ids is None:
                tied = tied[:need]  # flatnonzero is ascending by position
            else:
                # the `need` smallest ids among the tied (equal ids: lower position), in O(n)
                tied_ids = ids[tied]
                id_kth = tied_ids[np.argpartition(tied_ids, need - 1)[need - 1]]
                below = tied[tied_ids < id_kth]
                at = tied[tied_ids == id_kth][: need - below.shape[0]]
                tied = np.concatenate([below, at])
        cand = np.concatenate([above, tied]).astype(np.int64, copy=False)
    cand_ids = cand if ids is None else ids[cand]
    order = np.lexsort((cand, cand_ids, -s[cand]))
    return cand[order]


def top_k(scores: npt.ArrayLike, k: int, *, ids: npt.ArrayLike | None = None) -> IntArray:
    """Positions of the ``k`` largest scores, best first.

    Ties are broken by ascending ``ids`` (an array of the same length as the last axis of
    ``scores``, or of the same shape), or by ascending position when ``ids`` is ``None``; equal
    ids fall back to position. NaN scores count as ``-inf``.

    Args:
        scores: shape ``(n,)``, or ``(m, n)`` for a row-wise top-k.
        k: how many to return; ``min(k, n)`` are returned.
        ids: tie-breaking keys, shape ``(n,)`` or the shape of ``scores``.

    Returns:
        int64 positions, shape ``(min(k, n),)`` or ``(m, min(k, n))``.

    Runs in O(n + k log k) per row: one ``argpartition``, then a sort of the ``k`` selected.
    """
    k = check_k(k)
    s = _as_float_scores(scores)
    id_arr = None if ids is None else np.asarray(ids)
    if s.ndim == 1:
        if id_arr is not None and id_arr.shape != s.shape:
            raise ConfigError(f"ids shape {id_arr.shape} does not match scores shape {s.shape}")
        if id_arr is not None and bool(np.all(id_arr[1:] >= id_arr[:-1])):
            id_arr = None  # ascending ids break ties exactly like positions (the cheap path)
        return _top_k_1d(s, k, id_arr)
    if s.ndim != 2:
        raise ConfigError(f"scores must be 1-D or 2-D, got shape {s.shape}")
    m, n = s.shape
    if id_arr is not None:
        if id_arr.shape == (n,):
            id_arr = np.broadcast_to(id_arr, (m, n))
        elif id_arr.shape != s.shape:
            raise ConfigError(f"ids shape {id_arr.shape} does not match scores shape {s.shape}")
    k = min(k, n)
    if k == 0 or m == 0:
        return np.empty((m, k), dtype=np.int64)
    if k == n:
        sel = np.broadcast_to(np.arange(n, dtype=np.int64), (m, n))
        ambiguous = np.zeros(m, dtype=bool)
    else:
        sel = np.argpartition(-s, k - 1, axis=1)[:, :k].astype(np.int64, copy=False)
        threshold = np.take_along_axis(s, sel[:, k - 1 : k], axis=1)
        tied_total = (s == threshold).sum(axis=1)
        tied_in = (np.take_along_axis(s, sel, axis=1) == threshold).sum(axis=1)
        # A row whose boundary ties spill outside the partition needs the exact id rule.
        ambiguous = tied_total > tied_in
    sel_scores = np.take_along_axis(s, sel, axis=1)
    sel_ids = sel if id_arr is None else np.take_along_axis(id_arr, sel, axis=1)
    order = np.lexsort((sel, sel_ids, -sel_scores), axis=-1)
    out = np.take_along_axis(sel, order, axis=1)
    for row in np.flatnonzero(ambiguous):
        out[row] = _top_k_1d(s[row], k, None if id_arr is None else id_arr[row])
    return out


def mmr_batch(
    query_vecs: npt.ArrayLike | None,
    candidate_vecs: npt.ArrayLike,
    k: int,
    lambda_mult: float = 0.5,
    *,
    relevance: npt.ArrayLike | None = None,
    valid: npt.ArrayLike | None = None,
) -> IntArray:
    """Maximal marginal relevance for ``m`` queries at once; candidate positions in pick order.

    Same rule as LangChain's ``maximal_marginal_relevance``: the first pick is the candidate most
    similar to the query; each next pick maximises
    ``lambda_mult * sim(query, c) - (1 - lambda_mult) * max(sim(c, picked))``, ties going to the
    lowest position. Vectors must be L2-normalised (similarity is the dot product), so on such
    inputs each row's picks equal LangChain's. Vectorised across the batch: one batched matvec of
    the candidates per pick, with a running max-similarity matrix.

    Args:
        query_vecs: shape ``(m, d)``; may be ``None`` when ``relevance`` is given.
        candidate_vecs: shape ``(m, n, d)``: each query's own candidates.
        k: how many to pick per query.
        lambda_mult: 1 is pure relevance, 0 is pure diversity.
        relevance: optional precomputed query-candidate similarities, ``(m, n)``.
        valid: optional boolean mask ``(m, n)``; masked candidates and those with non-finite
            relevance are never picked.

    Returns:
        int64 array ``(m, min(k, n))`` of positions in pick order, no duplicates within a row; a
        row with fewer valid candidates than ``k`` is padded with ``-1`` after its picks.
    """
    k = check_k(k)
    cands = np.asarray(candidate_vecs)
    if cands.ndim != 3:
        raise ConfigError(f"candidate_vecs must be 3-D (m, n, d), got shape {cands.shape}")
    m, n, _ = cands.shape
    if relevance is None:
        if query_vecs is None:
            raise ConfigError("mmr_batch needs query_vecs or relevance")
        q = np.asarray(query_vecs)
        if q.shape != (m, cands.shape[2]):
            raise ConfigError(f"query_vecs shape {q.shape} != ({m}, {cands.shape[2]})")
        rel = np.matmul(cands, q[:, :, None])[:, :, 0]
    else:
        rel = np.asarray(relevance)
        if rel.shape != (m, n):
            raise ConfigError(f"relevance shape {rel.shape} != ({m}, {n})")
    ok = np.isfinite(rel)
    if valid is not None:
        mask = np.asarray(valid, dtype=bool)
        if mask.shape != rel.shape:
            raise ConfigError(f"valid mask shape {mask.shape} != candidates {rel.shape}")
        ok &= mask
    k = min(k, n)
    out = np.full((m, k), -1, dtype=np.int64)
    if k == 0 or m == 0:
        return out
    rows = np.arange(m)
    neg_inf = -np.inf
    max_sim = np.zeros((m, n), dtype=np.result_type(cands.dtype, rel.dtype))
    for i in range(k):
        score = rel if i == 0 else lambda_mult * rel - (1 - lambda_mult) * max_sim
        live = ok.any(axis=1)
        if not live.any():
            break
        j = np.argmax(np.where(ok, score, neg_inf), axis=1)
        out[:, i] = np.where(live, j, -1)
        ok[rows, j] = False
        if i + 1 < k:
            sims = np.matmul(cands, cands[rows, j][:, :, None])[:, :, 0]
            if i == 0:
                max_sim = sims
            else:
                np.maximum(max_sim, sims, out=max_sim)
    return out


def _relevance_order(rel: FloatArray) -> IntArray:
    """Positions by relevance descending, ties by ascending position."""
    return np.lexsort((np.arange(rel.shape[0]), -rel)).astype(np.int64, copy=False)


def dpp_greedy(
    relevance: npt.ArrayLike,
    similarity: npt.ArrayLike,
    k: int,
    *,
    epsilon: float = 1e-10,
) -> IntArray:
    """Greedy MAP inference for the DPP kernel ``L = diag(q) S diag(q)``; picks in order.

    Fast greedy with an incremental Cholesky factor (Chen, Zhang & Zhou, NeurIPS 2018): each
    step adds the item with the largest gain in log-determinant, in O(n * picks) per step and no
    ``n x n`` kernel materialised. When the kernel becomes singular (the next gain is below
    ``epsilon``, for example duplicates), the remaining picks follow relevance order, so that
    ``min(k, n)`` items are always returned. Ties go to the lowest position.

    Args:
        relevance: ``q``, shape ``(n,)``, finite and non-negative (for example a similarity
            shifted or exponentiated into ``[0, inf)``).
        similarity: ``S``, shape ``(n, n)``, symmetric positive semi-definite (for example the
            Gram matrix of L2-normalised embeddings).
        k: how many to pick.
        epsilon: the smallest gain still counted as diverse.

    Returns:
        int64 positions, ``min(k, n)`` of them, no duplicates.
    """
    k = check_k(k)
    q = np.asarray(relevance, dtype=np.float64)
    s = np.asarray(similarity, dtype=np.float64)
    if q.ndim != 1:
        raise ConfigError(f"relevance must be 1-D, got shape {q.shape}")
    n = q.shape[0]
    if s.shape != (n, n):
        raise ConfigError(f"similarity shape {s.shape} != ({n}, {n})")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ConfigError("dpp relevance must be finite and >= 0; shift or exponentiate it first")
    k = min(k, n)
    picks: list[int] = []
    if k == 0:
        return np.empty(0, dtype=np.int64)
    cis = np.zeros((k, n))
    di2 = q * q * np.diag(s)
    available = np.ones(n, dtype=bool)
    j = int(np.argmax(di2))
    while True:
        picks.append(j)
        available[j] = False
        if len(picks) == k:
            break
        row = len(picks) - 1
        dj = np.sqrt(di2[j])
        l_row = q[j] * s[j] * q
        eis = (l_row - cis[:row, j] @ cis[:row]) / dj
        cis[row] = eis
        di2 = di2 - eis * eis
        gains = np.where(available, di2, -np.inf)
        j = int(np.argmax(gains))
        if gains[j] < epsilon:
            break
    if len(picks) < k:
        chosen = set(picks)
        for i in _relevance_order(q).tolist():
            if len(picks) == k:
                break
            if i not in chosen:
                picks.append(i)
    return np.asarray(picks, dtype=np.int64)


def _coverage_matrix(
    query_weights: Mapping[str, float], candidates: Sequence[Collection[str]]
) -> tuple[FloatArray, sp.csr_matrix]:
    """Query-token weights and the ``(candidates, tokens)`` indicator matrix of who covers what."""
    tokens = list(query_weights)
    column = {t: i for i, t in enumerate(tokens)}
    w = np.asarray([float(query_weights[t]) for t in tokens], dtype=np.float64)
    indptr = [0]
    cols: list[int] = []
    for cand in candidates:
        cols.extend(sorted({column[t] for t in cand if t in column}))
        indptr.append(len(cols))
    mat = sp.csr_matrix(
        (np.ones(len(cols)), np.asarray(cols, dtype=np.int64), np.asarray(indptr)),
        shape=(len(candidates), len(tokens)),
    )
    return w, mat


def coverage_greedy(
    query_weights: Mapping[str, float],
    candidates: Sequence[Collection[str]],
    k: int,
    *,
    relevance: npt.ArrayLike | None = None,
) -> IntArray:
    """Greedy set-level coverage of the query's tokens; returns candidate positions in order.

    Each step picks the candidate covering the most query-token weight not yet covered by
    earlier picks; ties go to the higher ``relevance``, then the lower position. Once no
    candidate covers anything new, the remaining picks follow relevance order.

    Args:
        query_weights: ``token -> weight`` for the query's tokens.
        candidates: each candidate's token set.
        k: how many to pick.
        relevance: base relevance ``(n,)`` for ties and the fall-back order; zeros by default.

    Returns:
        int64 positions, ``min(k, n)`` of them, no duplicates.
    """
    k = check_k(k)
    w, mat = _coverage_matrix(query_weights, candidates)
    if np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ConfigError("query token weights must be finite and >= 0")
    n = mat.shape[0]
    rel = np.zeros(n) if relevance is None else np.asarray(relevance, dtype=np.float64)
    if rel.shape != (n,):
        raise ConfigError(f"relevance shape {rel.shape} != ({n},)")
    k = min(k, n)
    available = np.ones(n, dtype=bool)
    picks: list[int] = []
    w = w.copy()
    while len(picks) < k:
        gain = np.where(available, mat @ w, -np.inf)
        best = gain.max()
        if not best > 0:
            break
        tied = np.flatnonzero(gain == best)
        j = int(tied[np.lexsort((tied, -rel[tied]))[0]])
        picks.append(j)
        available[j] = False
        w[mat.indices[mat.indptr[j] : mat.indptr[j + 1]]] = 0.0
    if len(picks) < k:
        for i in _relevance_order(rel).tolist():
            if len(picks) == k:
                break
            if available[i]:
                picks.append(i)
                available[i] = False
    return np.asarray(picks, dtype=np.int64)


def reciprocal_rank_fusion(
    rankings: Sequence[npt.ArrayLike],
    k_rrf: float = 60.0,
    *,
    weights: Sequence[float] | None = None,
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Reciprocal rank fusion: ``score(id) = sum_r w_r / (k_rrf + rank_r(id))``, ranks from 1.

    Args:
        rankings: id arrays, each best first; an id repeated within one ranking counts once,
            at its best rank.
        k_rrf: the RRF constant (60 in Cormack et al. 2009).
        weights: optional weight per ranking (1.0 each by default).

    Returns:
        ``(ids, scores)``: every id seen, by fused score descending, ties by ascending id.
    """
    if k_rrf < 0:
        raise ConfigError(f"k_rrf must be >= 0, got {k_rrf}")
    if weights is not None and len(weights) != len(rankings):
        raise ConfigError(f"{len(weights)} weights for {len(rankings)} rankings")
    all_ids: list[IntArray] = []
    all_contrib: list[npt.NDArray[np.float64]] = []
    for r, ranking in enumerate(rankings):
        ids = np.asarray(ranking, dtype=np.int64).reshape(-1)
        uniq, first = np.unique(ids, return_index=True)
        w = 1.0 if weights is None else float(weights[r])
        all_ids.append(uniq)
        all_contrib.append(w / (k_rrf + first.astype(np.float64) + 1.0))
    if not all_ids:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    ids_cat = np.concatenate(all_ids)
    fused_ids, inverse = np.unique(ids_cat, return_inverse=True)
    scores = np.bincount(inverse, weights=np.concatenate(all_contrib), minlength=len(fused_ids))
    order = np.lexsort((fused_ids, -scores))
    return fused_ids[order].astype(np.int64, copy=False), scores[order].astype(np.float64)
