r"""Lexical index behind the ``jaccard`` and ``bm25`` selectors.

This module is about 670 lines, over the usual 500: the segment structure (append, tombstone,
LSM-style merge) and the two scorers that read it share one layout of flat numpy arrays, and
splitting the scorers from the segments would expose that layout between modules.

Tokenisation
------------
A text is normalised with Unicode NFKC, then case-folded (``str.casefold``); its words are
``re.findall(r"\w+", text)`` (Unicode letters, digits and underscore). :func:`tokenize` is that
function; the index uses it for documents and queries alike.

Structure
---------
Documents are keyed by the caller's int64 row ids, which must increase from one :meth:`add` to
the next and are never reused. The index is a list of immutable *segments*, in row-id order:
each holds its documents' term sets (doc-major, with term frequencies for BM25) and the
inverted postings (term-major), as flat numpy arrays. :meth:`LexicalIndex.add` appends a
segment, :meth:`LexicalIndex.remove` only marks tombstones; segments are merged (dropping the
tombstoned documents) LSM-style when a newer segment grows close to its predecessor's size, or
when there are more than ``max_segments``.

Jaccard is exact over token *sets* and incremental: a query reads only the postings of its own
tokens, so it touches only the documents that share a token with it. A large segment also keeps
one bit per document for each of its 64 most frequent terms (8 bytes a document): the common
words of a query, whose postings together can be as long as the corpus, are counted for every
document at once by a popcount instead.

BM25 (Lucene variant, ``k1 = 1.5``, ``b = 0.75``) is scored by the ``bm25s`` library, whose IDF
is global to the corpus. Its index is rebuilt
lazily, on the first BM25 query after a write (logged at DEBUG), from the stored term
frequencies; Jaccard queries never wait for it.

Results
-------
Every query returns ``(rowids, scores)`` sorted by score descending, ties by ascending row id.
When fewer than ``k`` documents score above zero, the rest is filled with zero-score documents in
ascending row-id order, so a request returns ``k`` results whenever ``k`` documents are allowed.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
import threading
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kshot._ranking import check_k, top_k
from kshot.errors import ConfigError, DataError, NotFoundError

__all__ = ["LexicalIndex", "tokenize"]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
#: Segments of at least this many documents keep bits for their most frequent terms ...
_BITS_MIN_DOCS = 4096
#: ... at most this many terms (one uint64 per document) ...
_BITS = 64
#: ... each held by at least one document in this many.
_BITS_MIN_SHARE = 64

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]
Result = tuple[I64, F64]
IdFilter = npt.ArrayLike | None
BatchIdFilter = npt.NDArray[Any] | Sequence[npt.ArrayLike | None] | None


def tokenize(text: str) -> list[str]:
    r"""Tokens of ``text``: NFKC, casefold, ``\w+`` words.

    >>> tokenize("The ﬁrst  Café-au-lait")
    ['the', 'first', 'café', 'au', 'lait']
    """
    words: list[str] = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return words


def _sorted_ids(ids: npt.ArrayLike) -> I64:
    arr = np.asarray(ids, dtype=np.int64).reshape(-1)
    if arr.shape[0] > 1 and not bool(np.all(arr[1:] > arr[:-1])):
        arr = np.unique(arr)
    return arr


def _member(x: I64, sorted_set: I64) -> Bool:
    """Boolean mask: which of ``x`` are in the sorted array ``sorted_set``."""
    if sorted_set.shape[0] == 0 or x.shape[0] == 0:
        return np.zeros(x.shape[0], dtype=bool)
    idx = np.searchsorted(sorted_set, x)
    np.minimum(idx, sorted_set.shape[0] - 1, out=idx)
    mask: Bool = sorted_set[idx] == x
    return mask


class _Segment:
    """An immutable batch of documents (only the tombstone mask ``alive`` ever changes)."""

    __slots__ = (
        "alive",
        "bit_terms",
        "bit_values",
        "bits",
        "doc_ptr",
        "doc_terms",
        "doc_tf",
        "min_len",
        "n_dead",
        "post_docs",
        "rowids",
        "set_len",
        "term_ids",
        "term_ptr",
    )

    def __init__(self, rowids: I64, set_len: I64, doc_terms: I32, doc_tf: I32) -> None:
        n = rowids.shape[0]
        self.rowids = rowids
        self.set_len = set_len
        self.doc_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(set_len, out=self.doc_ptr[1:])
        self.doc_terms = doc_terms
        self.doc_tf = doc_tf
        # term-major postings: stable sort by term keeps documents ascending inside a term
        order = np.argsort(doc_terms, kind="stable")
        doc_of_nnz = np.repeat(np.arange(n, dtype=np.int32), set_len)
        self.post_docs: I32 = doc_of_nnz[order]
        sorted_terms = doc_terms[order]
        term_ids, starts = np.unique(sorted_terms, return_index=True)
        self.term_ids: I32 = term_ids.astype(np.int32, copy=False)
        self.term_ptr = np.append(starts, sorted_terms.shape[0]).astype(np.int64)
        self.alive: Bool = np.ones(n, dtype=bool)
        self.n_dead = 0
        self.min_len = int(set_len.min()) if n else 0
        self._build_bits()

    def _build_bits(self) -> None:
        """One bit per document for each of the segment's most frequent terms.

        A query sharing a few common words with most documents would otherwise count its
        overlaps by adding up postings as long as the corpus, once per common word; with the
        bits, the common words of a query are counted for every document by one AND and one
        popcount over an array of 8 bytes per document.
        """
        n = len(self)
        df = np.diff(self.term_ptr)
        frequent = np.flatnonzero(df * _BITS_MIN_SHARE >= n) if n >= _BITS_MIN_DOCS else df[:0]
        # the most frequent first (ties by term id), kept in term order for the lookups
        frequent = np.sort(frequent[np.argsort(-df[frequent], kind="stable")[:_BITS]])
        self.bits = np.zeros(n if len(frequent) else 0, dtype=np.uint64)
        self.bit_terms: I32 = self.term_ids[frequent]
        self.bit_values = np.left_shift(np.uint64(1), np.arange(len(frequent), dtype=np.uint64))
        for bit, term in zip(self.bit_values, frequent.tolist(), strict=True):
            self.bits[self.post_docs[self.term_ptr[term] : self.term_ptr[term + 1]]] |= bit

    def split_terms(self, terms: I64) -> tuple[np.uint64, I64]:
        """The bit mask of ``terms`` (sorted) that have bits here, and the other terms."""
        loc = np.searchsorted(self.bit_terms, terms)
        hit = loc < self.bit_terms.shape[0]
        hit[hit] = self.bit_terms[loc[hit]] == terms[hit]
        mask = np.bitwise_or.reduce(self.bit_values[loc[hit]], initial=np.uint64(0))
        return np.uint64(mask), terms[~hit]

    def __len__(self) -> int:
        return int(self.rowids.shape[0])

    @property
    def n_live(self) -> int:
        return len(self) - self.n_dead

    @property
    def nbytes(self) -> int:
        arrays = (
            self.rowids,
            self.bits,
            self.set_len,
            self.doc_ptr,
            self.doc_terms,
            self.doc_tf,
            self.post_docs,
            self.term_ids,
            self.term_ptr,
            self.alive,
        )
        return sum(a.nbytes for a in arrays)

    def live_parts(self) -> tuple[I64, I64, I32, I32]:
        """``(rowids, set_len, doc_terms, doc_tf)`` of the live documents only."""
        if self.n_dead == 0:
            return self.rowids, self.set_len, self.doc_terms, self.doc_tf
        nnz_alive = np.repeat(self.alive, self.set_len)
        return (
            self.rowids[self.alive],
            self.set_len[self.alive],
            self.doc_terms[nnz_alive],
            self.doc_tf[nnz_alive],
        )

    def postings(self, terms: I64) -> I32:
        """Concatenated postings (document positions, dead ones included) of ``terms``."""
        loc = np.searchsorted(self.term_ids, terms)
        ok = loc < self.term_ids.shape[0]
        ok[ok] = self.term_ids[loc[ok]] == terms[ok]
        loc = loc[ok]
        if loc.shape[0] == 0:
            return np.empty(0, dtype=np.int32)
        starts = self.term_ptr[loc].tolist()
        ends = self.term_ptr[loc + 1].tolist()
        if len(starts) == 1:
            return self.post_docs[starts[0] : ends[0]]
        return np.concatenate([self.post_docs[a:b] for a, b in zip(starts, ends, strict=True)])


def _shared_counts(seg: _Segment, common: np.uint64, post: I32, n_terms: int) -> npt.NDArray[Any]:
    """How many of a query's terms each document of ``seg`` holds (dead documents included).

    ``common`` holds the bits of the query's frequent terms, ``post`` the postings of the rest.
    """
    if not common:
        return np.bincount(post, minlength=len(seg))
    counts: npt.NDArray[Any] = np.bitwise_count(seg.bits & common)
    if n_terms > np.iinfo(np.uint8).max:  # the popcount's uint8 could not hold the sum
        counts = counts.astype(np.int64)
    if post.shape[0]:
        docs, extra = np.unique(post, return_counts=True)
        counts[docs] += extra.astype(counts.dtype)
    return counts


class LexicalIndex:
    """Token-set Jaccard and BM25 over documents keyed by increasing int64 row ids.

    Args:
        merge_factor: a segment is merged into its predecessor once it holds at least
            ``1 / merge_factor`` of the predecessor's documents.
        max_segments: more segments than this triggers a merge of the smallest neighbours.

    Not safe for concurrent writers: callers serialise writes (many readers are fine, the lazy
    BM25 rebuild takes a lock).
    """

    def __init__(
        self,
        *,
        merge_factor: int = 2,
        max_segments: int = 16,
    ) -> None:
        if merge_factor < 1 or max_segments < 1:
            raise ConfigError(
                f"merge_factor and max_segments must be >= 1, got {merge_factor}, {max_segments}"
            )
        self.merge_factor = merge_factor
        self.max_segments = max_segments
        self._vocab: dict[str, int] = {}
        self._segments: list[_Segment] = []
        self._next_rowid: int | None = None  # every new rowid must be >= this
        self._n_live = 0
        self._live_cache: I64 | None = None
        self._bm25: Any = None
        self._bm25_rowids: I64 = np.empty(0, dtype=np.int64)
        self._bm25_stale = True
        self._bm25_lock = threading.Lock()

    # ------------------------------------------------------------------ writes

    def __len__(self) -> int:
        """Number of live (not removed) documents."""
        return self._n_live

    def add(self, rowids: npt.ArrayLike, texts: Sequence[str]) -> None:
        """Index ``texts`` under ``rowids``: strictly increasing, above every id added before.

        Raises:
            DataError: a length mismatch, or ids that are not strictly increasing past the
                largest id this index has seen.
        """
        ids = np.asarray(rowids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != len(texts):
            raise DataError(f"{ids.shape[0]} rowids for {len(texts)} texts")
        if ids.shape[0] == 0:
            return
        if ids.shape[0] > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise DataError("rowids must be strictly increasing within an add")
        if self._next_rowid is not None and int(ids[0]) < self._next_rowid:
            raise DataError(
                f"rowid {int(ids[0])} is not above the largest rowid already added "
                f"({self._next_rowid - 1}); rowids must increase and are never reused"
            )
        vocab = self._vocab
        flat: list[int] = []
        lengths = np.empty(ids.shape[0], dtype=np.int64)
        for i, text in enumerate(texts):
            toks = tokenize(text)
            flat.extend([vocab.setdefault(t, len(vocab)) for t in toks])
            lengths[i] = len(toks)
        n = ids.shape[0]
        v = max(len(vocab), 1)
        doc = np.repeat(np.arange(n, dtype=np.int64), lengths)
        key = doc * v + np.asarray(flat, dtype=np.int64)
        uniq, tf = np.unique(key, return_counts=True)
        doc_of = uniq // v
        terms = (uniq - doc_of * v).astype(np.int32)
        set_len = np.bincount(doc_of, minlength=n).astype(np.int64)
        self._segments.append(_Segment(ids.copy(), set_len, terms, tf.astype(np.int32)))
        self._next_rowid = int(ids[-1]) + 1
        self._n_live += n
        self._after_write()
        self._maybe_merge()

    def remove(self, rowids: npt.ArrayLike) -> None:
        """Remove documents (tombstones; the space is reclaimed when segments merge).

        Raises:
            NotFoundError: an id that is not live in the index (nothing is removed then).
        """
        ids = _sorted_ids(rowids)
        if ids.shape[0] == 0:
            return
        hits: list[tuple[_Segment, I64]] = []
        found = np.zeros(ids.shape[0], dtype=bool)
        for seg in self._segments:
            pos = np.searchsorted(seg.rowids, ids)
            ok = pos < len(seg)
            ok[ok] = seg.rowids[pos[ok]] == ids[ok]
            ok[ok] = seg.alive[pos[ok]]
            if ok.any():
                hits.append((seg, pos[ok]))
                found |= ok
        if not found.all():
            missing = ids[~found][:10].tolist()
            raise NotFoundError(f"rowids not in the lexical index: {missing}")
        for seg, pos in hits:
            seg.alive[pos] = False
            seg.n_dead += int(pos.shape[0])
        self._n_live -= int(ids.shape[0])
        self._after_write()

    def _after_write(self) -> None:
        self._live_cache = None
        self._bm25_stale = True

    def _maybe_merge(self) -> None:
        segs = self._segments
        while len(segs) >= 2 and segs[-1].n_live * self.merge_factor >= segs[-2].n_live:
            segs[-2:] = self._merge(segs[-2:])
        while len(segs) > self.max_segments:
            sizes = [segs[i].n_live + segs[i + 1].n_live for i in range(len(segs) - 1)]
            i = int(np.argmin(sizes))
            segs[i : i + 2] = self._merge(segs[i : i + 2])
        self._live_cache = None

    @staticmethod
    def _merge(segs: Sequence[_Segment]) -> list[_Segment]:
        parts = [s.live_parts() for s in segs]
        rowids = np.concatenate([p[0] for p in parts])
        if rowids.shape[0] == 0:
            return []
        merged = _Segment(
            rowids,
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
        )
        return [merged]

    # ------------------------------------------------------------------ reads

    @property
    def nbytes(self) -> int:
        """Approximate memory held: segment arrays, vocabulary, and the BM25 index if built."""
        total = sum(s.nbytes for s in self._segments)
        total += sys.getsizeof(self._vocab) + sum(sys.getsizeof(t) for t in self._vocab)
        if self._bm25 is not None:
            scores = self._bm25.scores
            total += sum(scores[key].nbytes for key in ("data", "indices", "indptr"))
            total += self._bm25_rowids.nbytes + sys.getsizeof(self._bm25.vocab_dict)
        if self._live_cache is not None:
            total += self._live_cache.nbytes
        return int(total)

    def rowids(self) -> I64:
        """The live row ids, ascending."""
        if self._live_cache is None:
            parts = [s.rowids[s.alive] if s.n_dead else s.rowids for s in self._segments]
            self._live_cache = (
                np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
            ).astype(np.int64, copy=False)
        return self._live_cache

    def document_frequencies(self, tokens: Sequence[str]) -> dict[str, int]:
        """How many live documents hold each token (0 for tokens no document has).

        Read from the postings, so the cost is that of the tokens' postings, not of the corpus.
        """
        vocab = self._vocab
        out = dict.fromkeys(tokens, 0)
        for token in out:
            term = vocab.get(token)
            if term is None:
                continue
            terms = np.asarray([term], dtype=np.int64)
            for seg in self._segments:
                docs = seg.postings(terms)
                out[token] += int(seg.alive[docs].sum()) if seg.n_dead else int(docs.shape[0])
        return out

    def _fill(
        self, got_ids: I64, got_scores: F64, k: int, allowed: I64 | None, exclude: I64 | None
    ) -> Result:
        """Pad a result with zero-score documents in ascending row-id order, up to ``k``."""
        need = k - got_ids.shape[0]
        if need <= 0:
            return got_ids, got_scores
        live = self.rowids()
        pool = live if allowed is None else allowed[_member(allowed, live)]
        n_skip = got_ids.shape[0] + (0 if exclude is None else exclude.shape[0])
        head = pool[: need + n_skip]
        keep = ~_member(head, np.sort(got_ids))
        if exclude is not None:
            keep &= ~_member(head, exclude)
        extra = head[keep][:need]
        return (
            np.concatenate([got_ids, extra]),
            np.concatenate([got_scores, np.zeros(extra.shape[0])]),
        )

    def _query_terms(self, query: str) -> tuple[I64, int]:
        toks = set(tokenize(query))
        vocab = self._vocab
        known = sorted(vocab[t] for t in toks if t in vocab)
        return np.asarray(known, dtype=np.int64), len(toks)

    @staticmethod
    def _check(k: int, allowed: IdFilter, exclude: IdFilter) -> tuple[I64 | None, I64 | None]:
        check_k(k)
        return (
            None if allowed is None else _sorted_ids(allowed),
            None if exclude is None else _sorted_ids(exclude),
        )

    def jaccard_top_k(
        self,
        query: str,
        k: int,
        *,
        allowed: IdFilter = None,
        exclude: IdFilter = None,
    ) -> Result:
        """The ``k`` documents with the highest token-set Jaccard similarity to ``query``.

        Args:
            query: the query text (tokenised like the documents).
            k: how many to return (``>= 1``).
            allowed: row ids that may be returned (``None``: every live document).
            exclude: row ids that must not be returned.

        Returns:
            ``(rowids int64, scores float64)``, best first, ties by ascending row id, padded
            with zero-score documents in row-id order up to ``k`` (or all allowed documents).
        """
        allow, excl = self._check(k, allowed, exclude)
        terms, qlen = self._query_terms(query)
        parts: list[tuple[I64, F64]] = []
        if terms.shape[0]:
            parts = self._jaccard_candidates(terms, qlen, k, allow, excl)
        if parts:
            rid_all = np.concatenate([p[0] for p in parts])
            scores = np.concatenate([p[1] for p in parts])
            sel = top_k(scores, k, ids=rid_all)
            got_ids, got_scores = rid_all[sel], scores[sel]
        else:
            got_ids, got_scores = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        return self._fill(got_ids, got_scores, k, allow, excl)

    @staticmethod
    def _jaccard_scores(
        seg: _Segment, pos: I64, inter: I64, qlen: int, allow: I64 | None, excl: I64 | None
    ) -> tuple[I64, F64]:
        rid = seg.rowids[pos]
        keep: Bool | None = None
        if allow is not None:
            keep = _member(rid, allow)
        if excl is not None:
            drop = _member(rid, excl)
            keep = ~drop if keep is None else keep & ~drop
        if keep is not None:
            rid, pos, inter = rid[keep], pos[keep], inter[keep]
        union = seg.set_len[pos] + qlen - inter
        return rid, inter / union

    def _jaccard_candidates(
        self, terms: I64, qlen: int, k: int, allow: I64 | None, excl: I64 | None
    ) -> list[tuple[I64, F64]]:
        """Scored documents that can still reach the top-k (a superset of it).

        A segment whose postings are small is scored in full. For a large one, the shared-term
        count of every document comes from one ``bincount``; documents are scored from the
        highest counts down until ``k`` scores give a threshold ``theta``, and then only the
        counts ``x`` whose best possible Jaccard, ``x / (max(x, min_len) + |q| - x)``, reaches
        ``theta`` are scored: the many documents that share a single common word usually can't.
        """
        parts: list[tuple[I64, F64]] = []
        dense: list[tuple[_Segment, npt.NDArray[np.int64], int]] = []
        for seg in self._segments:
            common, rare = seg.split_terms(terms)
            post = seg.postings(rare)
            if post.shape[0] == 0 and not common:
                continue
            n = len(seg)
            if not common and post.shape[0] * 8 <= n:
                uniq, cnt = np.unique(post, return_counts=True)
                pos = uniq.astype(np.int64)
                inter = cnt.astype(np.int64, copy=False)
                if seg.n_dead:
                    keep = seg.alive[pos]
                    pos, inter = pos[keep], inter[keep]
                parts.append(self._jaccard_scores(seg, pos, inter, qlen, allow, excl))
                continue
            counts = _shared_counts(seg, common, post, int(terms.shape[0]))
            if seg.n_dead:
                counts[~seg.alive] = 0
            # x_hi: the largest shared-term count that at least k documents reach
            x_hi = min(int(terms.shape[0]), int(counts.max()))
            if x_hi == 0:  # every overlapping document is removed
                continue
            while x_hi > 1 and np.count_nonzero(counts >= x_hi) < k:
                x_hi -= 1
            pos = np.flatnonzero(counts >= x_hi)
            parts.append(self._jaccard_scores(seg, pos, counts[pos], qlen, allow, excl))
            if x_hi > 1:
                dense.append((seg, counts, x_hi))
        if not dense:
            return parts
        n_scored = sum(p[1].shape[0] for p in parts)
        if n_scored >= k:
            all_scores = np.concatenate([p[1] for p in parts])
            theta = float(np.partition(all_scores, n_scored - k)[n_scored - k])
        else:
            theta = 0.0
        for seg, counts, x_hi in dense:
            x = np.arange(1, x_hi, dtype=np.float64)
            best = x / (np.maximum(x, seg.min_len) + qlen - x)
            reach = np.flatnonzero(best >= theta)
            if reach.shape[0] == 0:
                continue
            x0 = int(reach[0]) + 1
            pos = np.flatnonzero((counts >= x0) & (counts < x_hi))
            parts.append(self._jaccard_scores(seg, pos, counts[pos], qlen, allow, excl))
        return parts

    def _ensure_bm25(self) -> None:
        if not self._bm25_stale:
            return
        with self._bm25_lock:
            if not self._bm25_stale:
                return
            import bm25s

            corpus: list[list[int]] = []
            for seg in self._segments:
                _, set_len, terms, tf = seg.live_parts()
                flat = np.repeat(terms, tf).tolist()
                tf_cum = np.zeros(terms.shape[0] + 1, dtype=np.int64)
                np.cumsum(tf, out=tf_cum[1:])
                doc_ptr = np.zeros(set_len.shape[0] + 1, dtype=np.int64)
                np.cumsum(set_len, out=doc_ptr[1:])
                bounds = tf_cum[doc_ptr].tolist()
                corpus.extend(flat[a:b] for a, b in itertools.pairwise(bounds))
            logger.debug("rebuilding the BM25 index over %d documents", len(corpus))
            if any(corpus):  # bm25s needs at least one token (its average length divides)
                retriever = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
                retriever.index((corpus, dict(self._vocab)), show_progress=False)
                self._bm25 = retriever
            else:
                self._bm25 = None
            self._bm25_rowids = self.rowids().copy()
            self._bm25_stale = False

    def bm25_top_k(
        self,
        query: str,
        k: int,
        *,
        allowed: IdFilter = None,
        exclude: IdFilter = None,
    ) -> Result:
        """The ``k`` documents with the highest BM25 score for ``query`` (scored by ``bm25s``).

        Arguments and result as in :meth:`jaccard_top_k`; query tokens count with their
        multiplicity, as in ``bm25s``. The first call after a write rebuilds the BM25 index.
        """
        allow, excl = self._check(k, allowed, exclude)
        self._ensure_bm25()
        retriever = self._bm25
        rowids = self._bm25_rowids
        if retriever is None:  # no document holds a token: every score is zero
            scores = np.zeros(rowids.shape[0], np.float32)
        else:
            vocab = self._vocab
            q_ids = [vocab[t] for t in tokenize(query) if t in vocab]
            # bm25s sums in float32; top-k runs on those values, only the k picks are widened
            scores = np.asarray(retriever.get_scores_from_ids(q_ids))
        # Positions are in row-id order (the row ids ascend), so ties need no ids to break them.
        if allow is None and excl is None:
            sel = top_k(scores, k)
            return rowids[sel], scores[sel].astype(np.float64)
        if allow is None:
            cand = np.flatnonzero(~_member(rowids, excl if excl is not None else rowids[:0]))
        else:
            pos = np.searchsorted(rowids, allow)
            np.minimum(pos, max(rowids.shape[0] - 1, 0), out=pos)
            cand = pos[rowids[pos] == allow]
            if excl is not None:
                cand = cand[~_member(rowids[cand], excl)]
        sel = top_k(scores[cand], k)  # cand ascends too
        return rowids[cand[sel]], scores[cand[sel]].astype(np.float64)

    @staticmethod
    def _per_query(flt: BatchIdFilter, m: int) -> list[npt.ArrayLike | None]:
        if flt is None or isinstance(flt, np.ndarray):
            return [flt] * m
        if len(flt) != m:
            raise ConfigError(f"{len(flt)} per-query filters for {m} queries")
        return list(flt)

    def jaccard_top_k_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allowed: BatchIdFilter = None,
        exclude: BatchIdFilter = None,
    ) -> list[Result]:
        """:meth:`jaccard_top_k` for many queries.

        ``allowed`` and ``exclude`` are either one numpy array shared by all queries, or a
        sequence with one entry (array or ``None``) per query.
        """
        allows = self._per_query(allowed, len(queries))
        excls = self._per_query(exclude, len(queries))
        return [
            self.jaccard_top_k(q, k, allowed=a, exclude=e)
            for q, a, e in zip(queries, allows, excls, strict=True)
        ]

    def bm25_top_k_batch(
        self,
        queries: Sequence[str],
        k: int,
        *,
        allowed: BatchIdFilter = None,
        exclude: BatchIdFilter = None,
    ) -> list[Result]:
        """:meth:`bm25_top_k` for many queries (one rebuild at most, then one scoring each)."""
        allows = self._per_query(allowed, len(queries))
        excls = self._per_query(exclude, len(queries))
        if queries:
            self._ensure_bm25()
        return [
            self.bm25_top_k(q, k, allowed=a, exclude=e)
            for q, a, e in zip(queries, allows, excls, strict=True)
        ]
