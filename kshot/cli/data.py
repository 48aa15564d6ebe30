"""``kshot data``: fetch, prefetch and list the bundled public data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Fetch the bundled public data sets as JSONL.", no_args_is_help=True)


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
