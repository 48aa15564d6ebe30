"""The example store: SQLite, the source of truth for examples, metadata and embeddings.

Every write is one transaction, so a process killed half-way leaves the old state or the new one.
Rows carry an internal ``row`` key (monotonic, never reused) that the vector and lexical indexes
use; an update writes a new row under the same example id, so those indexes only ever append and
delete.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from kshot.errors import DataError, IndexFormatError
from kshot.index.batch import ExampleBatch
from kshot.types import Example

__all__ = ["ExampleStore", "StoreMode", "StoredBatch"]

#: ``create`` a new store, or open an existing one to ``write`` or to ``read`` only.
StoreMode = Literal["create", "write", "read"]

#: Bound parameters per statement (SQLite's default limit is 999).
_PARAMS = 900
#: SQLite's page cache per connection, in KiB (its default is 2 MiB).
_CACHE_KIB = 32_768
#: Rows per read of a whole-store scan: large enough to amortise the query, small enough that
#: one batch of embeddings stays a few tens of MiB.
_READ_BATCH = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS examples (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    label TEXT,
    metadata TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class StoredBatch:
    """A batch of stored rows, in row order, as loaded into the in-memory indexes.

    ``embeddings`` has no rows when the batch was read without them (a load reads only what the
    columns keep; the vectors come from the vector file).
    """

    rows: npt.NDArray[np.int64]
    ids: Sequence[str]
    inputs: Sequence[str]
    labels: Sequence[str | None]
    metadata: Sequence[Mapping[str, Any]]
    embeddings: npt.NDArray[np.float32]


def _dump_metadata(metadata: Mapping[str, Any], example_id: str, position: int) -> str:
    if not metadata:
        return "{}"
    try:
        return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"example {position} (id {example_id!r}): metadata must hold JSON values only ({exc})"
        ) from exc


class ExampleStore:
    """SQLite storage of examples and their embeddings; ``path=None`` makes a private temporary one.

    A temporary store lives in a file of its own (deleted on :meth:`close` or when the store is
    collected), not in SQLite's ``:memory:``: its pages, embeddings included, stay on disk
    instead of duplicating the vector index in RAM. It is not durable (no journal on disk, no
    fsync), which a store that disappears with its process does not need.

    ``mode`` says what ``path`` is: ``"create"`` a new store (the schema is made), ``"write"`` or
    ``"read"`` an existing kshot store, checked before anything is written to it, so that a
    foreign or empty SQLite file is refused untouched. A ``"read"`` store never writes
    (``PRAGMA query_only``) and reads one pinned snapshot from the moment it opens, until
    :meth:`pin_snapshot` moves it to the latest commit.
    """

    def __init__(self, path: Path | None, *, dim: int, mode: StoreMode = "create") -> None:
        self.path = path
        self.dim = dim
        self.read_only = mode == "read"
        self._lock = threading.RLock()
        self._probe: sqlite3.Connection | None = None
        self._pinned = False
        self._temp: str | None = None
        if path is None:
            self._temp = tempfile.mkdtemp(prefix="kshot-store-")
            weakref.finalize(self, shutil.rmtree, self._temp, True)
        target = str(Path(self._temp) / "examples.db") if self._temp else str(path)
        if path is not None and mode != "create":
            _check_not_empty(path)
        try:
            self._conn = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            raise IndexFormatError(f"{target} is not a kshot example store: {exc}") from exc
        try:
            # A bounded page cache, allocated as pages are read: a small index's pages all stay
            # cached (a request's fetch then costs what an in-memory database's would), a large
            # one's hot pages do, and memory never grows past it whatever the corpus size.
            self._conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            if mode == "create":
                if path is not None:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    self._conn.execute("PRAGMA synchronous=FULL")
                else:
                    self._conn.execute("PRAGMA journal_mode=MEMORY")
                    self._conn.execute("PRAGMA synchronous=OFF")
                    # The private temporary file has no other reader: keeping its lock spares
                    # each read the file-lock system calls (a third of a request's store read).
                    self._conn.execute("PRAGMA locking_mode=EXCLUSIVE")
                self._conn.executescript(_SCHEMA)
            else:
                self._check_schema(target)
                if self.read_only:
                    self._conn.execute("PRAGMA query_only=ON")
                    # Pinned before the caller reads anything, so all its reads agree.
                    self.pin_snapshot()
                else:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise IndexFormatError(f"{target} is not a kshot example store: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise

    def _check_schema(self, target: str) -> None:
        found = {
            name: sql
            for name, sql in self._conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='table'"
            )
        }
        missing = [t for t in ("examples", "info") if t not in found]
        if missing:
            raise IndexFormatError(
                f"{target} is an SQLite database but not a kshot example store (it has no "
                f"{' or '.join(repr(t) for t in missing)} table); restore the index's "
                "examples.db from a copy or rebuild the index"
            )

    # -- snapshots -------------------------------------------------------------------------------
    def pin_snapshot(self) -> int:
        """Start (or restart) a read transaction: reads see one committed state until the next pin.

        Returns the generation of that state. In WAL mode a writer in another process goes on
        committing meanwhile; this connection keeps reading the pinned state.
        """
        with self._lock:
            if self._pinned:
                self._conn.execute("COMMIT")
            self._conn.execute("BEGIN")
            self._pinned = True
            # The first read inside BEGIN is what fixes the snapshot.
            return self.generation

    def latest_generation(self) -> int:
        """The generation last committed by anyone, read outside the pinned snapshot."""
        with self._lock:
            if self._probe is None:
                self._probe = sqlite3.connect(
                    str(self.path), check_same_thread=False, isolation_level=None
                )
                self._probe.execute("PRAGMA query_only=ON")
            found = self._probe.execute("SELECT value FROM info WHERE key='generation'").fetchone()
        return 0 if found is None else int(found[0])

    def live_rows(self) -> npt.NDArray[np.int64]:
        """Every stored row, ascending."""
        with self._lock:
            found = self._conn.execute("SELECT row FROM examples ORDER BY row").fetchall()
        return np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))

    # -- info ------------------------------------------------------------------------------------
    def get_info(self, key: str) -> str | None:
        """Read one entry of the info table."""
        with self._lock:
            found = self._conn.execute("SELECT value FROM info WHERE key=?", (key,)).fetchone()
        return None if found is None else str(found[0])

    def set_info(self, key: str, value: str) -> None:
        """Write one entry of the info table."""
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """A counter bumped by every write; the vector file records the one it matches."""
        return int(self.get_info("generation") or 0)

    @property
    def next_row(self) -> int:
        """The row the next inserted example gets (rows are never reused)."""
        with self._lock:
            return self._next_row(self._conn)

    @staticmethod
    def _next_row(conn: sqlite3.Connection) -> int:
        found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='examples'").fetchone()
        return (int(found[0]) if found else 0) + 1

    def _bump(self) -> None:
        self._conn.execute(
            "INSERT INTO info VALUES ('generation', '1') ON CONFLICT(key) "
            "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    # -- writes ----------------------------------------------------------------------------------
    def insert(
        self,
        examples: ExampleBatch | Sequence[Example],
        embeddings: npt.NDArray[np.float32],
        *,
        first: int = 0,
    ) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Insert examples in one transaction; return their rows and (possibly assigned) ids.

        ``first`` is the position of the first example in what the caller was given, so that an
        error names the example the caller knows.
        """
        batch = examples if isinstance(examples, ExampleBatch) else ExampleBatch.of(examples)
        count = len(batch)
        if embeddings.shape != (count, self.dim):
            raise DataError(
                f"embeddings have shape {embeddings.shape}, expected ({count}, {self.dim})"
            )
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        # Built column by column before the transaction: a bad metadata value is refused before
        # anything is written, and the rows go to SQLite as ready tuples.
        metadata = [
            _dump_metadata(meta, ex_id, first + i)
            for i, (meta, ex_id) in enumerate(zip(batch.metadata, batch.ids, strict=True))
        ]
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                start = self._next_row(conn)
                rows = np.arange(start, start + count, dtype=np.int64)
                ids = [
                    ex_id or f"ex{row}" for ex_id, row in zip(batch.ids, rows.tolist(), strict=True)
                ]
                # The vectors go in as row views of the array (SQLite copies the bytes; no
                # per-row bytes object).
                payload = zip(
                    rows.tolist(),
                    ids,
                    batch.inputs,
                    batch.outputs,
                    batch.labels,
                    metadata,
                    embeddings,
                    strict=True,
                )
                conn.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?)", payload)
                self._bump()
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                conn.execute("ROLLBACK")
                raise DataError(self._explain_duplicate(ids, exc)) from exc
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return rows, ids

    def _explain_duplicate(self, ids: list[str], exc: sqlite3.IntegrityError) -> str:
        seen: set[str] = set()
        for ex_id in ids:
            if ex_id in seen:
                return f"duplicate example id {ex_id!r} in the batch; ids must be unique"
            seen.add(ex_id)
        taken = [i for i, row in zip(ids, self.rows_of(ids), strict=True) if row is not None]
        if taken:
            return (
                f"example id {taken[0]!r} already exists in the index; "
                "use update to change it or choose another id"
            )
        return f"could not insert examples: {exc}"

    def delete(self, rows: Sequence[int]) -> None:
        """Delete rows in one transaction."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "DELETE FROM examples WHERE row=?", [(int(r),) for r in rows]
                )
                self._bump()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def replace(self, old_row: int, example: Example, embedding: npt.NDArray[np.float32]) -> int:
        """Replace a row by a new one with the same id, in one transaction; return the new row."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute("DELETE FROM examples WHERE row=?", (int(old_row),))
                cursor = self._conn.execute(
                    "INSERT INTO examples (id, input, output, label, metadata, embedding) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        example.id,
                        example.input,
                        example.output,
                        example.label,
                        _dump_metadata(example.metadata, example.id, 0),
                        embedding.astype(np.float32).tobytes(),
                    ),
                )
                self._bump()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    # -- reads -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0])

    def rows_of(self, ids: Sequence[str]) -> list[int | None]:
        """Map example ids to rows (``None`` where absent), through the store's id index."""
        wanted = list(ids)
        found: dict[str, int] = dict(self._select_in("id", "id, row", wanted))
        return [found.get(ex_id) for ex_id in wanted]

    def inputs(self, rows: Sequence[int]) -> list[str]:
        """The input texts stored at ``rows``, in that order (rows must exist)."""
        found = dict(self._select_rows("input", rows))
        return [found[int(r)] for r in rows]

    def embeddings(self, rows: Sequence[int]) -> npt.NDArray[np.float32]:
        """The embeddings stored at ``rows``, in that order, shape ``(len(rows), dim)``."""
        found = dict(self._select_rows("embedding", rows))
        blob = b"".join(found[int(r)] for r in rows)
        return self._matrix(blob, len(rows)).copy()

    def all_embeddings(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every stored row, ascending, and its embedding, read into one preallocated array."""
        rows = self.live_rows()
        out = np.empty((len(rows), self.dim), np.float32)
        last, filled = 0, 0
        while filled < len(rows):
            with self._lock:
                records = self._conn.execute(
                    "SELECT row, embedding FROM examples WHERE row > ? ORDER BY row LIMIT ?",
                    (last, _READ_BATCH),
                ).fetchall()
            if not records:
                break
            take = min(len(records), len(rows) - filled)
            blob = b"".join(r[1] for r in records)
            out[filled : filled + take] = self._matrix(blob, len(records))[:take]
            filled += take
            last = int(records[-1][0])
        return rows, out

    def _select_rows(self, column: str, rows: Sequence[int]) -> list[tuple[int, Any]]:
        return self._select_in("row", f"row, {column}", [int(r) for r in rows])

    def _select_in(self, key: str, columns: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``SELECT columns`` of the examples whose ``key`` is in ``values``, in store order.

        One query per :data:`_PARAMS` values (SQLite's bound-parameter limit).
        """
        out: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(values), _PARAMS):
                chunk = values[start : start + _PARAMS]
                marks = ",".join("?" * len(chunk))
                out.extend(
                    self._conn.execute(
                        f"SELECT {columns} FROM examples WHERE {key} IN ({marks})", chunk
                    ).fetchall()
                )
        return out

    def _matrix(self, blob: bytes, count: int) -> npt.NDArray[np.float32]:
        embeddings = np.frombuffer(blob, dtype=np.float32)
        if embeddings.size != count * self.dim:
            raise IndexFormatError(
                f"stored embeddings do not have dimension {self.dim}; the store is corrupt"
            )
        return embeddings.reshape(count, self.dim)

    def fetch(self, rows: Sequence[int]) -> list[Example]:
        """Return the examples stored at ``rows``, in that order (rows must exist)."""
        if not len(rows):
            return []
        wanted = [int(r) for r in rows]
        found = {
            int(row): Example(
                id=ex_id, input=text, output=output, label=label, metadata=_load_metadata(meta)
            )
            for row, ex_id, text, output, label, meta in self._select_in(
                "row", "row, id, input, output, label, metadata", wanted
            )
        }
        return [found[r] for r in wanted]

    def iter_batches(
        self, batch_size: int = _READ_BATCH, *, after: int = 0, embeddings: bool = True
    ) -> Iterator[StoredBatch]:
        """Yield every stored row above ``after`` in row order, in batches.

        Without ``embeddings`` the batches carry none (and the blobs are not read at all).
        """
        last = after
        columns = "row, id, input, label, metadata" + (", embedding" if embeddings else "")
        while True:
            with self._lock:
                records = self._conn.execute(
                    f"SELECT {columns} FROM examples WHERE row > ? ORDER BY row LIMIT ?",
                    (last, batch_size),
                ).fetchall()
            if not records:
                return
            if embeddings:
                matrix = self._matrix(b"".join(r[5] for r in records), len(records)).copy()
            else:
                matrix = np.empty((0, self.dim), np.float32)
            yield StoredBatch(
                rows=np.fromiter((r[0] for r in records), dtype=np.int64, count=len(records)),
                ids=[r[1] for r in records],
                inputs=[r[2] for r in records],
                labels=[r[3] for r in records],
                metadata=[_load_metadata(r[4]) for r in records],
                embeddings=matrix,
            )
            last = int(records[-1][0])

    # -- files -----------------------------------------------------------------------------------
    def backup_to(self, path: Path) -> None:
        """Copy the whole database to ``path`` (a consistent snapshot, fsynced)."""
        with self._lock:
            target = sqlite3.connect(str(path))
            try:
                self._conn.backup(target)
            finally:
                target.close()
        with path.open("rb+") as handle:
            os.fsync(handle.fileno())

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file, as far as readers allow.

        PASSIVE, not TRUNCATE: a read-only opener in another process may hold a snapshot, and
        TRUNCATE would wait for it (the busy timeout) on every save.
        """
        if self.path is not None:
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connections (a pinned snapshot ends); a temporary store is deleted."""
        with self._lock:
            self._conn.close()
            if self._probe is not None:
                self._probe.close()
            if self._temp is not None:
                shutil.rmtree(self._temp, ignore_errors=True)


def _load_metadata(text: str) -> dict[str, Any]:
    # Most corpora carry no metadata: skip the JSON parser for the empty object.
    if text == "{}":
        return {}
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _check_not_empty(path: Path) -> None:
    """Refuse a 0-byte file, which SQLite would take for a new, empty database."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise IndexFormatError(f"cannot read {path}: {exc.strerror}") from exc
    wal = path.with_name(path.name + "-wal")
    if size == 0 and (not wal.exists() or wal.stat().st_size == 0):
        raise IndexFormatError(
            f"{path} is empty (0 bytes), not a kshot example store; restore it from a copy "
            "or rebuild the index"
        )
