"""The command line of the distributed jobs: ``kshot select-batch`` and the Ray options of build.

:mod:`kshot.cli` calls :func:`register` with the parsers ``kshot select`` uses, so the options
read and fail the same way, and puts :data:`RayFlag` and :data:`RayAddress` on ``index build``.
The CLI imports this module, never the reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from kshot.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from kshot.corpus import Corpus
    from kshot.index.encoder import Encoder
    from kshot.types import PromptFormat

    Matrix = npt.NDArray[np.float32]

__all__ = ["CliParsers", "RayAddress", "RayFlag", "embed_on_ray", "register"]

RayFlag = Annotated[
    bool,
    typer.Option(
        "--ray",
        help="Run on Ray: a local cluster (started, or the one this machine runs), or the one "
        "at --ray-address.",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        metavar="ADDRESS",
        help="Ray cluster to connect to (host:port of the head, or 'auto'); implies --ray.",
    ),
]
# The selection options, spelled as `kshot select` spells them.
K = Annotated[int, typer.Option("-k", "--k", help="How many examples per query.")]
SelectorName = Annotated[str, typer.Option("--selector", "-s", help="A registered selector.")]
Params = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Selector parameter name=value.")
]
Filters = Annotated[
    list[str] | None, typer.Option("--filter", "-f", help="field=value; repeat a field for any-of.")
]
Excludes = Annotated[list[str] | None, typer.Option("--exclude", help="Example id to leave out.")]


def embed_on_ray(
    corpus: Corpus,
    encoder: Encoder,
    embeddings: Path | None,
    address: str | None,
    device: str,
    actors: int | None,
    progress: bool | None,
) -> Matrix:
    """``index build --ray``: the corpus's vectors from a pool of Ray encoder actors."""
    from kshot.distributed.embed import embed_with_ray

    if embeddings is not None:
        raise ConfigError("--ray computes the embeddings; leave out --embeddings or --ray")
    return embed_with_ray(
        [ex.input for ex in corpus.examples],
        encoder.name,
        encoder.dim,
        address=address,
        device=device,
        actors=actors,
        show_progress=progress is not False,
    )


@dataclass(frozen=True)
class CliParsers:
    """The command line's own option parsers, handed over by :mod:`kshot.cli`."""

    #: ``(selector, --param pairs, --filter pairs, --exclude ids)`` to the selection options.
    choice: Callable[[str, list[str] | None, list[str] | None, list[str] | None], dict[str, Any]]
    #: Template options to :class:`~kshot.prompt.PromptTemplate` fields.
    template_fields: Callable[..., dict[str, str]]
    #: ``(file, input, output, label, id, metadata fields)`` to the corpus, errors in flag names.
    read_corpus: Callable[[Path, str, str | None, str, str, str], Corpus]


def register(app: typer.Typer, parsers: CliParsers) -> None:
    """Add ``select-batch`` to ``app``."""

    @app.command("select-batch")
    def select_batch_cmd(
        path: Annotated[Path, typer.Argument(help="Index directory.")],
        queries: Annotated[
            Path,
            typer.Argument(help="Query file: .jsonl, .csv, .tsv or .parquet, one query a row."),
        ],
        out: Annotated[
            Path,
            typer.Option("--out", "-o", help="Output file: .jsonl or .parquet, in input order."),
        ],
        input_field: Annotated[str, typer.Option(help="Column holding the query text.")] = "input",
        id_field: Annotated[
            str, typer.Option(help="Column holding the query id (default: the row position).")
        ] = "id",
        k: K = 4,
        selector: SelectorName = "similarity",
        param: Params = None,
        filter: Filters = None,
        exclude: Excludes = None,
        prompt: Annotated[
            bool, typer.Option("--prompt", help="Also assemble each query's prompt.")
        ] = False,
        format: Annotated[
            str, typer.Option("--format", help="Prompt format: text or chat.")
        ] = "text",
        order: Annotated[
            str, typer.Option(help="similar_last, similar_first or random.")
        ] = "similar_last",
        max_tokens: Annotated[int | None, typer.Option(help="Token budget of each prompt.")] = None,
        tokenizer: Annotated[
            str | None, typer.Option(help="Tokenizer for the budget (name, path or 'whitespace').")
        ] = None,
        instructions: Annotated[str, typer.Option(help="Text placed before the examples.")] = "",
        template: Annotated[
            str | None,
            typer.Option(help="Text format: one example, e.g. 'Q: {input}\\nA: {label}'."),
        ] = None,
        query_template: Annotated[str | None, typer.Option(help="Text format: the query.")] = None,
        seed: Annotated[int, typer.Option(help="Seed for the random order.")] = 0,
        chunk_size: Annotated[
            int, typer.Option(help="Queries per chunk: the unit of work and of resumption.")
        ] = 1000,
        use_ray: RayFlag = False,
        ray_address: RayAddress = None,
        workers: Annotated[
            int | None, typer.Option(help="Ray actors (default: one per CPU of the cluster).")
        ] = None,
        progress: Annotated[
            bool | None,
            typer.Option("--progress/--no-progress", help="Progress bar.", show_default=False),
        ] = None,
    ) -> None:
        """Select (and with --prompt assemble) for every query of a file; a rerun resumes."""
        from kshot.distributed.batch import BatchJob, PromptOptions, run_batch

        choice = parsers.choice(selector, param, filter, exclude)
        options = None
        if not prompt and (instructions or template or query_template or max_tokens or tokenizer):
            raise ConfigError("the prompt options (template, budget, tokenizer) need --prompt")
        if prompt:
            fields = parsers.template_fields(
                instructions=instructions or None, example=template, query=query_template
            )
            options = PromptOptions(
                template=fields,
                format=cast("PromptFormat", format),
                order=order,
                max_tokens=max_tokens,
                tokenizer=tokenizer,
                seed=seed,
            )
        job = BatchJob(
            index=path,
            out=out,
            k=k,
            selector=choice["selector"],
            params=choice["params"],
            filter=choice["filter"],
            exclude=tuple(choice["exclude"]),
            prompt=options,
            chunk_size=chunk_size,
        )
        # Queries have no outputs: naming the input as the output column keeps the corpus reader
        # from warning that every output is empty.
        corpus = parsers.read_corpus(queries, input_field, input_field, "label", id_field, "")
        rows = [(ex.id or str(i), ex.input) for i, ex in enumerate(corpus.examples)]
        report = run_batch(
            job,
            rows,
            ray=use_ray or ray_address is not None,
            address=ray_address,
            workers=workers,
            show_progress=progress,
        )
        resumed = f" ({report.resumed} of {report.chunks} chunks from an earlier run)"
        typer.echo(
            f"selected for {report.queries} queries into {report.out}"
            + (resumed if report.resumed else "")
        )
