"""ExampleIndex: the example store, its vectors and its lexical index, kept in step.

The SQLite store is the source of truth and every write commits there first; the in-memory columns
(ids, labels, metadata postings, vectors), the FAISS index and the lexical index follow it. Reads
take a shared lock and writes an exclusive one, so concurrent readers see the state before a write
or after it, never half of it.

Across processes there is one writer per directory: it holds the directory's writer lock
(:mod:`kshot.index.lock`) from load (or save) to :meth:`ExampleIndex.close`. Read-only openers
take no lock; each reads a pinned SQLite snapshot (a read transaction), so the rows its columns
name always exist however the writer changes the store, and before each read it checks the
store's generation and, when a writer has committed since, moves its snapshot forward and applies
only the difference (new rows appended, vanished rows removed) to its columns and indexes.

The vector file is a cache that may lag the store by a bounded number of rows: writes update the
in-memory FAISS index only, and the file is rewritten once the difference (the drift) passes
:func:`drift_limit`, on :meth:`ExampleIndex.save` and on :meth:`ExampleIndex.close`. A load
compares the file's row ids with the store's live rows (the set, not a count) and adds or removes
just the difference from the stored embeddings, silently: that is the normal state after writes.
Only a file that is missing, corrupt or unreadable is rebuilt, with one logged warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from kshot._files import atomic_path
from kshot._version import __version__
from kshot.errors import (
    ConfigError,
    DataError,
    EncoderMismatchError,
    FilterError,
    IndexFormatError,
    IndexLockedError,
    NotFoundError,
    QueryError,
    ReadOnlyError,
)
from kshot.index.encoder import Encoder, encoder_from_name
from kshot.index.filters import (
    LABEL_FIELD,
    check_value_kinds,
    filter_values,
    normalize_text,
    value_key,
)
from kshot.index.lexical import LexicalIndex
from kshot.index.lock import WriterLock
from kshot.index.manifest import (
    IndexLayout,
    Manifest,
    atomic_write_bytes,
    exchange_paths,
    fsync_dir,
    sha256,
)
from kshot.index.store import ExampleStore, StoredBatch
from kshot.index.vectors import VectorIndex, choose_factory, exact_search, fit_factory
from kshot.types import Example, Filter, Mask, as_example

__all__ = ["ExampleIndex", "as_example", "normalize_text"]

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]

#: Filtered searches over at most this many allowed examples scan them exactly in numpy.
EXACT_FILTER_LIMIT = 50_000
#: Batches of at least this many queries over an exact index are scored with BLAS blocks.
EXACT_BATCH_MIN = 8
_INSERT_CHUNK = 20_000
_RECALL_QUERIES = 200
# The store's info key holding the notes of set_note, as one JSON object.
_NOTES_KEY = "notes"


def drift_limit(live: int) -> int:
    """How many rows the vector file may lag the store before a write rewrites it.

    A load reconciles that many rows from the stored embeddings in milliseconds, while a rewrite
    costs the whole file: 5% of the rows (at least 1,000) bounds both.
    """
    return max(1_000, live // 20)


class _RWLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._mine = threading.local()

    def held_here(self) -> bool:
        """Whether the calling thread is inside :meth:`read` (it must not wait for a writer)."""
        return bool(getattr(self._mine, "depth", 0))

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Columns:
    """In-memory columns over slots; deleted slots stay as tombstones until compaction."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.n = 0
        self.rows = np.empty(0, np.int64)
        self.vectors = np.empty((0, dim), np.float32)
        self.alive = np.empty(0, np.bool_)
        self.label_codes = np.empty(0, np.int32)
        self.ids: list[str] = []
        self.inputs: list[str] = []
        self.label_names: list[str] = []
        self.label_index: dict[str, int] = {}
        self.slot_of_id: dict[str, int] = {}
        self.slots_of_text: dict[str, list[int]] = {}
        self.postings: dict[str, dict[str, list[int]]] = {}
        self.dead = 0

    @property
    def live(self) -> int:
        return self.n - self.dead

    def _reserve(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self.rows):
            return
        capacity = max(need, 2 * len(self.rows), 1024)
        for name in ("rows", "alive", "label_codes"):
            old = getattr(self, name)
            grown = np.zeros(capacity, old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)
        vectors = np.zeros((capacity, self.dim), np.float32)
        vectors[: self.n] = self.vectors[: self.n]
        self.vectors = vectors

    def append(self, batch: StoredBatch) -> None:
        count = len(batch.ids)
        self._reserve(count)
        start, end = self.n, self.n + count
        self.rows[start:end] = batch.rows
        self.vectors[start:end] = batch.embeddings
        self.alive[start:end] = True
        codes = self.label_codes
        for offset, (ex_id, text, label, meta) in enumerate(
            zip(batch.ids, batch.inputs, batch.labels, batch.metadata, strict=True)
        ):
            slot = start + offset
            self.ids.append(ex_id)
            self.inputs.append(text)
            self.slot_of_id[ex_id] = slot
            self.slots_of_text.setdefault(normalize_text(text), []).append(slot)
            if label is None:
                codes[slot] = -1
            else:
                code = self.label_index.get(label)
                if code is None:
                    code = self.label_index[label] = len(self.label_names)
                    self.label_names.append(label)
                codes[slot] = code
            for key, value in meta.items():
                self.postings.setdefault(str(key), {}).setdefault(value_key(value), []).append(slot)
        self.n = end

    def kill(self, slots: Iterable[int]) -> None:
        for slot in slots:
            if self.alive[slot]:
                self.alive[slot] = False
                self.dead += 1
                del self.slot_of_id[self.ids[slot]]

    def slots_of_rows(self, rows: Ints) -> npt.NDArray[np.intp]:
        return np.searchsorted(self.rows[: self.n], rows).astype(np.intp)


class ExampleIndex:
    """A corpus of examples, embedded and searchable, persisted as one directory.

    Build one with :meth:`build`, open one with :meth:`load`. Writes (:meth:`add`, :meth:`update`,
    :meth:`delete`) are durable in the store when they return, and the directory stays loadable
    without a warning; :meth:`save` also rewrites the FAISS file and the manifest. An index that
    lives in a directory holds its writer lock until :meth:`close` (or the end of a ``with``
    block); one loaded with ``read_only=True`` holds none and refuses writes.
    """

    def __init__(
        self,
        store: ExampleStore,
        encoder: Encoder | None,
        encoder_name: str,
        vectors: VectorIndex,
        columns: _Columns,
        *,
        path: Path | None = None,
        recall_at_10: float | None = None,
        device: str = "auto",
        build: BuildParams | None = None,
        writer: WriterLock | None = None,
        drift: int = 0,
    ) -> None:
        self._store = store
        self._encoder = encoder
        self._encoder_name = encoder_name
        self._device = device
        self._vectors = vectors
        self._columns = columns
        self._lexical: LexicalIndex | None = None
        self._lock = _RWLock()
        self._encoder_lock = threading.Lock()
        self._lexical_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._build_params = build or BuildParams()
        self._writer = writer
        self._drift = drift
        self._closed = False
        # The generation of a read-only store's pinned snapshot (the one its columns were read in).
        self._snapshot = store.generation if store.read_only else 0
        self.path = path
        self.recall_at_10 = recall_at_10

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        examples: Iterable[Example | Mapping[str, Any]],
        encoder: Encoder,
        *,
        embeddings: npt.ArrayLike | None = None,
        factory: str | None = None,
        path: str | os.PathLike[str] | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
        recall_target: float = 0.95,
        seed: int = 0,
    ) -> ExampleIndex:
        """Embed ``examples`` (or take precomputed ``embeddings``) and index them.

        ``factory`` is a FAISS factory string; by default exact ``Flat`` below 200k examples and
        an IVF index above, with ``nprobe`` tuned to ``recall_target`` recall@10. With ``path``
        the index is saved there and stays attached to that directory.
        """
        items = [as_example(row, i) for i, row in enumerate(examples)]
        if not items:
            raise DataError("the corpus is empty: give at least one example with an input")
        _check_unique_ids(items)
        if path is not None and Path(path).exists():
            # Refuse before embedding, which can take minutes, not after.
            raise ConfigError(
                f"{path} already exists; choose a new directory, or build without a path and "
                "save(path, overwrite=True)"
            )
        vectors = _checked_embeddings(
            embeddings,
            items,
            encoder.dim,
            encoder.name,
            lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=show_progress),
        )
        store = ExampleStore(None, dim=encoder.dim)
        store.set_info("encoder", encoder.name)
        store.set_info("dim", str(encoder.dim))
        columns = _Columns(encoder.dim)
        progress = tqdm(
            total=len(items),
            desc="storing",
            unit="ex",
            disable=not (show_progress or (show_progress is None and len(items) > 100_000)),
        )
        for start in range(0, len(items), _INSERT_CHUNK):
            chunk = items[start : start + _INSERT_CHUNK]
            chunk_vectors = vectors[start : start + _INSERT_CHUNK]
            rows, ids = store.insert(chunk, chunk_vectors)
            columns.append(_batch_of(rows, ids, chunk, chunk_vectors))
            progress.update(len(chunk))
        progress.close()
        params = BuildParams(factory=factory, recall_target=recall_target, seed=seed)
        chosen = factory or choose_factory(len(items))
        vector_index, recall = _build_vectors(columns, chosen, recall_target, seed)
        if (
            factory is None
            and vector_index.nprobe
            and vector_index.nprobe > vector_index.nlist // 4
        ):
            # Vectors without cluster structure: IVF would scan most lists anyway, slower than an
            # exact scan. Only the default choice falls back; an explicit factory is kept.
            logger.warning(
                "%s needs nprobe %d of %d lists for recall@10 %.2f; using an exact index",
                chosen,
                vector_index.nprobe,
                vector_index.nlist,
                recall_target,
            )
            vector_index, recall = _build_vectors(columns, "Flat", recall_target, seed)
        index = cls(
            store, encoder, encoder.name, vector_index, columns, recall_at_10=recall, build=params
        )
        if path is not None:
            index.save(path)
        return index

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        encoder: Encoder | None = None,
        *,
        model: str | None = None,
        device: str = "auto",
        read_only: bool = False,
    ) -> ExampleIndex:
        """Open an index directory, for writing (the default) or ``read_only``.

        A writer takes the directory's writer lock at once, or raises :class:`IndexLockedError`
        naming the pid that holds it; release it with :meth:`close`. A read-only index takes no
        lock, refuses writes and follows the writer's commits (see the module docstring).

        The encoder named in the manifest is loaded on first use unless ``encoder`` is given; an
        ``encoder`` or ``model`` other than the one the index was built with is refused. A vector
        file that lags the store is brought up to date from the stored embeddings; one that is
        missing, corrupt or unreadable is rebuilt from them (never re-embedded).
        """
        layout = IndexLayout(Path(path))
        _recover_interrupted_save(layout.root)
        if not layout.root.is_dir():
            raise IndexFormatError(f"{layout.root} is not a directory; build an index there first")
        Manifest.read(layout.manifest)  # a directory without a manifest gets no lock file
        writer = None if read_only else WriterLock(layout.root)
        try:
            # Read again under the lock: a writer that saved meanwhile may have replaced it.
            manifest = Manifest.read(layout.manifest)
            _check_encoder(manifest, encoder, model, layout.root)
            if not layout.store.is_file():
                raise IndexFormatError(f"{layout.root} has a manifest but no {layout.store.name}")
            store = ExampleStore(
                layout.store, dim=manifest.dim, mode="read" if read_only else "write"
            )
            try:
                columns = _read_columns(layout, manifest, store)
                vectors, drift, recall = _load_vectors(layout, manifest, columns)
            except BaseException:
                store.close()
                raise
        except BaseException:
            if writer is not None:
                writer.release()
            raise
        return cls(
            store,
            encoder,
            manifest.encoder,
            vectors,
            columns,
            path=layout.root,
            recall_at_10=recall,
            device=device,
            build=BuildParams(
                factory=manifest.build_factory,
                recall_target=manifest.recall_target,
                seed=manifest.seed,
            ),
            writer=writer,
            drift=drift,
        )

    # -- lifetime --------------------------------------------------------------------------------
    @property
    def read_only(self) -> bool:
        """Whether this index was opened with ``read_only=True``."""
        return self._store.read_only

    def close(self) -> None:
        """Write a lagging vector file, close the store and release the writer lock.

        Idempotent. The index cannot be used afterwards.
        """
        if self._closed:
            return
        try:
            if self._writer is not None and self.path is not None and self._drift:
                self._flush_vectors()
        finally:
            self._closed = True
            self._store.close()
            if self._writer is not None:
                self._writer.release()
                self._writer = None

    def __enter__(self) -> ExampleIndex:
        """Use the index in a ``with`` block; it is closed at the end."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the index (see :meth:`close`)."""
        self.close()

    def _check_writable(self) -> None:
        if self._closed:
            raise ConfigError("this index is closed; load it again to use it")
        if self.read_only:
            raise ReadOnlyError(
                f"{self.path} was opened read-only; load it without read_only=True (no other "
                "writer may hold it) to change it"
            )

    def _follow_writer(self) -> None:
        """Move a read-only index's snapshot to the writer's latest commit, if there is one."""
        if not self.read_only or self._closed or self._lock.held_here():
            return
        if self._store.latest_generation() == self._snapshot:
            return
        with self._lock.write():
            generation = self._store.pin_snapshot()
            if generation == self._snapshot:
                return
            cols = self._columns
            gone = np.setdiff1d(cols.rows[: cols.n][cols.alive[: cols.n]], self._store.live_rows())
            last = int(cols.rows[cols.n - 1]) if cols.n else 0
            if len(gone):
                cols.kill(cols.slots_of_rows(gone).tolist())
                self._vectors.remove(gone)
                if self._lexical is not None:
                    self._lexical.remove(gone)
            for batch in self._store.iter_batches(after=last):
                cols.append(batch)
                self._vectors.add(batch.rows, batch.embeddings)
                if self._lexical is not None:
                    self._lexical.add(batch.rows, batch.inputs)
            self._snapshot = generation

    # -- properties ------------------------------------------------------------------------------
    @property
    def encoder(self) -> Encoder:
        """The encoder; an index loaded without one loads the manifest's model on first use."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = encoder_from_name(self._encoder_name, device=self._device)
            return self._encoder

    @property
    def encoder_name(self) -> str:
        """The name of the model the index was built with."""
        return self._encoder_name

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self._columns.dim

    @property
    def factory(self) -> str:
        """The FAISS factory string of the vector index."""
        return self._vectors.factory

    def __len__(self) -> int:
        self._follow_writer()
        return self._columns.live

    def labels(self) -> dict[str, int]:
        """How many live examples carry each label."""
        self._follow_writer()
        with self._lock.read():
            cols = self._columns
            codes = cols.label_codes[: cols.n][cols.alive[: cols.n]]
            counts = np.bincount(codes[codes >= 0], minlength=len(cols.label_names))
            return {name: int(c) for name, c in zip(cols.label_names, counts, strict=True) if c}

    def fields(self) -> list[str]:
        """The fields filters can use: ``label`` and every metadata key seen."""
        return [LABEL_FIELD, *sorted(self._columns.postings)]

    def info(self) -> dict[str, Any]:
        """Statistics for ``kshot index info`` and ``GET /v1/index``."""
        labels = self.labels()
        return {
            "path": None if self.path is None else str(self.path),
            "count": len(self),
            "encoder": self.encoder_name,
            "dim": self.dim,
            "factory": self.factory,
            "nprobe": self._vectors.nprobe,
            "recall_at_10": self.recall_at_10,
            "labels": labels,
            "fields": self.fields(),
            "kshot_version": __version__,
            "notes": self.notes(),
        }

    def notes(self) -> dict[str, str]:
        """Notes on how the index was made (see :meth:`set_note`), by topic."""
        stored = self._store.get_info(_NOTES_KEY)
        return dict(json.loads(stored)) if stored else {}

    def set_note(self, topic: str, text: str) -> None:
        """Record a note on how the index was made, e.g. where the outputs came from.

        Notes live in the store, so they are durable at once and travel with every save.
        """
        with self._lock.write():
            notes = {**self.notes(), topic: text}
            self._store.set_info(_NOTES_KEY, json.dumps(notes, ensure_ascii=False, sort_keys=True))

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the shared lock: selectors read a consistent state inside it."""
        self._follow_writer()
        with self._lock.read():
            yield

    # -- writes ----------------------------------------------------------------------------------
    def add(
        self,
        examples: Iterable[Example | Mapping[str, Any]],
        *,
        embeddings: npt.ArrayLike | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
    ) -> list[str]:
        """Add examples; return their ids (assigned where empty). Durable when it returns.

        ``show_progress`` draws a progress bar while embedding (``None``: the encoder decides).
        """
        self._check_writable()
        items = [as_example(row, i) for i, row in enumerate(examples)]
        if not items:
            return []
        _check_unique_ids(items)
        # Precomputed embeddings need no encoder: an index loaded without one does not load it.
        vectors = _checked_embeddings(
            embeddings,
            items,
            self.dim,
            self.encoder_name,
            lambda texts: self.encoder.encode(
                texts, batch_size=batch_size, show_progress=show_progress
            ),
        )
        with self._lock.write():
            taken = [ex.id for ex in items if ex.id and ex.id in self._columns.slot_of_id]
            if taken:
                raise DataError(
                    f"example id {taken[0]!r} already exists in the index; "
                    "use update to change it or choose another id"
                )
            rows, ids = self._store.insert(items, vectors)
            self._columns.append(_batch_of(rows, ids, items, vectors))
            self._vectors.add(rows, vectors)
            if self._lexical is not None:
                self._lexical.add(rows, [ex.input for ex in items])
            self._drift += len(rows)
        self._flush_if_drifted()
        return ids

    def update(
        self,
        example_id: str,
        *,
        input: str | None = None,
        output: str | None = None,
        label: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Example:
        """Change fields of one example; a new input is re-embedded. Returns the new example.

        The new input is encoded outside the write lock, so reads go on meanwhile; should another
        write change the example in the meantime, the change is applied again to its new state.
        """
        self._check_writable()
        changes: dict[str, Any] = {}
        if input is not None:
            changes["input"] = input
        if output is not None:
            changes["output"] = output
        if label is not None:
            changes["label"] = label
        if metadata is not None:
            changes["metadata"] = dict(metadata)
        encoded: dict[str, Floats] = {}
        while True:
            with self._lock.read():
                old_row = int(self._columns.rows[self._slot_of(example_id)])
                current = self._store.fetch([old_row])[0]
            new = as_example(replace(current, **changes))
            if new.input != current.input and new.input not in encoded:
                encoded[new.input] = self.encoder.encode([new.input])[0]
            with self._lock.write():
                slot = self._slot_of(example_id)
                if int(self._columns.rows[slot]) != old_row:
                    continue  # changed while we encoded: merge the change into its new state
                vector = encoded.get(new.input)
                if vector is None or new.input == current.input:
                    vector = self._columns.vectors[slot].copy()
                new_row = self._store.replace(old_row, new, vector)
                self._columns.kill([slot])
                rows = np.array([new_row], np.int64)
                self._columns.append(_batch_of(rows, [new.id], [new], vector[None, :]))
                self._vectors.remove(np.array([old_row], np.int64))
                self._vectors.add(rows, vector[None, :])
                if self._lexical is not None:
                    self._lexical.remove(np.array([old_row], np.int64))
                    self._lexical.add(rows, [new.input])
                self._drift += 2
                break
        self._flush_if_drifted()
        return new

    def delete(self, ids: Sequence[str]) -> int:
        """Delete examples by id; unknown ids raise and nothing is deleted. Returns the count."""
        self._check_writable()
        with self._lock.write():
            unknown = [i for i in ids if i not in self._columns.slot_of_id]
            if unknown:
                raise NotFoundError(f"no example with id {unknown[0]!r} in the index")
            slots = sorted({self._columns.slot_of_id[i] for i in ids})
            rows = self._columns.rows[slots].copy()
            self._store.delete([int(r) for r in rows])
            self._columns.kill(slots)
            self._vectors.remove(rows)
            if self._lexical is not None:
                self._lexical.remove(rows)
            self._drift += len(rows)
        self._flush_if_drifted()
        return len(slots)

    def _flush_if_drifted(self) -> None:
        if self.path is not None and self._drift > drift_limit(len(self)):
            self._flush_vectors()

    def _flush_vectors(self) -> None:
        """Rewrite the vector file and the manifest of the directory the index lives in."""
        assert self.path is not None
        with self._flush_lock:
            with self._lock.write():
                if self._vectors_need_rebuild():
                    self._vectors, _ = self._rebuild_vectors()
            # Writing the file only reads the index: searches go on, writes wait.
            with self._lock.read():
                self._store.checkpoint()
                self._write_vectors_and_manifest(IndexLayout(self.path))
                self._drift = 0

    def _rebuild_vectors(self) -> tuple[VectorIndex, float | None]:
        params = self._build_params
        return _build_vectors(
            self._columns, params.factory or self.factory, params.recall_target, params.seed
        )

    def save(self, path: str | os.PathLike[str] | None = None, *, overwrite: bool = False) -> Path:
        """Persist the index atomically and return its directory.

        Saving to the directory the index lives in rewrites the vector file and the manifest (the
        store is already durable). Saving elsewhere writes a complete copy beside the target and
        renames it into place; an existing index there is replaced only with ``overwrite``, and
        only when no other writer holds it. The index then lives in (and holds the lock of) the
        target.
        """
        self._check_writable()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ConfigError("this index has no directory yet: pass save(path)")
        if self.path is not None and target.resolve() == self.path.resolve():
            self._flush_vectors()
            return target
        with self._lock.write():
            if self._vectors_need_rebuild():
                self._vectors, _ = self._rebuild_vectors()
            return self._save_copy(target, overwrite)

    def _save_copy(self, target: Path, overwrite: bool) -> Path:
        if target.exists() and not overwrite:
            raise ConfigError(f"{target} already exists; pass overwrite=True to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        # The target's own lock, so that no writer of the old index there is overwritten; the
        # staging directory's, so that the new index is locked from the instant it goes live.
        replaced = WriterLock(target) if target.is_dir() else None
        staging = Path(
            tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        )
        writer: WriterLock | None = None
        try:
            writer = WriterLock(staging)
            layout = IndexLayout(staging)
            self._store.backup_to(layout.store)
            self._write_vectors_and_manifest(layout)
            fsync_dir(staging)
            if not target.exists():
                os.replace(staging, target)
            elif exchange_paths(staging, target):
                # One atomic swap: the target is the old index or the new one at every instant.
                fsync_dir(target.parent)
                shutil.rmtree(staging, ignore_errors=True)
            else:
                # Two renames; a crash between them leaves only `.old` (still locked by us while
                # we live), which load() restores.
                old = _aside(target)
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(staging, target)
                fsync_dir(target.parent)
                shutil.rmtree(old, ignore_errors=True)
            fsync_dir(target.parent)
        except BaseException:
            if writer is not None:
                writer.release()
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            if replaced is not None:
                replaced.release()
        self._store.close()
        self._store = ExampleStore(IndexLayout(target).store, dim=self.dim, mode="write")
        if self._writer is not None:
            self._writer.release()
        self._writer = writer
        self._drift = 0
        self.path = target
        return target

    def _write_vectors_and_manifest(self, layout: IndexLayout) -> None:
        with atomic_path(layout.vectors) as tmp:
            self._vectors.save(tmp)
            digest = sha256(tmp)
        manifest = Manifest(
            kshot_version=__version__,
            encoder=self.encoder_name,
            dim=self.dim,
            factory=self.factory,
            count=len(self),
            generation=self._store.generation,
            vectors_sha256=digest,
            nprobe=self._vectors.nprobe,
            recall_at_10=self.recall_at_10,
            build_factory=self._build_params.factory,
            recall_target=self._build_params.recall_target,
            seed=self._build_params.seed,
        )
        atomic_write_bytes(layout.manifest, manifest.to_json().encode("utf-8"))

    def _vectors_need_rebuild(self) -> bool:
        # Index types that cannot remove vectors (HNSW) only hide them; a file must not hold them.
        return self._vectors.ntotal != self._columns.live

    # -- reads -----------------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Example]:
        """Return the examples with these ids, in order; an unknown id raises NotFoundError."""
        self._follow_writer()
        with self._lock.read():
            slots = [self._slot_of(i) for i in ids]
            return self._store.fetch([int(self._columns.rows[s]) for s in slots])

    def examples_at(self, slots: Sequence[int]) -> list[Example]:
        """The examples at in-memory slots (call inside :meth:`reading`)."""
        return self._store.fetch([int(self._columns.rows[s]) for s in slots])

    def __iter__(self) -> Iterator[Example]:
        """Every live example in insertion order; ones removed meanwhile are skipped."""
        self._follow_writer()
        with self._lock.read():
            live = np.flatnonzero(self._columns.alive[: self._columns.n])
        for start in range(0, len(live), 1000):
            # Each chunk is read under the lock: a concurrent delete or update must not leave a
            # slot whose row is gone from the store.
            with self._lock.read():
                chunk = live[start : start + 1000]
                chunk = chunk[self._columns.alive[chunk]]
                examples = self.examples_at(chunk.tolist())
            yield from examples

    def _slot_of(self, example_id: str) -> int:
        slot = self._columns.slot_of_id.get(example_id)
        if slot is None:
            raise NotFoundError(f"no example with id {example_id!r} in the index")
        return slot

    def encode_queries(self, queries: Sequence[str]) -> Floats:
        """Validate and encode query texts (empty or whitespace-only queries raise)."""
        for position, query in enumerate(queries):
            if not isinstance(query, str) or not query.strip():
                raise QueryError(
                    f"query {position} is empty or whitespace only; give some text to select for"
                )
        return self.encoder.encode(list(queries))

    def check_query_vectors(self, vectors: npt.ArrayLike) -> Floats:
        """Validate precomputed query vectors: 2-D, the index's dimension, finite."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise QueryError(
                f"query vectors have shape {array.shape}; this index needs (n, {self.dim})"
            )
        if not np.isfinite(array).all():
            raise QueryError("query vectors contain NaN or infinity")
        return array

    # The methods below, with `reading`, `examples_at` and `encode_queries`, are the selectors'
    # view of the index (kshot.selector.view.IndexView); call them inside `reading()`.
    @property
    def n_slots(self) -> int:
        """How many slots the columns use, tombstones included."""
        return self._columns.n

    def resolve(self, filter: Filter | None = None, exclude: Iterable[str] = ()) -> Mask | None:
        """The mask of slots a request may return, or ``None`` for every live example."""
        cols = self._columns
        wanted = filter_values(filter)
        excluded = [cols.slot_of_id[i] for i in exclude if i in cols.slot_of_id]
        if not wanted and not excluded:
            return None
        mask = cols.alive[: cols.n].copy()
        for field, values in wanted.items():
            mask &= self._field_mask(field, values)
        if excluded:
            mask[excluded] = False
        return mask

    def _field_mask(self, field: str, values: list[Any]) -> Mask:
        cols = self._columns
        if field == LABEL_FIELD:
            codes = [cols.label_index[str(v)] for v in values if str(v) in cols.label_index]
            return np.isin(cols.label_codes[: cols.n], np.array(codes, np.int32))
        postings = cols.postings.get(field)
        if postings is None:
            raise FilterError(
                f"no example has the field {field!r}; fields you can filter on: {self.fields()}"
            )
        mask = np.zeros(cols.n, np.bool_)
        for value in values:
            slots = postings.get(value_key(value))
            if slots:
                mask[slots] = True
        if not mask.any():
            check_value_kinds(field, values, postings)
        return mask

    def vector_search(self, queries: Floats, k: int, mask: Mask | None) -> tuple[Floats, Ints]:
        """Top-k live slots by cosine similarity, inside ``mask``; ``-1`` pads short rows."""
        cols = self._columns
        m = len(queries)
        scores = np.full((m, k), -np.inf, np.float32)
        slots = np.full((m, k), -1, np.int64)
        if k <= 0:
            return scores, slots
        allowed = None if mask is None else np.flatnonzero(mask)
        if allowed is not None and len(allowed) <= EXACT_FILTER_LIMIT:
            found_scores, positions = exact_search(queries, cols.vectors[allowed], k)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = allowed[positions]
            return scores, slots
        if self.factory == "Flat" and (mask is not None or m >= EXACT_BATCH_MIN):
            # An exact index gains nothing from FAISS here: one BLAS product per block of queries
            # beats FAISS's per-query scan, and a mask needs no id selector.
            valid = mask if mask is not None else (cols.alive[: cols.n] if cols.dead else None)
            found_scores, positions = exact_search(queries, cols.vectors[: cols.n], k, valid=valid)
            width = found_scores.shape[1]
            scores[:, :width] = found_scores
            slots[:, :width] = positions
            return scores, slots
        allowed_rows = None if allowed is None else cols.rows[allowed]
        found_scores, rows = self._vectors.search(queries, k, allowed_rows=allowed_rows)
        valid = rows >= 0
        scores[valid] = found_scores[valid]
        slots[valid] = cols.slots_of_rows(rows[valid])
        return scores, slots

    def slot_vectors(self, slots: npt.ArrayLike) -> Floats:
        """The stored vectors at ``slots``."""
        return self._columns.vectors[np.asarray(slots, np.intp)]

    def slot_rows(self, slots: npt.ArrayLike) -> Ints:
        """The store rows at ``slots`` (the keys of the lexical index)."""
        return self._columns.rows[np.asarray(slots, np.intp)]

    def slots_of_rows(self, rows: Ints) -> npt.NDArray[np.intp]:
        """The slots holding store ``rows``."""
        return self._columns.slots_of_rows(rows)

    def slot_text(self, slot: int) -> str:
        """The input text at ``slot``."""
        return self._columns.inputs[slot]

    def slot_labels(self, slots: npt.ArrayLike) -> npt.NDArray[np.int32]:
        """Label codes at ``slots`` (``-1`` for no label); see :meth:`label_name`."""
        return self._columns.label_codes[np.asarray(slots, np.intp)]

    def label_name(self, code: int) -> str | None:
        """The label of a label code."""
        return None if code < 0 else self._columns.label_names[code]

    def label_code(self, label: str) -> int | None:
        """The code of a label, or ``None`` when no example carries it."""
        return self._columns.label_index.get(label)

    def live_slots(self, mask: Mask | None) -> npt.NDArray[np.intp]:
        """Every live slot inside ``mask``, ascending."""
        cols = self._columns
        alive = cols.alive[: cols.n]
        return np.flatnonzero(alive if mask is None else alive & mask)

    def slots_matching_text(self, text: str) -> list[int]:
        """Live slots whose input equals ``text`` after :func:`normalize_text`."""
        slots = self._columns.slots_of_text.get(normalize_text(text), [])
        return [s for s in slots if self._columns.alive[s]]

    @property
    def lexical(self) -> LexicalIndex:
        """The lexical index over example inputs, built on first use and kept in step."""
        with self._lexical_lock:
            if self._lexical is None:
                cols = self._columns
                live = np.flatnonzero(cols.alive[: cols.n])
                lexical = LexicalIndex()
                lexical.add(cols.rows[live], [cols.inputs[s] for s in live])
                self._lexical = lexical
            return self._lexical


def _aside(target: Path) -> Path:
    """Where an overwriting save parks the old index while it renames the new one into place."""
    return target.with_name(f".{target.name}.old")


def _recover_interrupted_save(root: Path) -> None:
    """Put back an index that a save killed between its two renames left aside."""
    old = _aside(root)
    if root.exists() or not IndexLayout(old).manifest.is_file():
        return
    try:
        # A saver between its two renames still holds the lock of the index it set aside.
        guard = WriterLock(old)
    except IndexLockedError:
        return
    try:
        os.replace(old, root)
    except OSError:  # another process got there first, or the directory is read-only
        return
    finally:
        guard.release()
    logger.warning(
        "%s: a save was interrupted; restored the previous index from %s", root, old.name
    )


def _check_unique_ids(items: Sequence[Example]) -> None:
    seen: dict[str, int] = {}
    for position, example in enumerate(items):
        if not example.id:
            continue
        if example.id in seen:
            raise DataError(
                f"duplicate example id {example.id!r} at examples {seen[example.id]} and "
                f"{position}; ids must be unique"
            )
        seen[example.id] = position


def _checked_embeddings(
    embeddings: npt.ArrayLike | None,
    items: Sequence[Example],
    dim: int,
    encoder_name: str,
    encode: Callable[[list[str]], Floats],
) -> Floats:
    if embeddings is None:
        return encode([ex.input for ex in items])
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape != (len(items), dim):
        raise DataError(
            f"embeddings have shape {array.shape}; expected ({len(items)}, {dim}) "
            f"for {len(items)} examples and encoder {encoder_name!r}"
        )
    if not np.isfinite(array).all():
        raise DataError("embeddings contain NaN or infinity")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataError("embeddings contain all-zero rows, which have no direction")
    return np.ascontiguousarray(array / norms, dtype=np.float32)


def _batch_of(rows: Ints, ids: list[str], items: Sequence[Example], vectors: Floats) -> StoredBatch:
    return StoredBatch(
        rows=rows,
        ids=ids,
        inputs=[ex.input for ex in items],
        labels=[ex.label for ex in items],
        metadata=[dict(ex.metadata) for ex in items],
        embeddings=vectors,
    )


@dataclass(frozen=True)
class BuildParams:
    """How the vector index was built, recorded in the manifest so that rebuilds do the same.

    ``factory`` is the one asked for (``None``: chosen by size); the manifest's ``factory`` is the
    one in use, which a small index may have had to scale down.
    """

    factory: str | None = None
    recall_target: float = 0.95
    seed: int = 0


def _build_vectors(
    columns: _Columns, factory: str, recall_target: float, seed: int, problem: str = ""
) -> tuple[VectorIndex, float | None]:
    """Build the vector index; a factory too big for the rows falls back with one warning.

    ``problem`` (why the build happens, if not asked for) goes into that one warning, so that a
    rebuild that also falls back says both in one line.
    """
    live = np.flatnonzero(columns.alive[: columns.n])
    vectors = columns.vectors[live]
    rows = columns.rows[live]
    notes = [problem] if problem else []
    fitted = fit_factory(factory, len(vectors))
    if fitted != factory:
        notes.append(
            f"{factory} needs at least as many vectors as lists and there are {len(vectors)}: "
            f"using {fitted}"
        )
    index = VectorIndex.create(columns.dim, fitted)
    rng = np.random.default_rng(seed)
    if not index.is_trained:
        # k-means needs about 40 points per list (FAISS warns below 39); more only costs time.
        size = min(len(vectors), max(40 * index.nlist, 10_000))
        try:
            index.train(vectors[rng.choice(len(vectors), size=size, replace=False)])
        except RuntimeError as exc:  # FAISS asserts: too few vectors for its codebooks
            notes.append(
                f"{fitted} cannot be trained on {len(vectors)} vectors "
                f"({str(exc).strip().splitlines()[-1]}): using an exact index"
            )
            index = VectorIndex.create(columns.dim, "Flat")
    if notes:
        logger.warning("; ".join(notes))
    index.add(rows, vectors)
    if index.factory.startswith("IVF"):
        picks = rng.choice(
            len(vectors), size=min(len(vectors) // 2, _RECALL_QUERIES), replace=False
        )
        others = np.ones(len(vectors), np.bool_)
        others[picks] = False
        _, exact = exact_search(vectors[picks], vectors, 10, valid=others)
        stats = index.tune(vectors[picks], rows[exact], 10, recall_target, held_out=rows[picks])
        return index, stats.recall_at_10
    return index, None


def _check_encoder(
    manifest: Manifest, encoder: Encoder | None, model: str | None, root: Path
) -> None:
    asked = encoder.name if encoder is not None else model
    if asked is not None and asked != manifest.encoder:
        raise EncoderMismatchError(
            f"{root} was built with encoder {manifest.encoder!r} (dim {manifest.dim}), not "
            f"{asked!r}; load it without naming a model, or rebuild it with {asked!r}"
        )
    if encoder is not None and encoder.dim != manifest.dim:
        raise EncoderMismatchError(
            f"{root} holds vectors of dimension {manifest.dim}, but encoder {encoder.name!r} "
            f"makes dimension {encoder.dim}"
        )


def _read_columns(layout: IndexLayout, manifest: Manifest, store: ExampleStore) -> _Columns:
    try:
        stored_name, stored_dim = store.get_info("encoder"), store.get_info("dim")
        if stored_name != manifest.encoder or stored_dim != str(manifest.dim):
            raise IndexFormatError(
                f"{layout.store} was written by encoder {stored_name!r} (dim {stored_dim}), "
                f"but the manifest says {manifest.encoder!r} (dim {manifest.dim}); the index "
                "is inconsistent: rebuild it"
            )
        columns = _Columns(manifest.dim)
        for batch in store.iter_batches():
            columns.append(batch)
    except sqlite3.DatabaseError as exc:
        # Damage past the header only shows when the rows are read.
        raise IndexFormatError(
            f"{layout.store} is damaged ({exc}); restore it from a copy or rebuild the index"
        ) from exc
    return columns


def _load_vectors(
    layout: IndexLayout, manifest: Manifest, columns: _Columns
) -> tuple[VectorIndex, int, float | None]:
    """The vector index in step with ``columns``, how many rows the file lagged, its recall."""
    problem: str | None = None
    if not layout.vectors.is_file():
        problem = "is missing"
    elif sha256(layout.vectors) != manifest.vectors_sha256:
        problem = "does not match its checksum (corrupt)"
    if problem is None:
        try:
            vectors = VectorIndex.load(layout.vectors, manifest.factory, nprobe=manifest.nprobe)
        except IndexFormatError:
            problem = "cannot be read by FAISS"
        else:
            drift = _reconcile(vectors, columns) if vectors.dim == manifest.dim else None
            if drift is not None:
                return vectors, drift, manifest.recall_at_10
            problem = "does not hold vectors this index can use"
    rebuilt, recall = _build_vectors(
        columns,
        manifest.build_factory or manifest.factory,
        manifest.recall_target,
        manifest.seed,
        problem=f"{layout.vectors} {problem}; rebuilt it from the stored embeddings "
        "(no re-embedding)",
    )
    if rebuilt.factory == manifest.factory and manifest.nprobe:
        rebuilt.nprobe = min(rebuilt.nlist, max(rebuilt.nprobe or 1, manifest.nprobe))
    return rebuilt, columns.live, recall


def _reconcile(vectors: VectorIndex, columns: _Columns) -> int | None:
    """Make ``vectors`` hold exactly the live rows: add the missing, remove the extra.

    Rows are never reused (an update writes a new row), so a row the file holds has the vector
    stored for it; only the set of rows can differ. Returns how many rows changed, or ``None``
    where the file's rows cannot be listed or it would need rebuilding anyway.
    """
    held = vectors.row_ids()
    if held is None:
        return None
    cols = columns
    live_slots = np.flatnonzero(cols.alive[: cols.n])
    live = cols.rows[live_slots]
    extra = np.setdiff1d(held, live)
    missing = ~np.isin(live, held)
    if len(extra) > len(live) or missing.sum() > max(len(live) // 2, drift_limit(0)):
        return None  # mostly another state: a clean rebuild is cheaper and tighter
    if len(extra):
        vectors.remove(extra)
    if missing.any():
        vectors.add(live[missing], cols.vectors[live_slots[missing]])
    changed = len(extra) + int(missing.sum())
    if changed:
        logger.info("%d vector rows differed from the store; brought up to date", changed)
    return changed
