"""The index directory layout and its manifest.

::

    my-index/
      manifest.json   format, versions, encoder name + dim, FAISS factory, count, checksums
      examples.db     SQLite (WAL): examples, metadata, embeddings: the source of truth
      vectors.faiss   the FAISS index, a cache of the stored embeddings
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kshot._files import atomic_write_bytes, fsync_dir, sha256
from kshot.errors import IndexFormatError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IndexLayout",
    "Manifest",
    "atomic_write_bytes",
    "exchange_paths",
    "fsync_dir",
    "sha256",
]

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
    #: What the build asked for, which rebuilds repeat: the factory (``None``: chosen by size;
    #: ``factory`` above is the one in use), the recall@10 target of IVF tuning and the seed.
    build_factory: str | None = None
    recall_target: float = 0.95
    seed: int = 0
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
        built = self.build_factory
        _check_field("build_factory", built, built is None or isinstance(built, str), "a string")
        target = self.recall_target
        ok = isinstance(target, (int, float)) and not isinstance(target, bool)
        _check_field("recall_target", target, ok and 0 < target <= 1, "a number in (0, 1]")
        seed = self.seed
        ok = isinstance(seed, int) and not isinstance(seed, bool)
        _check_field("seed", seed, ok, "a whole number")
        _check_field("normalized", self.normalized, isinstance(self.normalized, bool), "a boolean")
        _check_field("extra", self.extra, isinstance(self.extra, dict), "an object")

    def to_json(self) -> str:
        """Serialise to pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

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
