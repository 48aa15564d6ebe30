"""``kshot bench``: the quality and speed benchmarks, their own options passed through."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Benchmarks: quality vs fine-tuning, speed.", no_args_is_help=True)

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
