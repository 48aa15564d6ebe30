"""The ``kshot`` command line: data, index, select, prompt, serve, bench and demo."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kshot.distributed.commands import CliParsers, RayAddress, RayFlag, register
from kshot.errors import ConfigError, KshotError
from kshot.index.filters import LABEL_FIELD

if TYPE_CHECKING:
    from kshot.client import KshotClient
    from kshot.corpus import Corpus
    from kshot.index import ExampleIndex
    from kshot.prompt import TokenCounter
    from kshot.types import Scored

app = typer.Typer(
    name="kshot",
    help="Dynamic in-context example selection: pick the k examples that help a model most.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch the bundled public data sets as JSONL.", no_args_is_help=True)
index_app = typer.Typer(help="Build, inspect and change example indexes.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks: quality vs fine-tuning, speed.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(index_app, name="index")
app.add_typer(bench_app, name="bench")

logger = logging.getLogger("kshot")

IndexDir = Annotated[Path, typer.Argument(help="Index directory.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _show_version(value: bool) -> None:
    if value:
        from kshot._version import __version__

        typer.echo(f"kshot {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Dynamic in-context example selection: pick the k examples that help a model most."""


def _echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _parse_value(text: str) -> Any:
    """A CLI value: JSON when it parses (numbers, true, quoted strings), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {pair!r} must look like name=value")
        out[key] = value if what == "--param" else _parse_value(value)
    return out


def _parse_filter(pairs: list[str]) -> dict[str, Any] | None:
    """Repeating ``--filter field=value`` for one field means membership (any of the values)."""
    merged: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--filter {pair!r} must look like field=value")
        # Labels are always text: `label=5` means the label "5", not the number.
        merged.setdefault(key, []).append(value if key == LABEL_FIELD else _parse_value(value))
    return {k: v[0] if len(v) == 1 else v for k, v in merged.items()} or None


# How corpus messages name the field options: as the flags of this command line.
_FIELD_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ("input_field", "output_field", "label_field", "id_field", "metadata_fields")
}


def _read_corpus(
    source: Path,
    input_field: str,
    output_field: str | None,
    label_field: str,
    id_field: str,
    metadata_fields: str,
) -> Corpus:
    from kshot.corpus import read_corpus

    return read_corpus(
        source,
        input_field=input_field,
        output_field=output_field,
        label_field=label_field,
        id_field=id_field,
        metadata_fields=[f for f in metadata_fields.split(",") if f] or None,
        option_names=_FIELD_FLAGS,
    )


def _note_outputs(index: ExampleIndex, corpus: Corpus, label_field: str) -> None:
    """Record in the index that a file's labels stand in for its missing outputs."""
    if not corpus.outputs_from_label:
        return
    earlier = index.notes().get("outputs")
    text = f"the labels ({label_field!r}), as {corpus.path.name} has no 'output' field"
    index.set_note("outputs", text if earlier is None else f"{earlier}; {text}")


def _progress(flag: bool | None, rows: int) -> bool:
    """``--progress`` / ``--no-progress``, else a bar for a few hundred rows on a terminal."""
    from kshot.index.encoder import PROGRESS_MIN_ROWS

    if flag is not None:
        return flag
    return rows > PROGRESS_MIN_ROWS and sys.stderr.isatty()


InputField = Annotated[str, typer.Option(help="Column holding the example input.")]
OutputField = Annotated[
    str | None,
    typer.Option(
        help="Column holding the example output (default: output; a file without one uses the "
        "label as the output)."
    ),
]
LabelField = Annotated[str, typer.Option(help="Column holding the label.")]
IdField = Annotated[str, typer.Option(help="Column holding the example id.")]
MetadataFields = Annotated[
    str, typer.Option(help="Comma-separated columns to keep as metadata (JSONL: plus 'metadata').")
]
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bar while embedding (default: above a few hundred rows on a terminal).",
        show_default=False,
    ),
]


# -- data ------------------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="banking77, clinc150, movie-sentiment or boolq.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    split: Annotated[str, typer.Option(help="train, dev or test.")] = "train",
) -> None:
    """Download (once, cached and checked by sha256) a data set split and write it as JSONL."""
    from kshot.data import fetch_dataset

    count = fetch_dataset(name, split, out)
    typer.echo(f"wrote {count} examples of {name}/{split} to {out}")


@data_app.command("download")
def data_download(
    names: Annotated[
        list[str] | None, typer.Argument(help="Data sets to prefetch (default: all).")
    ] = None,
) -> None:
    """Prefetch data set archives into the cache (the install step runs this once)."""
    from kshot.data import DATASETS, ensure_archive

    for name in names or list(DATASETS):
        typer.echo(f"{name:16} {ensure_archive(name)}")


@data_app.command("list")
def data_list() -> None:
    """List the data sets kshot can fetch."""
    from kshot.data import DATASETS

    for name, info in DATASETS.items():
        typer.echo(f"{name:16} {info.description}")


# -- index -----------------------------------------------------------------------------------------
@index_app.command("build")
def index_build(
    source: Annotated[Path, typer.Argument(help="Corpus: .jsonl, .csv, .tsv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create.")],
    input_field: InputField = "input",
    output_field: OutputField = None,
    label_field: LabelField = "label",
    id_field: IdField = "id",
    metadata_fields: MetadataFields = "",
    model: Annotated[
        str | None,
        typer.Option(help="sentence-transformers model name or path ('hashing:DIM' for tests)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    factory: Annotated[
        str | None, typer.Option(help="FAISS factory string (default: by corpus size).")
    ] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Precomputed embeddings (.npy, one row per example).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index.")] = False,
    progress: Progress = None,
    use_ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_actors: Annotated[
        int | None, typer.Option(help="Ray encoder actors (default: one per GPU, else per CPU).")
    ] = None,
) -> None:
    """Embed a corpus (.jsonl, .csv, .tsv or .parquet) and write an index directory."""
    import time

    import numpy as np

    from kshot.index import DEFAULT_MODEL, ExampleIndex, encoder_from_name

    corpus = _read_corpus(source, input_field, output_field, label_field, id_field, metadata_fields)
    vectors = None if embeddings is None else np.load(embeddings, mmap_mode="r")
    encoder = encoder_from_name(model or DEFAULT_MODEL, device=device)
    started = time.perf_counter()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    if use_ray or ray_address is not None:
        from kshot.distributed.commands import embed_on_ray

        vectors = embed_on_ray(
            corpus, encoder, embeddings, ray_address, device, ray_actors, progress
        )
    index = ExampleIndex.build(
        corpus.examples,
        encoder,
        embeddings=vectors,
        factory=factory,
        show_progress=_progress(progress, len(corpus.examples)),
    )
    _note_outputs(index, corpus, label_field)
    index.save(out, overwrite=overwrite)
    seconds = time.perf_counter() - started
    typer.echo(
        f"indexed {len(index)} examples into {out} in {seconds:.1f} s "
        f"({len(index) / max(seconds, 1e-9):.0f} rows/s; {index.factory}, {index.encoder_name})"
    )


@index_app.command("info")
def index_info(path: IndexDir, as_json: JsonFlag = False) -> None:
    """Show what an index holds."""
    from kshot.index import ExampleIndex

    with ExampleIndex.load(path, read_only=True) as index:
        info = index.info()
    if as_json:
        _echo_json(info)
        return
    for key, value in info.items():
        if key == "labels":
            top = sorted(value.items(), key=lambda item: -item[1])[:10]
            more = f" (+{len(value) - 10} more)" if len(value) > 10 else ""
            value = ", ".join(f"{k}: {v}" for k, v in top) + more
        elif key == "notes":
            if not value:
                continue
            value = "; ".join(f"{topic}: {text}" for topic, text in value.items())
        typer.echo(f"{key:14} {value}")


@index_app.command("add")
def index_add(
    path: IndexDir,
    source: Annotated[
        Path, typer.Argument(help="Corpus with the examples to add: the formats of build.")
    ],
    input_field: InputField = "input",
    output_field: OutputField = None,
    label_field: LabelField = "label",
    id_field: IdField = "id",
    metadata_fields: MetadataFields = "",
    progress: Progress = None,
) -> None:
    """Add examples from a corpus file (.jsonl, .csv, .tsv or .parquet) to an index."""
    from kshot.index import ExampleIndex

    corpus = _read_corpus(source, input_field, output_field, label_field, id_field, metadata_fields)
    with ExampleIndex.load(path) as index:
        ids = index.add(corpus.examples, show_progress=_progress(progress, len(corpus.examples)))
        _note_outputs(index, corpus, label_field)
        index.save()
        typer.echo(f"added {len(ids)} examples; the index holds {len(index)}")


@index_app.command("delete")
def index_delete(
    path: IndexDir, ids: Annotated[list[str], typer.Argument(help="Example ids to delete.")]
) -> None:
    """Delete examples by id (no rebuild)."""
    from kshot.index import ExampleIndex

    with ExampleIndex.load(path) as index:
        removed = index.delete(ids)
        index.save()
        typer.echo(f"deleted {removed} examples; the index holds {len(index)}")


# -- select / prompt -------------------------------------------------------------------------------
K = Annotated[int, typer.Option("-k", "--k", help="How many examples.")]
SelectorName = Annotated[str, typer.Option("--selector", "-s", help="A registered selector.")]
Params = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Selector parameter name=value.")
]
Filters = Annotated[
    list[str] | None,
    typer.Option("--filter", "-f", help="field=value; repeat a field for any-of."),
]
Excludes = Annotated[list[str] | None, typer.Option("--exclude", help="Example id to leave out.")]
IndexOrQuery = Annotated[
    str | None, typer.Argument(help="Index directory (left out with --server).", metavar="INDEX")
]
Query = Annotated[
    str | None, typer.Argument(help="The query text.", metavar="QUERY", show_default=False)
]
Server = Annotated[
    str | None,
    typer.Option(
        help="URL of a running `kshot serve`: ask it instead of loading the index and encoder "
        "here (then give the query only)."
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        envvar="KSHOT_API_KEY",
        show_envvar=False,
        help="Key for a --server that guards reads (default: $KSHOT_API_KEY).",
    ),
]


def _where(path: str | None, query: str | None, server: str | None) -> tuple[Path, str]:
    """The index directory and query of ``INDEX QUERY``, or the query alone with --server."""
    if server is not None:
        if query is not None:
            raise ConfigError(
                f"--server answers from the server's index: give the query only, not the index "
                f"directory {path!r}"
            )
        if path is None:
            raise ConfigError("give the query text after --server URL")
        return Path(), path
    if path is None or query is None:
        raise ConfigError("give an index directory and the query text (or --server URL QUERY)")
    return Path(path), query


def _client(server: str, api_key: str | None) -> KshotClient:
    from kshot.client import KshotClient

    return KshotClient(server, api_key=api_key)


def _choice(
    selector: str, param: list[str] | None, filter: list[str] | None, exclude: list[str] | None
) -> dict[str, Any]:
    """The selection options, parsed once for a local index and a server alike."""
    return {
        "selector": selector,
        "params": _parse_pairs(param or [], "--param"),
        "filter": _parse_filter(filter or []),
        "exclude": exclude or [],
    }


def _select(path: Path, query: str, k: int, choice: dict[str, Any]) -> list[Scored]:
    from kshot.api import select
    from kshot.index import ExampleIndex

    wanted = choice["filter"]
    # Read-only: selecting beside a running writer (a server, an `index add`) is fine.
    with ExampleIndex.load(path, read_only=True) as index:
        chosen = select(index, query, k, **choice)
        if wanted and not chosen:
            with index.reading():
                mask = index.view.resolve(wanted)
            if mask is not None and not mask.any():
                # Legitimate, so no error; but an empty answer without a word looks like a bug.
                shown = " ".join(f"{key}={value!r}" for key, value in wanted.items())
                typer.echo(f"no example matches {shown}", err=True)
    return chosen


@app.command("select")
def select_cmd(
    path: IndexOrQuery = None,
    query: Query = None,
    k: K = 4,
    selector: SelectorName = "similarity",
    param: Params = None,
    filter: Filters = None,
    exclude: Excludes = None,
    as_json: JsonFlag = False,
    server: Server = None,
    api_key: ApiKey = None,
) -> None:
    """Select the k examples for a query: kshot select INDEX QUERY, or --server URL QUERY."""
    index_dir, text = _where(path, query, server)
    choice = _choice(selector, param, filter, exclude)
    if server is None:
        chosen = _select(index_dir, text, k, choice)
    else:
        with _client(server, api_key) as client:
            chosen = client.select(text, k, **choice)
    if as_json:
        _echo_json({"examples": [s.to_dict() for s in chosen]})
        return
    for rank, scored in enumerate(chosen, 1):
        ex = scored.example
        typer.echo(f"{rank:>2}. [{scored.score:.3f}] {ex.id} ({ex.label}) {ex.input}")


@app.command("selectors")
def selectors_cmd(as_json: JsonFlag = False) -> None:
    """List the registered selectors and their parameters."""
    from kshot.selector import available_selectors

    listing: dict[str, dict[str, Any]] = {
        name: {key: value for key, value in cls.schema().items() if key != "name"}
        for name, cls in available_selectors().items()
    }
    if as_json:
        _echo_json(listing)
        return
    for name, entry in listing.items():
        typer.echo(f"{name:12} {entry['description']}")
        for pname, schema in entry["params"].items():
            bounds = "".join(
                f" {key}={schema[key]}" for key in ("minimum", "maximum", "enum") if key in schema
            )
            kind = schema["type"]
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            typer.echo(
                f"{'':14}{pname} ({kind}, default {schema['default']!r}{bounds}): "
                f"{schema['description']}"
            )


def _template_option(what: str) -> Any:
    return typer.Option(help=f"{what} (a template of named fields; \\n is a line break).")


def _template_fields(**given: str | None) -> dict[str, str]:
    r"""The template options given, as PromptTemplate fields, with \n and \t unescaped."""
    return {
        name: value.replace("\\n", "\n").replace("\\t", "\t")
        for name, value in given.items()
        if value is not None
    }


def _counter(tokenizer: str | None) -> TokenCounter:
    """The counter --tokenizer names: 'whitespace' (as for the server), a model, or the default."""
    from kshot.prompt import HFTokenCounter, default_counter
    from kshot.prompt.budget import WhitespaceCounter

    if tokenizer == WhitespaceCounter.name:
        return WhitespaceCounter()
    return HFTokenCounter(tokenizer) if tokenizer else default_counter()


@app.command("prompt")
def prompt_cmd(
    path: IndexOrQuery = None,
    query: Query = None,
    k: K = 4,
    selector: SelectorName = "similarity",
    param: Params = None,
    filter: Filters = None,
    exclude: Excludes = None,
    format: Annotated[str, typer.Option("--format", help="text or chat.")] = "text",
    order: Annotated[
        str, typer.Option(help="similar_last, similar_first or random.")
    ] = "similar_last",
    max_tokens: Annotated[int | None, typer.Option(help="Token budget of the prompt.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="Tokenizer (name or path, or 'whitespace') for the budget; default: the "
            "bundled LM's."
        ),
    ] = None,
    instructions: Annotated[str, typer.Option(help="Text placed before the examples.")] = "",
    template: Annotated[
        str | None, _template_option("Text format: one example, e.g. 'Q: {input}\\nA: {label}'")
    ] = None,
    query_template: Annotated[str | None, _template_option("Text format: the query")] = None,
    separator: Annotated[
        str | None, typer.Option(help="Text format: text between parts (default: a blank line).")
    ] = None,
    example_user: Annotated[
        str | None, _template_option("Chat format: an example's user turn")
    ] = None,
    example_assistant: Annotated[
        str | None, _template_option("Chat format: an example's assistant turn, e.g. '{label}'")
    ] = None,
    query_user: Annotated[str | None, _template_option("Chat format: the final user turn")] = None,
    seed: Annotated[int, typer.Option(help="Seed for the random order.")] = 0,
    as_json: JsonFlag = False,
    server: Server = None,
    api_key: ApiKey = None,
) -> None:
    """Select examples for a query and assemble the prompt (INDEX QUERY, or --server URL QUERY)."""
    if format not in ("text", "chat"):
        raise ConfigError(f"--format must be 'text' or 'chat', got {format!r}")
    index_dir, text = _where(path, query, server)
    fields = _template_fields(
        instructions=instructions or None,
        example=template,
        query=query_template,
        separator=separator,
        example_user=example_user,
        example_assistant=example_assistant,
        query_user=query_user,
    )
    assemble: dict[str, Any] = {
        "order": order,
        "max_tokens": max_tokens,
        "format": "chat" if format == "chat" else "text",
        "seed": seed,
    }
    choice = _choice(selector, param, filter, exclude)
    if server is None:
        from kshot.api import assemble as assemble_prompt
        from kshot.prompt import PromptTemplate

        prompt = assemble_prompt(
            text,
            _select(index_dir, text, k, choice),
            template=PromptTemplate(**fields),
            tokenizer=_counter(tokenizer),
            **assemble,
        )
    elif tokenizer is not None:
        raise ConfigError(
            "--tokenizer counts tokens here; with --server the server's tokenizer counts "
            "(`kshot serve --tokenizer`)"
        )
    else:
        with _client(server, api_key) as client:
            prompt = client.prompt(text, k, template=fields, **choice, **assemble)
    if as_json:
        _echo_json(prompt.to_dict())
        return
    if prompt.text is not None:
        typer.echo(prompt.text)
    else:
        for message in prompt.messages or ():
            typer.echo(f"[{message['role']}] {message['content']}")
    dropped = f", dropped {list(prompt.dropped_ids)}" if prompt.dropped_ids else ""
    typer.echo(f"\n-- {len(prompt.examples)} examples, {prompt.token_count} tokens{dropped}")


# -- serve -----------------------------------------------------------------------------------------
@app.command("serve")
def serve_cmd(
    path: Annotated[
        Path | None, typer.Argument(help="Index directory (optional with --local-model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    auth: Annotated[str, typer.Option(help="writes: key guards writes; all: every call.")] = "",
    allow_anonymous_writes: Annotated[
        bool, typer.Option(help="Accept writes without an API key (KSHOT_API_KEY unset).")
    ] = False,
    read_only: Annotated[
        bool, typer.Option(help="Refuse every write (required for --workers above 1).")
    ] = False,
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer for token budgets.")] = None,
    device: Annotated[str, typer.Option(help="Encoder device.")] = "",
    upstream: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL /v1/chat/completions forwards to."),
    ] = None,
    local_model: Annotated[
        str | None,
        typer.Option(
            help="Also answer /v1/chat/completions and /v1/completions with a local model "
            "(default the bundled SmolLM2).",
            metavar="[NAME]",
        ),
    ] = None,
    collection: Annotated[
        list[str] | None,
        typer.Option(
            help="Also serve the index DIR as collection NAME (repeatable).", metavar="NAME=DIR"
        ),
    ] = None,
    collections: Annotated[
        Path | None,
        typer.Option(help="JSON or TOML file: name -> {path, read_only, k, selector, params}."),
    ] = None,
    collections_dir: Annotated[
        Path | None,
        typer.Option(help="Serve the collections in DIR; POST /v1/collections creates them there."),
    ] = None,
) -> None:
    """Serve selections and assembled prompts over HTTP (settings also from KSHOT_* variables)."""
    from kshot.server import ServerSettings, serve
    from kshot.server.collections import parse_collection_options

    overrides: dict[str, Any] = {"host": host, "port": port, "workers": workers}
    if path is not None:
        overrides["index"] = path
    if upstream:
        overrides["upstream"] = upstream
    if local_model:
        overrides["local_model"] = local_model
    if auth:
        overrides["auth"] = auth
    if allow_anonymous_writes:
        overrides["allow_anonymous_writes"] = True
    if read_only:
        overrides["read_only"] = True
    if tokenizer:
        overrides["tokenizer"] = tokenizer
    if device:
        overrides["device"] = device
    if collection or collections:
        overrides["collections"] = parse_collection_options(collection or [], collections)
    if collections_dir:
        overrides["collections_dir"] = collections_dir
    from pydantic import ValidationError

    try:
        settings = ServerSettings(**overrides)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"{where}: {str(first['msg']).removeprefix('Value error, ')}") from exc
    serve(settings)


# -- bench -----------------------------------------------------------------------------------------
_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


@bench_app.command("quality", context_settings=_PASS_THROUGH)
def bench_quality(ctx: typer.Context) -> None:
    """In-context arms vs fine-tuned baselines (options: kshot bench quality --help)."""
    from kshot.bench.quality import run_from_argv

    typer.echo(f"results in {run_from_argv(ctx.args)}")


@bench_app.command("speed", context_settings=_PASS_THROUGH)
def bench_speed(ctx: typer.Context) -> None:
    """Latency and throughput vs LangChain's selectors (options: kshot bench speed --help)."""
    from kshot.bench.speed import run_from_argv

    typer.echo(run_from_argv(ctx.args) / "results.md")


# -- demo ------------------------------------------------------------------------------------------
@app.command("demo")
def demo_cmd(
    questions: Annotated[int, typer.Option(help="How many BANKING77 test questions.")] = 5,
    k: K = 4,
    model: Annotated[
        bool, typer.Option(help="Ask the bundled language model (SmolLM2-135M-Instruct).")
    ] = True,
    seed: Annotated[int, typer.Option(help="Which test questions (seeded draw).")] = 0,
) -> None:
    """The end-to-end demo on BANKING77: select, assemble, ask the model, check the answer."""
    from kshot.demo import run_demo

    run_demo(questions=questions, k=k, use_model=model, seed=seed)


register(app, CliParsers(_choice, _template_fields, _read_corpus))


def _optional_value(argv: list[str], option: str, default: str) -> list[str]:
    """``argv`` with ``default`` after ``option`` where it has no value (typer cannot say so)."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg == option and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(default)
    return out


def main() -> None:
    """Entry point of the ``kshot`` console script: KshotError becomes one line and exit 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Some libraries set their own loggers to DEBUG; the console shows warnings and worse only.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    # transformers draws a bar for every sub-second weight load; kshot draws its own on slow work.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app(args=_optional_value(sys.argv[1:], "--local-model", "bundled"))
    except KshotError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        # A file the user named cannot be read or written: their condition to fix, not a bug.
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
