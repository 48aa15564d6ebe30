from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from kshot.corpus import read_corpus, read_examples, write_jsonl
from kshot.errors import DataError, MissingDependencyError
from kshot.types import Example

ROWS: list[dict[str, Any]] = [
    {"id": "a", "input": "where is my card", "output": "card arrival", "label": "card_arrival"},
    {"id": "b", "input": "top up failed", "output": "top up failed", "label": "top_up_failed"},
    {"id": "c", "input": "change my pin", "label": "change_pin"},
]


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write_delimited(path: Path, rows: list[dict[str, Any]], delimiter: str) -> Path:
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


# --- formats ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".parquet", ".JSONL"])
def test_every_format_reads_the_same(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corpus{suffix}"
    if suffix.lower() in (".jsonl", ".json"):
        _write_jsonl(path, ROWS)
    elif suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    else:
        _write_delimited(path, ROWS, "\t" if suffix == ".tsv" else ",")

    examples = read_examples(path)

    assert [e.id for e in examples] == ["a", "b", "c"]
    assert examples[0] == Example(
        input="where is my card", output="card arrival", label="card_arrival", id="a"
    )
    assert examples[2].output == ""
    assert examples[2].label == "change_pin"
    assert all(dict(e.metadata) == {} for e in examples)


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "corpus.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert [e.id for e in read_examples(path)] == ["a", "b", "c"]


def test_optional_fields_default(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "hello"}, {"input": "bye", "label": 3}])
    first, second = read_examples(path)
    assert first == Example(input="hello", output="", label=None, id="")
    assert second.label == "3"  # labels become strings


def test_labels_and_ids_converted_to_str(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "c.jsonl",
        [{"input": "x", "label": 1, "id": 7}, {"input": "y", "label": True, "id": 8}],
    )
    examples = read_examples(path)
    assert [(e.label, e.id) for e in examples] == [("1", "7"), ("True", "8")]


def test_custom_field_names(tmp_path: Path) -> None:
    rows = [{"text": "hi there", "answer": "greeting", "intent": "greet", "uid": 1, "src": "web"}]
    path = _write_delimited(tmp_path / "c.csv", rows, ",")
    (example,) = read_examples(
        path,
        input_field="text",
        output_field="answer",
        label_field="intent",
        id_field="uid",
        metadata_fields=["src"],
    )
    assert example == Example(
        input="hi there", output="greeting", label="greet", metadata={"src": "web"}, id="1"
    )


def test_jsonl_metadata_object_and_named_fields(tmp_path: Path) -> None:
    rows = [{"input": "x", "metadata": {"lang": "en"}, "source": "faq", "other": 1}]
    path = _write_jsonl(tmp_path / "c.jsonl", rows)
    (plain,) = read_examples(path)
    assert dict(plain.metadata) == {"lang": "en"}  # other columns are ignored by default
    (named,) = read_examples(path, metadata_fields=["source"])
    assert dict(named.metadata) == {"lang": "en", "source": "faq"}


def test_csv_empty_label_cell_is_none(tmp_path: Path) -> None:
    path = _write_delimited(tmp_path / "c.csv", [{"input": "x", "label": ""}], ",")
    assert read_examples(path)[0].label is None


def test_tsv_quoted_multiline_field(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text('input\tlabel\n"line one\nline two"\tx\nplain\ty\n', encoding="utf-8")
    examples = read_examples(path)
    assert [e.input for e in examples] == ["line one\nline two", "plain"]


def test_blank_lines_are_skipped_and_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('\ufeff{"input": "a"}\n\n   \n{"input": "b"}\n', encoding="utf-8")
    assert [e.input for e in read_examples(path)] == ["a", "b"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_unicode_line_separators_inside_a_json_line_stay_in_its_text(
    tmp_path: Path, suffix: str
) -> None:
    # json.dumps(..., ensure_ascii=False) writes U+2028 and U+0085 as they are; only "\n" ends
    # a JSON line.
    texts = ["one\u2028two", "three\x85four\x0cfive"]
    path = tmp_path / f"c{suffix}"
    lines = [json.dumps({"input": text}, ensure_ascii=False) for text in texts]
    path.write_text("\r\n".join(lines) + "\n", encoding="utf-8")
    assert [e.input for e in read_examples(path)] == texts


# --- bad input ----------------------------------------------------------------------------


# --- outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_labels_stand_in_for_a_missing_output_column(tmp_path: Path, suffix: str) -> None:
    rows = [{"text": "where is my card", "intent": "card_arrival"}, {"text": "hi", "intent": 7}]
    path = tmp_path / f"c{suffix}"
    if suffix == ".jsonl":
        _write_jsonl(path, rows)
    elif suffix == ".csv":
        _write_delimited(path, rows, ",")
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(
            pa.Table.from_pylist([{**r, "intent": str(r["intent"])} for r in rows]), path
        )

    corpus = read_corpus(path, input_field="text", label_field="intent")

    assert corpus.outputs_from_label
    assert [(e.output, e.label) for e in corpus.examples] == [
        ("card_arrival", "card_arrival"),
        ("7", "7"),
    ]
    assert read_examples(path, input_field="text", label_field="intent") == corpus.examples


def test_rows_without_a_label_get_no_output_when_labels_stand_in(tmp_path: Path) -> None:
    rows = [{"input": "a", "label": "x"}, {"input": "b"}, {"input": "c", "label": ""}]
    corpus = read_corpus(_write_jsonl(tmp_path / "c.jsonl", rows))
    assert corpus.outputs_from_label
    assert [(e.output, e.label) for e in corpus.examples] == [("x", "x"), ("", None), ("", None)]


def test_an_output_column_wins_over_labels(tmp_path: Path) -> None:
    # One row with an output is enough: the file has outputs, rows without one stay empty.
    path = _write_jsonl(tmp_path / "c.jsonl", ROWS)
    corpus = read_corpus(path)
    assert not corpus.outputs_from_label
    assert [e.output for e in corpus.examples] == ["card arrival", "top up failed", ""]


def test_a_named_output_field_never_falls_back_to_labels(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "a", "label": "x"}])
    corpus = read_corpus(path, output_field="answer")
    assert not corpus.outputs_from_label
    assert corpus.examples[0].output == ""


def test_all_empty_outputs_warn_naming_the_option(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "a", "label": "x"}, {"input": "b"}])
    with caplog.at_level(logging.WARNING, logger="kshot.corpus"):
        read_examples(path, output_field="answer")
        read_examples(path, output_field="answer", option_names={"output_field": "--output-field"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "every example in" in warnings[0] and "empty output" in warnings[0]
    assert warnings[0].endswith("with output_field=")
    assert warnings[1].endswith("with --output-field")


def test_no_warning_when_some_output_is_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", ROWS)
    with caplog.at_level(logging.WARNING, logger="kshot.corpus"):
        read_examples(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_missing_input_names_the_callers_option(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"text": "no input"}])
    with pytest.raises(DataError, match=r"pass input_field= to read another column"):
        read_examples(path)
    with pytest.raises(DataError, match=r"pass --input-field to read another column"):
        read_examples(path, option_names={"input_field": "--input-field"})


def test_missing_input_names_file_row_and_fields(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "ok"}, {"text": "no input", "label": "x"}])
    with pytest.raises(DataError) as info:
        read_examples(path)
    message = str(info.value)
    assert str(path) in message
    assert "row 2" in message
    assert "'input'" in message
    assert "label, text" in message


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_input_is_rejected(tmp_path: Path, value: str) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "fine"}, {"input": "x"}, {"input": value}])
    with pytest.raises(DataError, match=r"row 3 has an empty 'input'"):
        read_examples(path)


def test_empty_input_in_csv(tmp_path: Path) -> None:
    path = _write_delimited(tmp_path / "c.csv", [{"input": "a"}, {"input": " "}], ",")
    with pytest.raises(DataError, match=r"c\.csv: row 2 has an empty 'input'"):
        read_examples(path)


def test_missing_input_column_in_csv(tmp_path: Path) -> None:
    path = _write_delimited(tmp_path / "c.csv", [{"text": "a", "label": "b"}], ",")
    with pytest.raises(DataError, match=r"row 1 has no 'input' field \(it has: label, text\)"):
        read_examples(path)


def test_malformed_json_line_gives_line_number(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"input": "a"}\n{"input": "b"}\n{"input": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3"):
        read_examples(path)


def test_non_object_json_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "a"}, ["not", "an", "object"]])
    with pytest.raises(DataError, match=r"row 2 is a JSON list"):
        read_examples(path)


def test_non_object_metadata(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "a", "metadata": [1, 2]}])
    with pytest.raises(DataError, match=r"'metadata' field that is a list"):
        read_examples(path)


def test_non_scalar_input(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": {"nested": 1}}])
    with pytest.raises(DataError, match=r"row 1 field 'input' is a dict"):
        read_examples(path)


def test_duplicate_ids_name_both_rows(tmp_path: Path) -> None:
    rows = [{"id": "x", "input": "a"}, {"id": "y", "input": "b"}, {"id": "x", "input": "c"}]
    path = _write_jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(DataError, match=r"duplicate id 'x' in rows 1 and 3"):
        read_examples(path)


def test_duplicate_ids_in_csv(tmp_path: Path) -> None:
    rows = [{"id": "1", "input": "a"}, {"id": "1", "input": "b"}]
    path = _write_delimited(tmp_path / "c.csv", rows, ",")
    with pytest.raises(DataError, match=r"duplicate id '1' in rows 1 and 2"):
        read_examples(path)


def test_rows_without_ids_are_not_duplicates(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [{"input": "a"}, {"input": "b"}])
    assert [e.id for e in read_examples(path)] == ["", ""]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n\n  \n"),
        ("empty.csv", ""),
        ("header_only.csv", "input,label\n"),
        ("header_only.tsv", "input\tlabel\n"),
        ("empty_array.json", "[]"),
    ],
)
def test_empty_file(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r"holds no examples"):
        read_examples(path)


def test_empty_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"input": pa.array([], type=pa.string())}), path)
    with pytest.raises(DataError, match=r"holds no examples"):
        read_examples(path)


def test_csv_row_with_extra_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("input,label\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 2 has more fields than the header"):
        read_examples(path)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unsupported file type '.txt'"):
        read_examples(tmp_path / "c.txt")
    with pytest.raises(DataError, match=r"no such file"):
        read_examples(tmp_path / "missing.jsonl")


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError, match=r"kshot\[bench\]"):
        read_examples(path)


def test_broken_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "c.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"not a readable Parquet file"):
        read_examples(path)


# --- writing ------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    examples = [
        Example(input="héllo ✓", output="hi", label="greet", metadata={"n": 1, "tags": ["a"]}),
        Example(input="two\nlines", id="x2"),
        Example(input="q", output="a", label=None, metadata={"nested": {"k": None}}, id="x3"),
    ]
    path = tmp_path / "sub" / "dir" / "out.jsonl"
    assert write_jsonl(examples, path) == 3
    assert read_examples(path) == examples
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert list(rows[0]) == ["id", "input", "output", "label", "metadata"]
    assert "héllo ✓" in path.read_text(encoding="utf-8")  # not escaped


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl([Example(input="old")], path)
    bad = Example(input="new", metadata={"x": object()}, id="bad")
    with pytest.raises(DataError, match=r"'bad' cannot be written as JSON"):
        write_jsonl([Example(input="fine"), bad], path)
    assert [e.input for e in read_examples(path)] == ["old"]  # the old file is untouched
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_write_uses_fsync_and_replace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append("fsync")
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        calls.append("replace")
        assert Path(src).parent == tmp_path  # the temp file lives in the same directory
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_jsonl([Example(input="a")], tmp_path / "out.jsonl")
    # the file is synced before the rename, the directory after it
    assert calls == ["fsync", "replace", "fsync"]


def test_written_file_is_not_private(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl([Example(input="a")], path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o664)
    write_jsonl([Example(input="b")], path)
    assert path.stat().st_mode & 0o777 == 0o664


def test_write_empty_iterable(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    assert write_jsonl(iter([]), path) == 0
    assert path.read_text(encoding="utf-8") == ""
