"""The ``kshot`` command line: data, index, select, prompt, serve, bench and demo.

This module assembles the app from the command modules (each one job) and runs it: the
registration order below is the order ``kshot --help`` lists the commands in.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from kshot.cli.bench import bench_app
from kshot.cli.data import data_app
from kshot.cli.demo import demo_cmd
from kshot.cli.index import index_app
from kshot.cli.options import parse_choice, read_corpus, template_fields
from kshot.cli.select import prompt_cmd, select_cmd, selectors_cmd
from kshot.cli.serve import serve_cmd
from kshot.distributed.commands import CliParsers, register
from kshot.errors import KshotError

__all__ = ["app", "main"]

app = typer.Typer(
    name="kshot",
    help="Dynamic in-context example selection: pick the k examples that help a model most.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(index_app, name="index")
app.add_typer(bench_app, name="bench")


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


app.command("select")(select_cmd)
app.command("selectors")(selectors_cmd)
app.command("prompt")(prompt_cmd)
app.command("serve")(serve_cmd)
app.command("demo")(demo_cmd)
register(app, CliParsers(parse_choice, template_fields, read_corpus))


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
