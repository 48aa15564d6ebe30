"""Reading and writing corpora of examples.

:func:`read_examples` reads JSON lines (``.jsonl``, ``.json``), CSV (``.csv``), TSV (``.tsv``) and
Parquet (``.parquet``, needs ``pyarrow``) into :class:`~kshot.types.Example` values, checking every
row; :func:`read_corpus` does the same and also says where the outputs came from;
:func:`write_jsonl` writes examples back as JSON lines, atomically.

Row numbers in error messages are 1-based: the line number for JSON lines, the data row (header
not counted) for CSV, TSV and Parquet.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kshot._files import atomic_writer
from kshot.errors import DataError, missing_extra
from kshot.types import Example

__all__ = [
    "DEFAULT_OUTPUT_FIELD",
    "SUPPORTED_SUFFIXES",
    "Corpus",
    "read_corpus",
    "read_examples",
    "write_jsonl",
]

logger = logging.getLogger(__name__)

#: File name endings :func:`read_examples` understands (compared case-insensitively).
SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

#: The output column read when no ``output_field`` is named.
DEFAULT_OUTPUT_FIELD = "output"

# (row number, row) pairs as each reader yields them.
_Rows = Iterator[tuple[int, Mapping[str, Any]]]


@dataclass(frozen=True)
class Corpus:
    """The examples of a corpus file and where their outputs came from.

    ``outputs_from_label`` is true when the file has no output column and none was named, so each
    example's label stands in as its output.
    """

    path: Path
    examples: list[Example]
    outputs_from_label: bool


def read_examples(
    path: str | os.PathLike[str],
    *,
    input_field: str = "input",
    output_field: str | None = None,
    label_field: str = "label",
    id_field: str = "id",
    metadata_fields: Sequence[str] | None = None,
    option_names: Mapping[str, str] | None = None,
) -> list[Example]:
    """Read a corpus file into examples, in file order (see :func:`read_corpus`)."""
    return read_corpus(
        path,
        input_field=input_field,
        output_field=output_field,
        label_field=label_field,
        id_field=id_field,
        metadata_fields=metadata_fields,
        option_names=option_names,
    ).examples


def read_corpus(
    path: str | os.PathLike[str],
    *,
    input_field: str = "input",
    output_field: str | None = None,
    label_field: str = "label",
    id_field: str = "id",
    metadata_fields: Sequence[str] | None = None,
    option_names: Mapping[str, str] | None = None,
) -> Corpus:
    """Read a corpus file into examples, in file order, and say where the outputs came from.

    The format follows the file name: ``.jsonl`` / ``.json`` (one JSON object per line; a
    ``.json`` file holding one JSON array of objects is read too), ``.csv``, ``.tsv`` (both with a
    header row) or ``.parquet`` (needs ``pyarrow``).

    Each row must have a non-empty ``input_field``. Outputs come from ``output_field``; when it is
    not named, from the ``output`` field, or, when no row has one, from the label, so that a
    labelled file without answers still shows its labels as the examples' answers. A row without
    the output field gets ``""``; a warning is logged when every output is empty. Labels default
    to ``None`` and are converted to ``str``. Ids come from ``id_field`` (converted to ``str``)
    when present, else stay ``""`` for the index to assign. Metadata: a JSON row's ``metadata``
    object when present, plus the columns named in ``metadata_fields`` (when given) that the row
    has.

    ``option_names`` says how the caller's interface spells the field options in messages (the
    command line passes ``{"input_field": "--input-field", ...}``); by default they read as the
    keywords of this function (``input_field=``).

    Raises:
        DataError: the file is missing, empty or of an unknown type; a row lacks the input or has
            an empty one; a JSON line is malformed; an id appears twice. The message names the
            file, the row number and the field.
        MissingDependencyError: a ``.parquet`` file and ``pyarrow`` is not installed.
    """
    names = dict(option_names or {})

    def option(keyword: str) -> str:
        return names.get(keyword, f"{keyword}=")

    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"{file}: unsupported file type {file.suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not file.is_file():
        raise DataError(f"{file}: no such file")

    if suffix in (".jsonl", ".json"):
        rows = _json_rows(file)
    elif suffix in (".csv", ".tsv"):
        rows = _delimited_rows(file, "\t" if suffix == ".tsv" else ",")
    else:
        rows = _parquet_rows(file)

    extra = tuple(metadata_fields) if metadata_fields is not None else ()
    # Rows are converted as they are read, so that only one parsed row exists at a time: a
    # million parsed rows held at once would cost more memory than the examples themselves.
    examples: list[Example] = []
    seen: dict[str, int] = {}
    any_output = False
    for number, row in rows:
        any_output = any_output or DEFAULT_OUTPUT_FIELD in row
        example = _to_example(
            file,
            number,
            row,
            input_field=input_field,
            output_field=output_field or DEFAULT_OUTPUT_FIELD,
            label_field=label_field,
            id_field=id_field,
            metadata_fields=extra,
            input_option=option("input_field"),
        )
        if example.id:
            first = seen.setdefault(example.id, number)
            if first != number:
                raise DataError(
                    f"{file}: duplicate id {example.id!r} in rows {first} and {number}; "
                    "ids must be unique within a file"
                )
        examples.append(example)
    from_label = output_field is None and not any_output
    if from_label:
        # No row had an output: each answer is its label's text (a missing label: "").
        examples = [dataclasses.replace(e, output=e.label or "") for e in examples]
    if not examples:
        raise DataError(f"{file} holds no examples")
    if from_label:
        logger.info("%s has no %r field: the labels are the outputs", file, DEFAULT_OUTPUT_FIELD)
    if not any(example.output for example in examples):
        # The default templates would show every example with an empty answer.
        logger.warning(
            "every example in %s has an empty output, so prompts will show empty answers; "
            "name the column that holds them with %s",
            file,
            option("output_field"),
        )
    logger.debug("read %d examples from %s", len(examples), file)
    return Corpus(file, examples, from_label)


def write_jsonl(examples: Iterable[Example], path: str | os.PathLike[str]) -> int:
    """Write examples as JSON lines ``{id, input, output, label, metadata}``; return the count.

    The file is written to a temporary file in the same directory, flushed, synced and then
    renamed over ``path``, so readers never see a half-written file. Missing parent directories
    are created.

    Raises:
        DataError: an example's metadata is not JSON-serialisable (the message names the id).
    """
    target = Path(path)
    count = 0
    with atomic_writer(target, "w", encoding="utf-8", newline="\n") as handle:
        for example in examples:
            try:
                line = json.dumps(example.to_dict(), ensure_ascii=False)
            except (TypeError, ValueError) as exc:
                raise DataError(
                    f"example {example.id or count + 1!r} cannot be written as JSON: {exc}"
                ) from exc
            handle.write(line + "\n")
            count += 1
    logger.debug("wrote %d examples to %s", count, target)
    return count


# --- readers -------------------------------------------------------------------------------


def _json_rows(file: Path) -> _Rows:
    with file.open(encoding="utf-8-sig") as handle:
        if file.suffix.lower() == ".json":
            text = handle.read()
            if text.lstrip().startswith("["):
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{file}: malformed JSON at line {exc.lineno}: {exc.msg}"
                    ) from exc
                for number, row in enumerate(data, start=1):
                    yield number, _require_object(file, number, row)
                return
            lines: Iterable[str] = text.split("\n")  # as reading the lines would split
        else:
            lines = handle  # JSON lines are read a line at a time, never the whole file at once
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{file}: malformed JSON on line {number}: {exc.msg}") from exc
            yield number, _require_object(file, number, row)


def _require_object(file: Path, number: int, row: object) -> Mapping[str, Any]:
    if not isinstance(row, dict):
        raise DataError(
            f"{file}: row {number} is a JSON {type(row).__name__}, not an object "
            "with an input field"
        )
    return row


def _delimited_rows(file: Path, delimiter: str) -> _Rows:
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        try:
            for number, row in enumerate(reader, start=1):
                if None in row:
                    raise DataError(
                        f"{file}: row {number} has more fields than the header "
                        f"({len(reader.fieldnames or [])} columns)"
                    )
                if not any(value for value in row.values()):
                    continue  # a blank line
                # Short rows give None for the missing columns: treat those as absent.
                yield number, {key: value for key, value in row.items() if value is not None}
        except csv.Error as exc:
            raise DataError(f"{file}: malformed row near line {reader.line_num}: {exc}") from exc


def _parquet_rows(file: Path) -> _Rows:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise missing_extra("pyarrow", "bench") from exc
    try:
        table = pq.read_table(file)
    except Exception as exc:
        raise DataError(f"{file}: not a readable Parquet file: {exc}") from exc
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, {key: value for key, value in row.items() if value is not None}


# --- row checking --------------------------------------------------------------------------


def _to_example(
    file: Path,
    number: int,
    row: Mapping[str, Any],
    *,
    input_field: str,
    output_field: str,
    label_field: str,
    id_field: str,
    metadata_fields: tuple[str, ...],
    input_option: str,
) -> Example:
    # Only JSON rows can hold a nested metadata object; a CSV column of that name is plain text.
    nested = "metadata" if file.suffix.lower() in (".jsonl", ".json") else None
    return Example.from_mapping(
        row,
        input_key=input_field,
        output_key=output_field,
        label_key=label_field,
        id_key=id_field,
        metadata_key=nested,
        extra_metadata={name: row[name] for name in metadata_fields if name in row},
        where=f"{file}: row {number}",
        hint=f"pass {input_option} to read another column",
    )
