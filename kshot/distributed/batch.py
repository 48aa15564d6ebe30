"""Offline selection for a large query file: chunked, resumable, in this process or on Ray.

The queries are cut into chunks of ``chunk_size``. Each finished chunk is written atomically to
``OUT.parts/`` beside the output, so a rerun after a crash or a kill skips the chunks already
there; when every chunk is in, they are merged in input order into ``OUT`` (atomically) and the
parts directory is removed. ``OUT.parts/job.json`` records what the chunks were computed from (the
query texts and every option), and a rerun with anything changed is refused rather than mixed.

Every worker, local or Ray, opens the index read-only with :func:`kshot.api.load_index` and
selects through
the registered selector's vectorised ``select_batch``, so a record equals what ``kshot select``
answers for that query.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kshot._files import atomic_path, atomic_writer
from kshot.api import assemble, load_index, select_batch
from kshot.distributed._ray import ray_session, reraise_kshot_error
from kshot.errors import ConfigError, missing_extra
from kshot.prompt import (
    HFTokenCounter,
    PromptTemplate,
    TokenCounter,
    WhitespaceCounter,
    default_counter,
)
from kshot.types import Filter, PromptFormat

__all__ = ["OUTPUT_SUFFIXES", "BatchJob", "BatchReport", "PromptOptions", "run_batch"]

logger = logging.getLogger(__name__)

#: The output formats, chosen by the output file's suffix.
OUTPUT_SUFFIXES = (".jsonl", ".parquet")

_JOB_FILE = "job.json"
# Bumped when the chunk files change shape, so old parts are not merged into new output.
_PARTS_VERSION = 1

# A query as the job reads it: (query id, query text).
Query = tuple[str, str]
Record = dict[str, Any]


@dataclass(frozen=True)
class PromptOptions:
    """How to assemble each query's prompt; the fields of :meth:`PromptAssembler.assemble`.

    ``template`` holds :class:`PromptTemplate` fields; ``tokenizer`` is ``None`` (the bundled
    LM's), ``"whitespace"`` or a transformers tokenizer name or path.
    """

    template: Mapping[str, str] = field(default_factory=dict)
    format: PromptFormat = "text"
    order: str = "similar_last"
    max_tokens: int | None = None
    tokenizer: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.format not in ("text", "chat"):
            raise ConfigError(f"the prompt format must be 'text' or 'chat', got {self.format!r}")
        PromptTemplate(**self.template)  # refuse a bad template before any chunk runs

    def counter(self) -> TokenCounter:
        """The token counter ``tokenizer`` names."""
        if self.tokenizer == WhitespaceCounter.name:
            return WhitespaceCounter()
        return HFTokenCounter(self.tokenizer) if self.tokenizer else default_counter()


@dataclass(frozen=True)
class BatchJob:
    """One batch selection: the index, the selection options and how to cut the work."""

    index: Path
    out: Path
    k: int = 4
    selector: str = "similarity"
    params: Mapping[str, Any] = field(default_factory=dict)
    filter: Filter | None = None
    exclude: tuple[str, ...] = ()
    prompt: PromptOptions | None = None
    chunk_size: int = 1000

    def __post_init__(self) -> None:
        if self.out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ConfigError(
                f"{self.out}: the output must end in {' or '.join(OUTPUT_SUFFIXES)} "
                f"(the format follows the suffix), got {self.out.suffix or '(none)'!r}"
            )
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if self.chunk_size < 1:
            raise ConfigError(f"the chunk size must be at least 1, got {self.chunk_size}")

    @property
    def parts(self) -> Path:
        """The directory of finished chunks while the job runs."""
        return self.out.with_name(self.out.name + ".parts")

    def options(self) -> dict[str, Any]:
        """Everything that decides a chunk's content, as JSON-ready values."""
        described = dataclasses.asdict(self)
        described["index"] = str(self.index.resolve())
        del described["out"]
        return described


@dataclass(frozen=True)
class BatchReport:
    """What a run did: the queries and chunks in all, and the chunks found done from before."""

    queries: int
    chunks: int
    resumed: int
    out: Path


class ChunkWorker:
    """Opens the index once and answers chunks of queries; the unit a Ray actor wraps."""

    def __init__(self, job: BatchJob) -> None:
        self._job = job
        # Read-only: any number of workers open the index beside each other and beside a writer.
        self._index = load_index(job.index, read_only=True)
        prompt = job.prompt
        self._template = None if prompt is None else PromptTemplate(**prompt.template)
        self._counter = None if prompt is None else prompt.counter()

    def close(self) -> None:
        """Release the index."""
        self._index.close()

    def run(self, number: int, start: int, queries: Sequence[Query]) -> tuple[int, list[Record]]:
        """Return chunk ``number``'s records; its first query is at input position ``start``."""
        job = self._job
        picks = select_batch(
            self._index,
            [text for _, text in queries],
            job.k,
            selector=job.selector,
            params=job.params,
            filter=job.filter,
            exclude=job.exclude,
        )
        records: list[Record] = []
        for offset, ((query_id, text), chosen) in enumerate(zip(queries, picks, strict=True)):
            record: Record = {
                "position": start + offset,
                "id": query_id,
                "query": text,
                "examples": [scored.to_dict() for scored in chosen],
            }
            if self._counter is not None and job.prompt is not None:
                record["prompt"] = assemble(
                    text,
                    chosen,
                    template=self._template,
                    tokenizer=self._counter,
                    order=job.prompt.order,
                    max_tokens=job.prompt.max_tokens,
                    format=job.prompt.format,
                    seed=job.prompt.seed,
                ).to_dict()
            records.append(record)
        return number, records


def run_batch(
    job: BatchJob,
    queries: Sequence[Query],
    *,
    ray: bool = False,
    address: str | None = None,
    workers: int | None = None,
    show_progress: bool | None = None,
) -> BatchReport:
    """Select for every query into ``job.out``, resuming from the chunks a previous run left.

    With ``ray`` the chunks are spread over ``workers`` Ray actors (default: one per CPU of the
    cluster at ``address``, or of a local one), each opening the same index directory, which
    must therefore be reachable at the same path on every node.
    """
    if not queries:
        raise ConfigError("the query file holds no queries")
    if workers is not None and workers < 1:
        raise ConfigError(f"the worker count must be at least 1, got {workers}")
    if job.out.suffix.lower() == ".parquet":
        _pyarrow()  # refuse before the work, not at the merge
    starts = range(0, len(queries), job.chunk_size)
    _open_parts(job, queries)
    todo = [(n, s) for n, s in enumerate(starts) if not _chunk_path(job, n).is_file()]
    resumed = len(starts) - len(todo)
    if resumed:
        logger.info("resuming: %d of %d chunks are done", resumed, len(starts))
    bar = tqdm(
        total=len(queries),
        initial=min(len(queries), resumed * job.chunk_size),
        desc="selecting",
        unit="q",
        disable=not (show_progress or (show_progress is None and len(queries) > 10_000)),
    )
    with bar:
        chunks = ((n, s, queries[s : s + job.chunk_size]) for n, s in todo)
        answered = _on_ray(job, chunks, address, workers) if ray else _here(job, chunks)
        for number, records in answered:
            with atomic_writer(_chunk_path(job, number), "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            bar.update(len(records))
    _merge(job, len(starts))
    shutil.rmtree(job.parts)
    return BatchReport(queries=len(queries), chunks=len(starts), resumed=resumed, out=job.out)


Chunk = tuple[int, int, Sequence[Query]]


def _here(job: BatchJob, chunks: Iterable[Chunk]) -> Iterator[tuple[int, list[Record]]]:
    worker = ChunkWorker(job)
    try:
        for number, start, rows in chunks:
            yield worker.run(number, start, rows)
    finally:
        worker.close()


def _on_ray(
    job: BatchJob, chunks: Iterable[Chunk], address: str | None, workers: int | None
) -> Iterator[tuple[int, list[Record]]]:
    pending = list(chunks)
    if not pending:
        return
    with ray_session(address) as ray:
        size = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(ChunkWorker)
        # Workers may start in another directory, or on another node: give them the full path.
        placed = dataclasses.replace(job, index=job.index.resolve())
        pool = ray.util.ActorPool([actor.remote(placed) for _ in range(min(size, len(pending)))])
        try:
            # Unordered: a chunk is written as soon as it is done; the merge restores the order.
            yield from pool.map_unordered(lambda a, chunk: a.run.remote(*chunk), pending)
        except ray.exceptions.RayError as exc:
            reraise_kshot_error(exc)
            raise


def _open_parts(job: BatchJob, queries: Sequence[Query]) -> None:
    """Create the parts directory, or check that the one there belongs to this very job."""
    digest = hashlib.sha256()
    for query_id, text in queries:
        digest.update(json.dumps([query_id, text], ensure_ascii=False).encode())
    wanted = {
        "version": _PARTS_VERSION,
        "queries": len(queries),
        "queries_sha256": digest.hexdigest(),
        "options": job.options(),
    }
    # Round-trip so tuples compare equal to the lists read back.
    wanted = json.loads(json.dumps(wanted, ensure_ascii=False))
    marker = job.parts / _JOB_FILE
    if marker.is_file():
        if json.loads(marker.read_text(encoding="utf-8")) != wanted:
            raise ConfigError(
                f"{job.parts} holds chunks of a run with other queries or options; rerun with "
                f"the same ones to resume it, or delete {job.parts} to start over"
            )
        return
    if job.out.exists():
        logger.info("%s exists and will be replaced when the run completes", job.out)
    job.parts.mkdir(parents=True, exist_ok=True)
    with atomic_writer(marker, "w", encoding="utf-8") as handle:
        json.dump(wanted, handle, ensure_ascii=False, indent=1)


def _chunk_path(job: BatchJob, number: int) -> Path:
    return job.parts / f"chunk-{number:08d}.jsonl"


def _merge(job: BatchJob, chunks: int) -> None:
    paths = [_chunk_path(job, n) for n in range(chunks)]
    if job.out.suffix.lower() == ".jsonl":
        with atomic_writer(job.out, "wb") as out:
            for path in paths:
                with path.open("rb") as part:
                    shutil.copyfileobj(part, out)
        return
    _merge_parquet(job.out, paths)


def _merge_parquet(out: Path, paths: Sequence[Path]) -> None:
    """Write the chunks as one parquet file of flat columns, nested values as JSON text.

    Example metadata differs from row to row, which a fixed parquet schema cannot hold, so
    ``examples`` and ``prompt`` are JSON strings; ``example_ids`` and ``scores`` are typed lists.
    """
    pa, pq = _pyarrow()
    schema = pa.schema(
        [
            ("position", pa.int64()),
            ("id", pa.string()),
            ("query", pa.string()),
            ("example_ids", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("examples", pa.string()),
            ("prompt", pa.string()),
        ]
    )
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in paths:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            columns = {
                "position": [r["position"] for r in rows],
                "id": [r["id"] for r in rows],
                "query": [r["query"] for r in rows],
                "example_ids": [[e["id"] for e in r["examples"]] for r in rows],
                "scores": [[e["score"] for e in r["examples"]] for r in rows],
                "examples": [json.dumps(r["examples"], ensure_ascii=False) for r in rows],
                "prompt": [
                    json.dumps(r["prompt"], ensure_ascii=False) if "prompt" in r else None
                    for r in rows
                ],
            }
            writer.write_table(pa.table(columns, schema=schema))


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise missing_extra("pyarrow", "bench") from exc
    return pa, pq
