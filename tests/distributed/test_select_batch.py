"""``kshot select-batch`` without Ray: equal to per-query selection, in input order, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kshot.api import assemble, load_index, select
from kshot.cli import app
from kshot.distributed.batch import BatchJob, run_batch
from kshot.errors import ConfigError
from kshot.prompt import WhitespaceCounter

if TYPE_CHECKING:
    from conftest import Interrupter

runner = CliRunner()
ReadJsonl = Callable[[Path], list[dict[str, Any]]]
Cli = Callable[..., str]


def batch_args(index_dir: Path, queries: Path, out: Path, *extra: str) -> list[str]:
    return [
        "select-batch",
        str(index_dir),
        str(queries),
        "--out",
        str(out),
        "--input-field",
        "text",
        "--id-field",
        "qid",
        "--chunk-size",
        "4",
        *extra,
    ]


def test_records_equal_per_query_select_in_input_order(
    cli: Cli,
    index_dir: Path,
    queries_file: Path,
    query_rows: list[tuple[str, str]],
    tmp_path: Path,
    read_jsonl: ReadJsonl,
) -> None:
    out = tmp_path / "out.jsonl"
    args = ["-k", "3", "-s", "mmr", "-p", "lambda=0.7", "--filter", "topic=card"]
    cli(*batch_args(index_dir, queries_file, out, *args))
    records = read_jsonl(out)
    index = load_index(index_dir, read_only=True)
    texts = [text for _, text in query_rows]
    assert [r["position"] for r in records] == list(range(len(texts)))
    assert [r["query"] for r in records] == texts
    assert [r["id"] for r in records] == [
        f"q{i}" if i % 3 == 0 else str(i) for i in range(len(texts))
    ]
    for record in records:
        expected = select(
            index,
            record["query"],
            3,
            selector="mmr",
            params={"lambda": 0.7},
            filter={"topic": "card"},
        )
        assert [e["id"] for e in record["examples"]] == [s.example.id for s in expected]
        assert [e["score"] for e in record["examples"]] == pytest.approx(
            [s.score for s in expected]
        )
        assert all(e["metadata"]["topic"] == "card" for e in record["examples"])
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_prompts_equal_assemble(
    cli: Cli, index_dir: Path, queries_file: Path, tmp_path: Path, read_jsonl: ReadJsonl
) -> None:
    out = tmp_path / "out.jsonl"
    template = ["--template", "Q: {input}\\nA: {label}", "--instructions", "Classify."]
    cli(
        *batch_args(
            index_dir, queries_file, out, "--prompt", "--tokenizer", "whitespace", *template
        )
    )
    index = load_index(index_dir, read_only=True)
    from kshot.prompt import PromptTemplate

    for record in read_jsonl(out):
        chosen = select(index, record["query"], 4)
        expected = assemble(
            record["query"],
            chosen,
            template=PromptTemplate(instructions="Classify.", example="Q: {input}\nA: {label}"),
            tokenizer=WhitespaceCounter(),
        )
        assert record["prompt"] == expected.to_dict()


def test_parquet_output_holds_the_same_records(
    cli: Cli, index_dir: Path, queries_file: Path, tmp_path: Path, read_jsonl: ReadJsonl
) -> None:
    cli(
        *batch_args(
            index_dir, queries_file, tmp_path / "out.jsonl", "--prompt", "--tokenizer", "whitespace"
        )
    )
    cli(
        *batch_args(
            index_dir,
            queries_file,
            tmp_path / "out.parquet",
            "--prompt",
            "--tokenizer",
            "whitespace",
        )
    )
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    records = read_jsonl(tmp_path / "out.jsonl")
    assert [r["position"] for r in rows] == list(range(len(records)))
    for row, record in zip(rows, records, strict=True):
        assert row["id"] == record["id"] and row["query"] == record["query"]
        assert row["example_ids"] == [e["id"] for e in record["examples"]]
        assert row["scores"] == [e["score"] for e in record["examples"]]
        assert json.loads(row["examples"]) == record["examples"]
        assert json.loads(row["prompt"]) == record["prompt"]


def test_an_interrupted_run_resumes_and_equals_an_uninterrupted_one(
    index_dir: Path,
    query_rows: list[tuple[str, str]],
    tmp_path: Path,
    interrupter: Interrupter,
) -> None:
    whole = BatchJob(index=index_dir, out=tmp_path / "whole.jsonl", k=3, chunk_size=4)
    run_batch(whole, query_rows)

    job = BatchJob(index=index_dir, out=tmp_path / "resumed.jsonl", k=3, chunk_size=4)
    interrupter.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        run_batch(job, query_rows)
    assert not job.out.exists()
    assert sorted(p.name for p in job.parts.glob("chunk-*")) == [
        "chunk-00000000.jsonl",
        "chunk-00000001.jsonl",
    ]

    interrupter.stop_at, interrupter.ran = None, []
    report = run_batch(job, query_rows)
    assert interrupter.ran == [2, 3]  # only the chunks the first run did not finish
    assert (report.chunks, report.resumed) == (4, 2)
    assert job.out.read_bytes() == whole.out.read_bytes()
    assert not job.parts.exists()


def test_a_rerun_with_other_options_is_refused(
    index_dir: Path,
    query_rows: list[tuple[str, str]],
    tmp_path: Path,
    interrupter: Interrupter,
) -> None:
    job = BatchJob(index=index_dir, out=tmp_path / "out.jsonl", k=3, chunk_size=4)
    interrupter.stop_at = 1
    with pytest.raises(KeyboardInterrupt):
        run_batch(job, query_rows)
    changed = BatchJob(index=index_dir, out=tmp_path / "out.jsonl", k=2, chunk_size=4)
    with pytest.raises(ConfigError, match=r"out\.jsonl\.parts holds chunks of a run with other"):
        run_batch(changed, query_rows)
    other_queries = [*query_rows[:-1], ("12", "something else")]
    with pytest.raises(ConfigError, match="other queries or options"):
        run_batch(job, other_queries)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, t: BatchJob(index=d, out=t / "out.csv"), r"must end in \.jsonl or \.parquet"),
        (lambda d, t: BatchJob(index=d, out=t / "o.jsonl", k=0), "k must be at least 1"),
        (lambda d, t: BatchJob(index=d, out=t / "o.jsonl", chunk_size=0), "chunk size"),
    ],
)
def test_bad_jobs_are_refused_by_name(
    index_dir: Path, tmp_path: Path, make: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make(index_dir, tmp_path)


def test_cli_errors_are_one_line_and_exit_2(
    index_dir: Path, queries_file: Path, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kshot.cli",
            *batch_args(index_dir, queries_file, tmp_path / "out.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'out.txt'}: the output must end in .jsonl or .parquet (the format "
        "follows the suffix), got '.txt'"
    ]
    result = runner.invoke(
        app, batch_args(index_dir, queries_file, tmp_path / "o.jsonl", "--template", "{input}")
    )
    assert isinstance(result.exception, ConfigError) and "need --prompt" in str(result.exception)
