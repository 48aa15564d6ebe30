"""An index on disk: its layout, its manifest, opening it, saving it and recovering it.

::

    my-index/
      manifest.json   format, versions, encoder name + dim, FAISS factory, count, checksums
      examples.db     SQLite (WAL): examples, metadata, embeddings: the source of truth
      vectors.faiss   the FAISS index, a cache of the stored embeddings
      writer.lock     the writer's flock (kshot.index.lock)

Every file is written beside its target and renamed into place, the manifest last; a copy to
another directory is staged complete and swapped in with one atomic exchange (or, where the
platform has none, two renames whose interruption :func:`recover_interrupted_save` undoes). A
crash at any point leaves the old state or the new one.

The vector file is a cache that may lag the store by a bounded number of rows
(:func:`drift_limit`). :func:`open_index` compares the file's row ids with the store's live rows
(the set, not a count) and adds or removes just the difference from the stored embeddings,
silently: that is the normal state after writes. Only a file that is missing, corrupt or
unreadable is rebuilt, with one logged warning, as the build did it (:class:`BuildParams`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kshot._files import atomic_path, atomic_write_bytes, fsync_dir, sha256
from kshot.errors import (
    ConfigError,
    EncoderMismatchError,
    IndexFormatError,
    IndexLockedError,
)
from kshot.index.columns import Columns
from kshot.index.encoder import Encoder
from kshot.index.lock import WriterLock
from kshot.index.store import ExampleStore
from kshot.index.vector_build import BuildParams, build_vectors
from kshot.index.vectors import VectorIndex

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IndexLayout",
    "Manifest",
    "OpenedIndex",
    "drift_limit",
    "exchange_paths",
    "open_index",
    "recover_interrupted_save",
    "write_copy",
    "write_vector_file",
]

logger = logging.getLogger(__name__)

FORMAT = "kshot-index"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class IndexLayout:
    """Where each file of an index directory lives."""

    root: Path

    @property
    def manifest(self) -> Path:
        """The manifest file."""
        return self.root / "manifest.json"

    @property
    def store(self) -> Path:
        """The SQLite store."""
        return self.root / "examples.db"

    @property
    def vectors(self) -> Path:
        """The FAISS index file."""
        return self.root / "vectors.faiss"


@dataclass(frozen=True)
class Manifest:
    """What an index directory holds; written last on every save."""

    kshot_version: str
    encoder: str
    dim: int
    factory: str
    count: int
    generation: int
    vectors_sha256: str
    nprobe: int | None = None
    recall_at_10: float | None = None
    #: How many real queries measured ``recall_at_10`` (:meth:`ExampleIndex.tune`); ``None``: the
    #: build measured it on stored rows held out from their own search, which overstates it.
    recall_queries: int | None = None
    #: What the build asked for, which rebuilds repeat: the factory (``None``: chosen by size;
    #: ``factory`` above is the one in use), the recall@10 target of IVF tuning and the seed.
    build_factory: str | None = None
    recall_target: float = 0.95
    seed: int = 0
    #: Whether loads map the vector file (its codes stay on disk) instead of reading it.
    mmap: bool = False
    normalized: bool = True
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("kshot_version", "encoder", "factory", "vectors_sha256", "format"):
            _check_field(
                name, getattr(self, name), isinstance(getattr(self, name), str), "a string"
            )
        for name, least in (("dim", 1), ("count", 0), ("generation", 0), ("format_version", 1)):
            value = getattr(self, name)
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= least
            _check_field(name, value, ok, f"a whole number of at least {least}")
        nprobe = self.nprobe
        ok = nprobe is None or (isinstance(nprobe, int) and not isinstance(nprobe, bool))
        _check_field("nprobe", nprobe, ok and (nprobe is None or nprobe >= 1), "null or >= 1")
        recall = self.recall_at_10
        ok = recall is None or (isinstance(recall, (int, float)) and not isinstance(recall, bool))
        _check_field("recall_at_10", recall, ok, "null or a number")
        counted = self.recall_queries
        ok = counted is None or (
            isinstance(counted, int) and not isinstance(counted, bool) and counted >= 1
        )
        _check_field("recall_queries", counted, ok, "null or a whole number of at least 1")
        built = self.build_factory
        _check_field("build_factory", built, built is None or isinstance(built, str), "a string")
        target = self.recall_target
        ok = isinstance(target, (int, float)) and not isinstance(target, bool)
        _check_field("recall_target", target, ok and 0 < target <= 1, "a number in (0, 1]")
        seed = self.seed
        ok = isinstance(seed, int) and not isinstance(seed, bool)
        _check_field("seed", seed, ok, "a whole number")
        for name in ("mmap", "normalized"):
            value = getattr(self, name)
            _check_field(name, value, isinstance(value, bool), "a boolean")
        _check_field("extra", self.extra, isinstance(self.extra, dict), "an object")

    def to_json(self) -> str:
        """Serialise to pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @property
    def build(self) -> BuildParams:
        """What the build asked for, which rebuilds repeat."""
        return BuildParams(
            factory=self.build_factory,
            recall_target=self.recall_target,
            seed=self.seed,
            mmap=self.mmap,
        )

    def write(self, path: Path) -> None:
        """Write the manifest atomically (the last file of every save)."""
        atomic_write_bytes(path, self.to_json().encode("utf-8"))

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read and validate a manifest; anything else raises :class:`IndexFormatError`."""
        if not path.is_file():
            raise IndexFormatError(
                f"{path.parent} is not a kshot index: {path.name} is missing "
                "(build one with `kshot index build`)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IndexFormatError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise IndexFormatError(f"{path} is not a kshot manifest (no 'format': '{FORMAT}')")
        if data.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path} has format version {data.get('format_version')!r}; this kshot reads "
                f"version {FORMAT_VERSION}: rebuild the index with this kshot"
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} has unexpected or missing fields: {exc}") from exc
        except _FieldError as exc:
            raise IndexFormatError(
                f"{path}: {exc}; the manifest is damaged: rebuild the index"
            ) from exc


class _FieldError(IndexFormatError):
    """A manifest field of the wrong type or range."""


def _check_field(name: str, value: Any, ok: bool, expected: str) -> None:
    if not ok:
        raise _FieldError(f"field {name!r} is {value!r}, expected {expected}")


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_renameat2: Callable[..., int] | bool | None = False  # False: not looked up yet


def _lookup_renameat2() -> Callable[..., int] | None:
    global _renameat2
    if _renameat2 is False:
        found: Callable[..., int] | None = None
        if sys.platform.startswith("linux"):
            try:
                found = ctypes.CDLL(None, use_errno=True).renameat2
            except (OSError, AttributeError):
                found = None
        _renameat2 = found
    return _renameat2 if callable(_renameat2) else None


def exchange_paths(first: Path, second: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns ``False``, touching nothing, where the platform or file system cannot; other failures
    raise :class:`OSError`. A crash leaves both paths either swapped or not, never one missing.
    """
    func = _lookup_renameat2()
    if func is None:
        return False
    result = func(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def drift_limit(live: int) -> int:
    """How many rows the vector file may lag the store before a write rewrites it.

    A load reconciles that many rows from the stored embeddings in milliseconds, while a rewrite
    costs the whole file: 5% of the rows (at least 1,000) bounds both.
    """
    return max(1_000, live // 20)


def write_vector_file(layout: IndexLayout, vectors: VectorIndex) -> str:
    """Write the vector file atomically; return its SHA-256 for the manifest."""
    with atomic_path(layout.vectors) as tmp:
        vectors.save(tmp)
        return sha256(tmp)


# -- opening --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedIndex:
    """The parts of an index directory, opened and in step with each other."""

    manifest: Manifest
    store: ExampleStore
    columns: Columns
    vectors: VectorIndex
    #: How many rows the vector file lagged the store by (now reconciled in memory).
    drift: int
    recall_at_10: float | None
    #: How many real queries measured it (``None``: stored rows at build, or a rebuild).
    recall_queries: int | None
    #: The writer lock, or ``None`` for a read-only opener.
    writer: WriterLock | None


def open_index(
    root: Path, encoder: Encoder | None, model: str | None, *, read_only: bool
) -> OpenedIndex:
    """Open the index at ``root``: recover, lock, check, read the columns, reconcile vectors."""
    layout = IndexLayout(root)
    recover_interrupted_save(layout.root)
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
        store = ExampleStore(layout.store, dim=manifest.dim, mode="read" if read_only else "write")
        try:
            columns = _read_columns(layout, manifest, store)
            vectors, drift, recall, counted = _load_vectors(layout, manifest, columns, store)
        except BaseException:
            store.close()
            raise
    except BaseException:
        if writer is not None:
            writer.release()
        raise
    return OpenedIndex(manifest, store, columns, vectors, drift, recall, counted, writer)


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


def _read_columns(layout: IndexLayout, manifest: Manifest, store: ExampleStore) -> Columns:
    try:
        stored_name, stored_dim = store.get_info("encoder"), store.get_info("dim")
        if stored_name != manifest.encoder or stored_dim != str(manifest.dim):
            raise IndexFormatError(
                f"{layout.store} was written by encoder {stored_name!r} (dim {stored_dim}), "
                f"but the manifest says {manifest.encoder!r} (dim {manifest.dim}); the index "
                "is inconsistent: rebuild it"
            )
        columns = Columns(manifest.dim)
        # The columns keep no vectors (the vector file has them), so the blobs are not read.
        for batch in store.iter_batches(embeddings=False):
            columns.append(batch)
    except sqlite3.DatabaseError as exc:
        # Damage past the header only shows when the rows are read.
        raise IndexFormatError(
            f"{layout.store} is damaged ({exc}); restore it from a copy or rebuild the index"
        ) from exc
    return columns


def _load_vectors(
    layout: IndexLayout, manifest: Manifest, columns: Columns, store: ExampleStore
) -> tuple[VectorIndex, int, float | None, int | None]:
    """The vector index in step with ``columns``, how many rows the file lagged, its recall.

    The recall is the recall@10 and how many real queries measured it (``None`` after a
    rebuild, which measures it on stored rows).
    """
    problem: str | None = None
    if not layout.vectors.is_file():
        problem = "is missing"
    elif sha256(layout.vectors) != manifest.vectors_sha256:
        problem = "does not match its checksum (corrupt)"
    if problem is None:
        try:
            vectors = VectorIndex.load(
                layout.vectors, manifest.factory, nprobe=manifest.nprobe, mmap=manifest.mmap
            )
        except IndexFormatError:
            problem = "cannot be read by FAISS"
        else:
            drift = _reconcile(vectors, columns, store) if vectors.dim == manifest.dim else None
            if drift is not None:
                return vectors, drift, manifest.recall_at_10, manifest.recall_queries
            problem = "does not hold vectors this index can use"
    build = manifest.build
    rebuilt, recall = build_vectors(
        columns.dim,
        *store.all_embeddings(),
        build.factory or manifest.factory,
        build.recall_target,
        build.seed,
        problem=f"{layout.vectors} {problem}; rebuilt it from the stored embeddings "
        "(no re-embedding)",
    )
    if rebuilt.factory == manifest.factory and manifest.nprobe:
        rebuilt.nprobe = min(rebuilt.nlist, max(rebuilt.nprobe or 1, manifest.nprobe))
    return rebuilt, columns.live, recall, None


def _reconcile(vectors: VectorIndex, columns: Columns, store: ExampleStore) -> int | None:
    """Make ``vectors`` hold exactly the live rows: add the missing, remove the extra.

    Rows are never reused (an update writes a new row), so a row the file holds has the vector
    stored for it; only the set of rows can differ. Returns how many rows changed, or ``None``
    where the file's rows cannot be listed or it would need rebuilding anyway.
    """
    held = vectors.row_ids()
    if held is None:
        return None
    live = columns.live_rows()
    extra = np.setdiff1d(held, live)
    missing = ~np.isin(live, held)
    if len(extra) > len(live) or missing.sum() > max(len(live) // 2, drift_limit(0)):
        return None  # mostly another state: a clean rebuild is cheaper and tighter
    if len(extra):
        vectors.remove(extra)
    if missing.any():
        vectors.add(live[missing], store.embeddings(live[missing].tolist()))
    changed = len(extra) + int(missing.sum())
    if changed:
        logger.info("%d vector rows differed from the store; brought up to date", changed)
    return changed


# -- saving a copy and recovering an interrupted one --------------------------------------------


def _aside(target: Path) -> Path:
    """Where an overwriting save parks the old index while it renames the new one into place."""
    return target.with_name(f".{target.name}.old")


def recover_interrupted_save(root: Path) -> None:
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


def write_copy(
    store: ExampleStore,
    write_files: Callable[[IndexLayout], None],
    target: Path,
    *,
    overwrite: bool,
) -> WriterLock:
    """Write a complete index at ``target`` atomically; return the lock the new index holds.

    The store is backed up and ``write_files`` writes the vector file and the manifest into a
    staging directory beside ``target``, which then replaces it. An existing index there is
    replaced only with ``overwrite`` and only when no other writer holds it.
    """
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # The target's own lock, so that no writer of the old index there is overwritten; the
    # staging directory's, so that the new index is locked from the instant it goes live.
    replaced = WriterLock(target) if target.is_dir() else None
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    writer: WriterLock | None = None
    try:
        writer = WriterLock(staging)
        layout = IndexLayout(staging)
        store.backup_to(layout.store)
        write_files(layout)
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
    return writer
