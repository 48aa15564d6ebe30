"""The quality benchmark's data: loading the splits, limiting them, and the leakage guard.

Leakage guard: training rows that are test rows (same id, or the same normalised input) are
removed from the training split for every arm (:func:`remove_leaks`); selectors also never
return an example whose input equals the query, and every selection is checked by
:func:`assert_no_leak`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kshot.bench.quality.config import QualityConfig
from kshot.errors import DataError
from kshot.index.filters import normalize_text
from kshot.types import Example, Scored

__all__ = [
    "LabelSpace",
    "LeakageError",
    "Splits",
    "assert_no_leak",
    "class_key",
    "data_set_name",
    "fingerprint",
    "label_space",
    "load_splits",
    "remove_leaks",
    "stratified_limit",
]


class LeakageError(DataError):
    """A test query was offered itself (same id or same input) as an in-context example."""


@dataclass(frozen=True)
class Splits:
    """The training and test rows of one run, the data set's name and its title in reports.

    ``name`` identifies the data (arm files and caches are keyed by it); ``title`` (``--name``)
    only labels the reports, so a new title reruns nothing.
    """

    train: list[Example]
    test: list[Example]
    name: str
    title: str = ""


@dataclass(frozen=True)
class LabelSpace:
    """The class keys (sorted) and each class's readable output text, in the same order."""

    labels: list[str]
    texts: list[str]


def stratified_limit(examples: Sequence[Example], n: int | None, seed: int) -> list[Example]:
    """Keep ``n`` examples, drawn with ``seed`` and stratified by label; keep the input order.

    Each label keeps close to its share of ``n`` (every example gets the key ``(rank within its
    label + u) / label size`` with ``u`` uniform, and the ``n`` smallest keys win), so small
    limits still cover as many labels as they can.
    """
    if n is None or n >= len(examples):
        return list(examples)
    rng = np.random.default_rng(seed)
    groups: dict[str | None, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        groups[ex.label if ex.label is not None else ex.output].append(i)
    keys = np.empty(len(examples), dtype=np.float64)
    for members in groups.values():
        order = rng.permutation(len(members))
        jitter = rng.random(len(members))
        for rank, (position, u) in enumerate(zip(order, jitter, strict=True)):
            keys[members[position]] = (rank + u) / len(members)
    chosen = np.sort(np.argsort(keys, kind="stable")[:n])
    return [examples[int(i)] for i in chosen]


def remove_leaks(
    train: Sequence[Example], test: Sequence[Example]
) -> tuple[list[Example], list[str]]:
    """Drop training rows that are test rows: the same id, or the same normalised input.

    Returns the kept rows and the ids (or inputs, for rows without ids) of the dropped ones.
    """
    test_ids = {ex.id for ex in test if ex.id}
    test_texts = {normalize_text(ex.input) for ex in test}
    kept: list[Example] = []
    dropped: list[str] = []
    for ex in train:
        if (ex.id and ex.id in test_ids) or normalize_text(ex.input) in test_texts:
            dropped.append(ex.id or ex.input)
        else:
            kept.append(ex)
    return kept, dropped


def assert_no_leak(query: Example, chosen: Iterable[Scored | Example]) -> None:
    """Raise :class:`LeakageError` if a chosen example is the query (same id or same input)."""
    text = normalize_text(query.input)
    for item in chosen:
        ex = item.example if isinstance(item, Scored) else item
        if (query.id and ex.id == query.id) or normalize_text(ex.input) == text:
            raise LeakageError(
                f"test query {query.id or query.input!r} was offered itself as an in-context "
                f"example (example id {ex.id!r})"
            )


def class_key(ex: Example) -> str:
    """The class of an example: its label, or its output when it has no label."""
    if ex.label is not None:
        return ex.label
    if ex.output:
        return ex.output
    raise DataError(f"example {ex.id or ex.input!r} has neither a label nor an output")


def label_space(train: Sequence[Example], test: Sequence[Example]) -> LabelSpace:
    """Return the classes of both splits and each class's most frequent output text."""
    outputs: dict[str, Counter[str]] = defaultdict(Counter)
    for ex in [*train, *test]:
        outputs[class_key(ex)][ex.output or class_key(ex)] += 1
    labels = sorted(outputs)
    texts = [outputs[label].most_common(1)[0][0] for label in labels]
    if len(set(texts)) != len(texts):
        raise DataError("two classes share the same output text; label scoring needs distinct ones")
    return LabelSpace(labels, texts)


def fingerprint(examples: Sequence[Example]) -> str:
    """A short digest of the rows (ids, inputs, outputs, labels) in order."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.input, ex.output, ex.label]).encode("utf-8"))
    return digest.hexdigest()[:16]


def load_splits(config: QualityConfig) -> Splits:
    """Read the training and test rows of ``config`` (files, or a registered data set).

    Raises:
        DataError: a split is empty, or a row has neither a label nor an output.
    """
    if config.train_file is not None and config.test_file is not None:
        train = _read_file(config, config.train_file, "train")
        test = _read_file(config, config.test_file, "test")
        name = data_set_name(config.train_file)
    else:
        from kshot.data import load_dataset

        assert config.dataset is not None
        name = config.dataset
        train = load_dataset(config.dataset, "train")
        test = load_dataset(config.dataset, config.test_split)
    for split, rows in (("train", train), ("test", test)):
        if not rows:
            raise DataError(f"the {split} split of {name} is empty")
        for ex in rows:
            class_key(ex)
    return Splits(train, test, name, config.name or name)


#: Words that name a split rather than a data set, at either end of a file name.
_SPLIT_WORDS = re.compile(
    r"^(?:train(?:ing)?|dev|test)(?:[-_. ]+|$)|[-_. ]+(?:train(?:ing)?)$", re.I
)


def data_set_name(train_file: str) -> str:
    """The data set's name a training file's path suggests: its name without the split word.

    ``intents_train.csv`` is ``intents``; ``clinc/train.jsonl``, whose name is only the split,
    is its folder's name, ``clinc``.
    """
    path = Path(train_file)
    name = _SPLIT_WORDS.sub("", path.stem)
    if name:
        return name
    return path.resolve().parent.name or path.stem


#: How the errors of a user's file name the options to fix: as the command line spells them.
_OPTION_NAMES = {
    name: "--" + name.replace("_", "-")
    for name in (
        "input_field",
        "output_field",
        "label_field",
        "id_field",
        "train_file",
        "test_file",
    )
}


def _read_file(config: QualityConfig, path: str, split: str) -> list[Example]:
    """The rows of a user's file (any format of ``kshot index build``), each with an id.

    Raises:
        DataError: the file cannot be read, or a row has no label; the message names the
            option to fix.
    """
    from kshot.corpus import read_corpus

    option = _OPTION_NAMES[f"{split}_file"]
    with _held_logs("kshot.corpus") as held:
        try:
            corpus = read_corpus(
                path,
                input_field=config.input_field,
                output_field=config.output_field,
                label_field=config.label_field,
                id_field=config.id_field,
                option_names=_OPTION_NAMES,
            )
        except DataError as exc:
            raise DataError(f"{option}: {exc}") from exc
        rows: list[Example] = []
        for i, ex in enumerate(corpus.examples):
            if ex.label is None and not ex.output:
                raise DataError(
                    f"{option}: {path}: row {i + 1} has no label in column "
                    f"{config.label_field!r}; name the label column with "
                    f"{_OPTION_NAMES['label_field']}"
                )
            # Ids make the leakage guard and the arm files precise; give rows without one an id.
            rows.append(ex if ex.id else dataclasses.replace(ex, id=f"{split}-{i:06d}"))
        held.release()
    return rows


class _Held(logging.Filter):
    """Holds a logger's records back; :meth:`release` passes them on."""

    def __init__(self, log: logging.Logger) -> None:
        super().__init__()
        self.log = log
        self.records: list[logging.LogRecord] = []
        self.holding = True

    def filter(self, record: logging.LogRecord) -> bool:
        if self.holding:
            self.records.append(record)
        return not self.holding

    def release(self) -> None:
        self.holding = False
        for record in self.records:
            self.log.handle(record)


@contextmanager
def _held_logs(name: str) -> Iterator[_Held]:
    """Hold the records of logger ``name`` until released; an error drops them.

    A file that fails to read says why in one error; the reader's notes on the way (say, that
    every output is empty because the label column is missing) would only repeat it.
    """
    log = logging.getLogger(name)
    held = _Held(log)
    log.addFilter(held)
    try:
        yield held
    finally:
        log.removeFilter(held)
