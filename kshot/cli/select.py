"""``kshot select``, ``prompt`` and ``selectors``: from a local index or a ``--server``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kshot.cli.options import (
    Excludes,
    Filters,
    JsonFlag,
    K,
    Params,
    SelectorName,
    echo_json,
    parse_choice,
    template_fields,
)
from kshot.errors import ConfigError

if TYPE_CHECKING:
    from kshot.client import KshotClient
    from kshot.prompt import TokenCounter
    from kshot.types import Scored

__all__ = ["prompt_cmd", "select_cmd", "selectors_cmd"]

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
    choice = parse_choice(selector, param, filter, exclude)
    if server is None:
        chosen = _select(index_dir, text, k, choice)
    else:
        with _client(server, api_key) as client:
            chosen = client.select(text, k, **choice)
    if as_json:
        echo_json({"examples": [s.to_dict() for s in chosen]})
        return
    for rank, scored in enumerate(chosen, 1):
        ex = scored.example
        typer.echo(f"{rank:>2}. [{scored.score:.3f}] {ex.id} ({ex.label}) {ex.input}")


def selectors_cmd(as_json: JsonFlag = False) -> None:
    """List the registered selectors and their parameters."""
    from kshot.selector import available_selectors

    listing: dict[str, dict[str, Any]] = {
        name: {key: value for key, value in cls.schema().items() if key != "name"}
        for name, cls in available_selectors().items()
    }
    if as_json:
        echo_json(listing)
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


def _counter(tokenizer: str | None) -> TokenCounter:
    """The counter --tokenizer names: 'whitespace' (as for the server), a model, or the default."""
    from kshot.prompt import HFTokenCounter, default_counter
    from kshot.prompt.budget import WhitespaceCounter

    if tokenizer == WhitespaceCounter.name:
        return WhitespaceCounter()
    return HFTokenCounter(tokenizer) if tokenizer else default_counter()


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
    fields = template_fields(
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
    choice = parse_choice(selector, param, filter, exclude)
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
        echo_json(prompt.to_dict())
        return
    if prompt.text is not None:
        typer.echo(prompt.text)
    else:
        for message in prompt.messages or ():
            typer.echo(f"[{message['role']}] {message['content']}")
    dropped = f", dropped {list(prompt.dropped_ids)}" if prompt.dropped_ids else ""
    typer.echo(f"\n-- {len(prompt.examples)} examples, {prompt.token_count} tokens{dropped}")
