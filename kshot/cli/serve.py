"""``kshot serve``: the command line's settings, checked, handed to the HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kshot.errors import ConfigError

__all__ = ["serve_cmd"]


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
