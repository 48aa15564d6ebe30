"""Named collections: the indexes one server holds, how they are opened, created and closed.

A server serves its positional index (``settings.index``) as the collection ``"default"``, the
ones ``settings.collections`` names, and every index directory under
``settings.collections_dir`` (where ``POST /v1/collections`` creates new, empty ones), each under
its own name. Each is opened for writing, holding its writer lock, unless it or the server is
read-only; at shutdown each writable one is saved and every one is closed.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kshot.errors import ConfigError
from kshot.index.encoder import Encoder, HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.persistence import IndexLayout
from kshot.server.errors import ApiError
from kshot.server.settings import (
    COLLECTION_NAME,
    DEFAULT_COLLECTION,
    CollectionConfig,
    ServerSettings,
)

__all__ = [
    "Collection",
    "Collections",
    "configured",
    "create_empty",
    "parse_collection_options",
    "read_collections_file",
]

logger = logging.getLogger(__name__)

#: The id of the one example an empty collection is built with and at once deletes, since an
#: index is built from a corpus; nothing else ever holds it.
_SEED_ID = "kshot-empty-collection-seed"

#: The hashing encoder's name (as ``HashingEncoder.name`` spells it), and the largest dimension
#: a client may ask for: every example's vector has that many floats.
_HASHING = re.compile(r"hashing:(\d{1,6})")
_MAX_HASHING_DIM = 4096


@dataclass(frozen=True)
class Collection:
    """One served index under its name, with the proxy's defaults for it."""

    name: str
    index: ExampleIndex
    config: CollectionConfig | None = None

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/collections`` lists for this collection."""
        info = self.index.info()
        return {
            "name": self.name,
            "count": info["count"],
            "encoder": info["encoder"],
            "dimension": info["dim"],
            "factory": info["factory"],
            "read_only": self.index.read_only,
        }


@dataclass
class Collections:
    """The collections of one server by name; adding one is safe from several threads."""

    by_name: dict[str, Collection] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get(self, name: str) -> Collection:
        """The collection ``name``, or a 404 naming the known ones."""
        found = self.by_name.get(name)
        if found is None:
            known = ", ".join(repr(n) for n in sorted(self.by_name)) or "none"
            raise ApiError(
                404, "unknown_collection", f"no collection {name!r}; this server holds: {known}"
            )
        return found

    def add(self, collection: Collection) -> None:
        """Register ``collection`` (its name must be new)."""
        with self._lock:
            if collection.name in self.by_name:
                raise ConfigError(f"collection {collection.name!r} is given twice")
            self.by_name[collection.name] = collection

    def encoder_named(self, name: str) -> Encoder | None:
        """An encoder some collection already loaded under ``name`` (to share, not reload)."""
        for collection in list(self.by_name.values()):
            if collection.index.encoder_name == name:
                return collection.index.encoder
        return None

    @property
    def lock(self) -> threading.Lock:
        """Held while a collection is created, so that two creations of one name cannot race."""
        return self._lock


def configured(settings: ServerSettings) -> dict[str, CollectionConfig]:
    """The named collections of ``settings``: its ``collections`` and those under its dir.

    A subdirectory of ``collections_dir`` holding an index manifest is a collection of its
    name (hidden names, such as an interrupted save's staging directory, are not).
    """
    out = dict(settings.collections)
    root = settings.collections_dir
    if root is None or not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        if not COLLECTION_NAME.fullmatch(child.name) or not IndexLayout(child).manifest.is_file():
            continue
        given = out.get(child.name)
        if given is not None and given.path.resolve() != child.resolve():
            raise ConfigError(
                f"collection {child.name!r} is both {given.path} and {child} (under "
                "collections_dir); rename one of them"
            )
        if child.name == DEFAULT_COLLECTION:
            raise ConfigError(f"{child} is named {DEFAULT_COLLECTION!r}; rename the directory")
        out.setdefault(child.name, CollectionConfig(path=child))
    return out


def read_collections_file(path: Path) -> dict[str, CollectionConfig]:
    """The collections a JSON or TOML file describes: name -> {path, read_only, k, ...}.

    A relative ``path`` in the file is relative to the file's own directory.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the collections file {path}: {exc.strerror}") from exc
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except ValueError as exc:
        kind = "TOML" if path.suffix == ".toml" else "JSON"
        raise ConfigError(f"{path} is not valid {kind}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected an object of name -> {{path, ...}}")
    out: dict[str, CollectionConfig] = {}
    for name, entry in raw.items():
        try:
            config = CollectionConfig.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "entry"
            raise ConfigError(f"{path}: collection {name!r}: {where}: {first['msg']}") from exc
        if not config.path.is_absolute():
            config = config.model_copy(update={"path": path.parent / config.path})
        out[str(name)] = config
    return out


def parse_collection_options(
    pairs: Sequence[str], file: Path | None
) -> dict[str, CollectionConfig]:
    """The collections of ``--collections FILE`` and of each ``--collection NAME=DIR``."""
    out = read_collections_file(file) if file is not None else {}
    for pair in pairs:
        name, sep, directory = pair.partition("=")
        if not sep or not name or not directory:
            raise ConfigError(f"--collection {pair!r}: expected NAME=DIR, e.g. tickets=./tickets")
        if name in out:
            raise ConfigError(f"collection {name!r} is given twice")
        out[name] = CollectionConfig(path=Path(directory))
    return out


def _encoder_for(collections: Collections, name: str) -> Encoder:
    """The encoder ``name``: one a served collection already loaded, or a hashing encoder.

    A model that no collection serves is refused rather than loaded: a client with the write
    key should not make the server load (or try to download) any model or folder it names.
    """
    shared = collections.encoder_named(name)
    if shared is not None:
        return shared
    hashing = _HASHING.fullmatch(name)
    if hashing is not None and 2 <= int(hashing[1]) <= _MAX_HASHING_DIM:
        return HashingEncoder(int(hashing[1]))
    served = sorted({c.index.encoder_name for c in collections.by_name.values()})
    raise ConfigError(
        f"encoder {name!r} is not served here; give the encoder of a served collection "
        f"({', '.join(repr(n) for n in served) or 'none'}) or 'hashing:<dim>' with dim 2 to "
        f"{_MAX_HASHING_DIM}"
    )


def create_empty(
    collections: Collections,
    root: Path,
    name: str,
    *,
    encoder: str,
    factory: str | None,
) -> Collection:
    """Create the empty collection ``name`` in ``root / name``, open for writing, and register it.

    The directory appears atomically (the index's own save), so a crash leaves it complete or
    absent; the new index holds its writer lock from the instant it exists.
    """
    with collections.lock:
        target = root / name
        if name in collections.by_name or target.exists():
            raise ApiError(
                409,
                "collection_exists",
                f"collection {name!r} already exists; choose another name",
            )
        loaded = _encoder_for(collections, encoder)
        # An index is built from a corpus: one example, deleted at once, leaves it empty.
        index = ExampleIndex.build([{"id": _SEED_ID, "input": name}], loaded, factory=factory)
        index.delete([_SEED_ID])
        try:
            index.save(target)
        except BaseException:
            index.close()
            raise
        created = Collection(name, index, CollectionConfig(path=target))
        collections.by_name[name] = created
    logger.info("created the empty collection %r in %s (encoder %s)", name, target, encoder)
    return created
