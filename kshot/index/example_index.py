"""ExampleIndex: the example store, its vectors and its lexical index, kept in step.

The SQLite store is the source of truth and every write commits there first; the in-memory columns
(:mod:`kshot.index.columns`), the FAISS index (:mod:`kshot.index.vectors`) and the lexical index
follow it. Reads take a shared lock and writes an exclusive one (:mod:`kshot.index.lock`), so
concurrent readers see the state before a write or after it, never half of it. Encoding, the slow
part of a write, happens before the write lock is taken.

Across processes there is one writer per directory: it holds the directory's writer lock from
load (or save) to :meth:`ExampleIndex.close`. Read-only openers take no lock; each reads a pinned
SQLite snapshot (a read transaction), so the rows its columns name always exist however the
writer changes the store, and before each read it checks the store's generation and, when a
writer has committed since, moves its snapshot forward and applies only the difference (new rows
appended, vanished rows removed) to its columns and indexes.

Writes update the in-memory FAISS index only; the vector file is rewritten once it lags the store
by more than :func:`~kshot.index.persistence.drift_limit` rows, on :meth:`ExampleIndex.save` and
on :meth:`ExampleIndex.close`. Layout, opening, reconciling and atomic saves live in
:mod:`kshot.index.persistence`; selectors read the index through :attr:`ExampleIndex.view`
(:mod:`kshot.index.slots`).

This module is about 700 lines, over the usual 500, because it is the public class only: each
write (add, update with encoding outside the lock and a retry, delete), the follow-the-writer
step of read-only openers, save and close are kept whole here, since each is the order in which
the store, columns, vectors and lexical index change together; splitting them would scatter one
invariant over several files. The input checks at the bottom are the next candidate to move out.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from kshot._version import __version__
from kshot.errors import ConfigError, DataError, NotFoundError, QueryError, ReadOnlyError
from kshot.index.assign import SharedAssignment
from kshot.index.background import Background
from kshot.index.batch import ExampleBatch, batch_of_rows, check_unique_ids
from kshot.index.columns import Columns, batch_of
from kshot.index.encoder import Encoder, encoder_from_name
from kshot.index.factories import validate_factory
from kshot.index.filters import normalize_text
from kshot.index.lexical import LexicalIndex
from kshot.index.lock import ReadWriteLock, WriterLock
from kshot.index.persistence import (
    IndexLayout,
    Manifest,
    drift_limit,
    open_index,
    write_copy,
    write_vector_file,
)
from kshot.index.slots import SlotView
from kshot.index.store import ExampleStore
from kshot.index.vector_build import BuildParams, build_vectors
from kshot.index.vectors import (
    VectorIndex,
    caller_threads,
    choose_factory,
    exact_search,
    faiss_threads,
)
from kshot.types import Example, as_example

__all__ = ["ExampleIndex", "as_example", "normalize_text"]

logger = logging.getLogger(__name__)

Floats = npt.NDArray[np.float32]

_INSERT_CHUNK = 20_000
#: The k of the recall that builds and :meth:`ExampleIndex.tune` measure (the manifest's).
_RECALL_K = 10
#: Rows per block when checking and normalising given embeddings.
_CHECK_BLOCK = 65_536
#: Given embeddings whose norms are all this close to 1 are taken as already normalised.
_UNIT_TOLERANCE = 1e-5
# The store's info key holding the notes of set_note, as one JSON object.
_NOTES_KEY = "notes"


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
        columns: Columns,
        *,
        path: Path | None = None,
        recall_at_10: float | None = None,
        recall_queries: int | None = None,
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
        self._lock = ReadWriteLock()
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
        self.recall_queries = recall_queries

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
        mmap: bool = False,
    ) -> ExampleIndex:
        """Embed ``examples`` (or take precomputed ``embeddings``) and index them.

        ``factory`` is a FAISS factory string (:mod:`kshot.index.factories`); by default exact
        ``Flat`` below 50k examples and an IVF index above, with ``nprobe`` tuned to
        ``recall_target`` recall@10. Compressed ones (``SQ8``, ``IVF1024,PQ48``) keep no float32
        vectors in memory and have their recall measured. ``mmap`` makes every load map the
        vector file instead of reading it. With ``path`` the index is saved there and stays
        attached to that directory.
        """
        batch = batch_of_rows(examples)
        if not len(batch):
            raise DataError("the corpus is empty: give at least one example with an input")
        check_unique_ids(batch.ids)
        if factory is not None:
            validate_factory(factory, encoder.dim)
        if path is not None and Path(path).exists():
            # Refuse before embedding, which can take minutes, not after.
            raise ConfigError(
                f"{path} already exists; choose a new directory, or build without a path and "
                "save(path, overwrite=True)"
            )
        vectors = _checked_embeddings(
            embeddings,
            batch.inputs,
            encoder.dim,
            encoder.name,
            lambda texts: encoder.encode(texts, batch_size=batch_size, show_progress=show_progress),
        )
        store = ExampleStore(None, dim=encoder.dim)
        store.set_info("encoder", encoder.name)
        store.set_info("dim", str(encoder.dim))
        params = BuildParams(factory=factory, recall_target=recall_target, seed=seed, mmap=mmap)
        chosen = factory or choose_factory(len(batch))
        columns = Columns(encoder.dim)
        # The vector index is built (FAISS releases the GIL) while this thread fills the store and
        # the columns: each takes about half of a large build. A fresh store numbers rows from
        # its next row on, so the vector index knows them before the store has written them.
        first_row = store.next_row
        rows = np.arange(first_row, first_row + len(batch), dtype=np.int64)
        assignment = SharedAssignment(vectors)
        vector_build = Background(
            functools.partial(
                _build_vectors_under,
                caller_threads(),
                encoder.dim,
                rows,
                vectors,
                chosen,
                recall_target,
                seed,
                fallback=factory is None,
                assignment=assignment,
            ),
            name="kshot-build-vectors",
        )
        progress = tqdm(
            total=len(batch),
            desc="storing",
            unit="ex",
            disable=not (show_progress or (show_progress is None and len(batch) > 100_000)),
        )
        # One transaction per chunk: SQLite's per-commit cost is paid once per 20k rows, and a
        # chunk's Python objects (its insert tuples) never exist for the whole corpus at once.
        for start in range(0, len(batch), _INSERT_CHUNK):
            chunk = batch.slice(start, start + _INSERT_CHUNK)
            chunk_vectors = vectors[start : start + _INSERT_CHUNK]
            chunk_rows, ids = store.insert(chunk, chunk_vectors, first=start)
            columns.append(batch_of(chunk_rows, ids, chunk, chunk_vectors))
            progress.update(len(chunk))
        progress.close()
        del batch  # the columns and the store hold what the index needs of it
        if not np.array_equal(columns.live_rows(), rows):
            raise RuntimeError("the store numbered the built rows other than expected")
        # Done with the store: take a share of assigning the vectors to IVF lists rather than
        # wait for the vector thread to do it all (half of a large build; kshot.index.assign).
        assignment.help()
        vector_index, recall = vector_build.result()
        # The vector index holds its own copy now; the caller's array (or our normalised copy)
        # is not kept.
        del vectors, vector_build, assignment
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
        opened = open_index(Path(path), encoder, model, read_only=read_only)
        return cls(
            opened.store,
            encoder,
            opened.manifest.encoder,
            opened.vectors,
            opened.columns,
            path=Path(path),
            recall_at_10=opened.recall_at_10,
            recall_queries=opened.recall_queries,
            device=device,
            build=opened.manifest.build,
            writer=opened.writer,
            drift=opened.drift,
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
            return self._columns.label_counts()

    def fields(self) -> list[str]:
        """The fields filters can use: ``label`` and every metadata key seen."""
        return self._columns.fields()

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
            "recall_queries": self.recall_queries,
            "mmap": self._build_params.mmap,
            "vectors_in_memory": self._vectors.holds_exact_vectors,
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
        batch = batch_of_rows(examples)
        if not len(batch):
            return []
        check_unique_ids(batch.ids)
        # Precomputed embeddings need no encoder: an index loaded without one does not load it.
        vectors = _checked_embeddings(
            embeddings,
            batch.inputs,
            self.dim,
            self.encoder_name,
            lambda texts: self.encoder.encode(
                texts, batch_size=batch_size, show_progress=show_progress
            ),
        )
        with self._lock.write():
            # An id already in the index is refused by the store's unique id index, which
            # names it; nothing is written then.
            rows, ids = self._store.insert(batch, vectors)
            self._columns.append(batch_of(rows, ids, batch, vectors))
            self._vectors.add(rows, vectors)
            if self._lexical is not None:
                self._lexical.add(rows, batch.inputs)
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
                    vector = self._store.embeddings([old_row])[0]
                new_row = self._store.replace(old_row, new, vector)
                self._columns.kill([slot])
                rows = np.array([new_row], np.int64)
                self._columns.append(
                    batch_of(rows, [new.id], ExampleBatch.of([new]), vector[None, :])
                )
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
            found = self._store.rows_of(ids)
            unknown = [i for i, row in zip(ids, found, strict=True) if row is None]
            if unknown:
                raise NotFoundError(f"no example with id {unknown[0]!r} in the index")
            rows = np.unique(np.array(found, np.int64))
            slots = self._columns.slots_of_rows(rows).tolist()
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
                self._write_files(IndexLayout(self.path))
                self._drift = 0

    def _rebuild_vectors(self) -> tuple[VectorIndex, float | None]:
        params = self._build_params
        return build_vectors(
            self.dim,
            *self._store.all_embeddings(),
            params.factory or self.factory,
            params.recall_target,
            params.seed,
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
        writer = write_copy(self._store, self._write_files, target, overwrite=overwrite)
        self._store.close()
        self._store = ExampleStore(IndexLayout(target).store, dim=self.dim, mode="write")
        if self._writer is not None:
            self._writer.release()
        self._writer = writer
        self._drift = 0
        self.path = target
        return target

    def _write_files(self, layout: IndexLayout) -> None:
        """Write the vector file, then the manifest that names its checksum."""
        Manifest(
            kshot_version=__version__,
            encoder=self.encoder_name,
            dim=self.dim,
            factory=self.factory,
            count=len(self),
            generation=self._store.generation,
            vectors_sha256=write_vector_file(layout, self._vectors),
            nprobe=self._vectors.nprobe,
            recall_at_10=self.recall_at_10,
            recall_queries=self.recall_queries,
            build_factory=self._build_params.factory,
            recall_target=self._build_params.recall_target,
            seed=self._build_params.seed,
            mmap=self._build_params.mmap,
        ).write(layout.manifest)

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
                examples = self._store.fetch([int(r) for r in self._columns.rows[chunk]])
            yield from examples

    def _slot_of(self, example_id: str) -> int:
        slots = self._slots_of_ids([example_id])
        if not slots:
            raise NotFoundError(f"no example with id {example_id!r} in the index")
        return slots[0]

    def _slots_of_ids(self, ids: Iterable[str]) -> list[int]:
        """The slots of the ids the index holds, in order; unknown ids are left out.

        Ids live in the store (its unique index), not in memory; the store's rows are the live
        slots' rows at every moment a lock is held, so the row finds the slot.
        """
        rows = [row for row in self._store.rows_of(list(ids)) if row is not None]
        if not rows:
            return []
        slots: list[int] = self._columns.slots_of_rows(np.array(rows, np.int64)).tolist()
        return slots

    def tune(self, queries: Sequence[str] | npt.ArrayLike, *, target: float | None = None) -> float:
        """Measure the vector search's recall@10 on real queries; tune an IVF index's nprobe.

        The build can only measure recall on stored rows, each hidden from its own search, and
        on a corpus of near-duplicates that overstates what new queries get. ``queries``, texts
        (encoded here) or their vectors, should be queries as users send them, not stored rows.
        An IVF index probes as many lists as reach ``target`` (default: the build's
        ``recall_target``), never fewer than 16; other indexes are only measured. Returns the
        recall, which :meth:`info` and, after :meth:`save`, the manifest report with the number
        of queries that measured it. A read-only index is tuned in memory only.
        """
        goal = self._build_params.recall_target if target is None else target
        if not 0 < goal <= 1:
            raise ConfigError(f"target must be in (0, 1], not {goal}")
        if isinstance(queries, str):
            queries = [queries]
        if isinstance(queries, Sequence) and queries and all(isinstance(q, str) for q in queries):
            vectors = self.encode_queries([str(q) for q in queries])
        else:
            vectors = self.check_query_vectors(queries)
        if not len(vectors):
            raise QueryError("give at least one query to measure recall on")
        if len(self) < _RECALL_K:
            raise ConfigError(
                f"this index holds {len(self)} examples; recall@{_RECALL_K} needs at least "
                f"{_RECALL_K}"
            )
        self._follow_writer()
        if self._vectors.exact:  # finds every neighbour: nothing to read or search
            self.recall_at_10, self.recall_queries = 1.0, len(vectors)
            return 1.0
        with self._lock.write():  # nprobe changes under it; searches wait
            rows, stored = self._store.all_embeddings()
            _, exact = exact_search(vectors, stored, _RECALL_K)
            stats = self._vectors.tune(
                vectors,
                rows[exact],
                _RECALL_K,
                goal,
                vectors_of=lambda wanted: stored[np.searchsorted(rows, wanted)],
            )
            assert stats.recall_at_10 is not None  # measured: the index is not exact
            self.recall_at_10, self.recall_queries = stats.recall_at_10, len(vectors)
        return stats.recall_at_10

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

    @property
    def view(self) -> SlotView:
        """The selectors' slot-level view of this index (see :mod:`kshot.index.slots`)."""
        return SlotView(
            self._columns,
            reading=self.reading,
            encode=self.encode_queries,
            vectors=self._current_vectors,
            fetch=self._fetch_rows,
            texts=self._store_inputs,
            slots_of_ids=self._slots_of_ids,
            lexical=self._lexical_index,
            stored_vectors=self._stored_vectors,
        )

    def _current_vectors(self) -> VectorIndex:
        return self._vectors

    def _stored_vectors(self, rows: npt.NDArray[np.int64]) -> Floats:
        return self._store.embeddings(rows.tolist())

    def _fetch_rows(self, rows: list[int]) -> list[Example]:
        return self._store.fetch(rows)

    def _store_inputs(self, rows: list[int]) -> list[str]:
        return self._store.inputs(rows)

    def _lexical_index(self) -> LexicalIndex:
        """The lexical index over example inputs, built on first use and kept in step."""
        with self._lexical_lock:
            if self._lexical is None:
                # The texts come from the store a batch at a time (they are not kept in memory);
                # its rows are the live slots' rows while the caller holds the read lock.
                lexical = LexicalIndex()
                for batch in self._store.iter_batches(embeddings=False):
                    lexical.add(batch.rows, batch.inputs)
                self._lexical = lexical
            return self._lexical


def _checked_embeddings(
    embeddings: npt.ArrayLike | None,
    inputs: Sequence[str],
    dim: int,
    encoder_name: str,
    encode: Callable[[list[str]], Floats],
) -> Floats:
    if embeddings is None:
        return encode(list(inputs))
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape != (len(inputs), dim):
        raise DataError(
            f"embeddings have shape {array.shape}; expected ({len(inputs)}, {dim}) "
            f"for {len(inputs)} examples and encoder {encoder_name!r}"
        )
    # Checked and normalised a block at a time: whole-array temporaries (the squares, a mask)
    # would each cost as much memory as the vectors. Vectors already of unit length (what
    # encoders produce) are used as they are, without a copy.
    out: Floats | None = None
    for start in range(0, len(array), _CHECK_BLOCK):
        block = array[start : start + _CHECK_BLOCK]
        if not np.isfinite(block).all():
            raise DataError("embeddings contain NaN or infinity")
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        if (norms == 0).any():
            raise DataError("embeddings contain all-zero rows, which have no direction")
        if out is None and np.abs(norms - 1.0).max() > _UNIT_TOLERANCE:
            out = np.empty(array.shape, np.float32)
            out[:start] = array[:start]
        if out is not None:
            out[start : start + len(block)] = block / norms[:, None].astype(np.float32)
    return out if out is not None else np.ascontiguousarray(array)


def _build_vectors_under(
    threads: int, *args: Any, **kwargs: Any
) -> tuple[VectorIndex, float | None]:
    """:func:`build_vectors` on ``threads`` FAISS threads (those of the thread that asked)."""
    with faiss_threads(threads):
        return build_vectors(*args, **kwargs)
