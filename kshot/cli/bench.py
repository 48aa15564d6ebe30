"""``kshot bench``: the quality benchmark's options, and the speed benchmark's passed through.

``kshot bench quality`` reads a user's own files as ``kshot index build`` does (the same formats
and field options); every option given overrides the ``--config`` file, and an option left at its
default leaves the file's value. ``python -m benchmarks.quality.run`` runs the same command
(:func:`quality_main`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kshot.cli.options import IdField, InputField, LabelField, OutputField
from kshot.errors import KshotError

__all__ = ["bench_app", "bench_quality", "quality_main"]

bench_app = typer.Typer(help="Benchmarks: quality vs fine-tuning, speed.", no_args_is_help=True)

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}

#: The options whose config setting has another name.
_SETTING = {"out": "out_dir", "threads": "torch_threads", "calibrate": "calibrated_arms"}
_SETTING |= {"instruction": "instructions", "config": ""}


def bench_quality(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON config file (benchmarks/quality/configs/); options override it."),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(help="Registered data set: banking77, clinc150, movie-sentiment, boolq."),
    ] = "banking77",
    train_file: Annotated[
        Path | None,
        typer.Option(help="Your labelled training rows: .jsonl, .csv, .tsv or .parquet."),
    ] = None,
    test_file: Annotated[
        Path | None,
        typer.Option(help="Your labelled test rows (same formats); needs --train-file."),
    ] = None,
    input_field: InputField = "input",
    output_field: OutputField = None,
    label_field: LabelField = "label",
    id_field: IdField = "id",
    name: Annotated[
        str | None,
        typer.Option(
            help="Data set name in the reports (default: the registered name, or the training "
            "file's name without 'train')."
        ),
    ] = None,
    instruction: Annotated[
        str | None,
        typer.Option(
            help="Task instruction at the top of every prompt, e.g. 'Classify the intent of each "
            "support message.' (default: one per registered data set, else 'Classify each "
            "input.')."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results directory.")] = Path(
        "benchmarks/results/quality/run"
    ),
    limit_test: Annotated[
        int, typer.Option(help="Test rows to keep (seeded, stratified; 0: all).")
    ] = 300,
    limit_train: Annotated[
        int, typer.Option(help="Training rows to keep (seeded, stratified; 0: all).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seeds the limits, training order and init.")] = 0,
    model: Annotated[
        str | None,
        typer.Option(
            help="Causal LM name, path or .gguf (default: the bundled SmolLM2-135M-Instruct), or "
            "openai:NAME for the model behind --base-url (in-context arms; implies --predict "
            "generate and --baselines logreg,knn)."
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server of an openai:NAME model.")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the endpoint's API key (default: "
            "KSHOT_LLM_API_KEY, else OPENAI_API_KEY, else none)."
        ),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="sentence-transformers model (default: the bundled all-MiniLM-L6-v2; "
            "'hashing:DIM' for tests)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps.")] = "auto",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    ks: Annotated[str, typer.Option(help="Comma-separated k values.")] = "1,2,4,8",
    strategies: Annotated[str, typer.Option(help="Comma-separated selector names.")] = (
        "random,jaccard,bm25,similarity,mmr,balanced"
    ),
    random_seeds: Annotated[str, typer.Option(help="Seeds of the random strategy.")] = "0,1,2",
    zero_shot: Annotated[
        bool, typer.Option("--zero-shot/--no-zero-shot", help="Run the zero-shot arm.")
    ] = True,
    baselines: Annotated[
        str,
        typer.Option(
            help="Comma-separated baselines. The default runs all five, so the three slow "
            "fine-tuning ones (full, lora, prompt-tuning: minutes to hours on a CPU) run unless "
            "you leave them out: --baselines logreg,knn."
        ),
    ] = "full,lora,prompt-tuning,logreg,knn",
    predict: Annotated[
        str,
        typer.Option(help="score (rank the label texts) or generate (greedy, exact label match)."),
    ] = "score",
    calibrate: Annotated[
        str | None,
        typer.Option(
            help="Arms to also run with contextual calibration, beside their raw arms: "
            "comma-separated zero-shot and strategy names, or all.",
            metavar="ARMS",
        ),
    ] = None,
    epochs: Annotated[
        float | None, typer.Option(help="Training epochs of the fine-tuning baselines.")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Training steps of every fine-tuning baseline.")
    ] = None,
    weights_dir: Annotated[
        Path | None, typer.Option(help="Cache of trained weights and embeddings.")
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")
    ] = True,
) -> None:
    """In-context arms vs fine-tuned baselines, on a registered data set or your own files.

    Says the estimated cost before it starts; results.md ends with a recommendation.
    """
    from kshot.bench.quality import config_from_options, run_logged

    given: dict[str, Any] = {}
    for param, value in ctx.params.items():
        source = ctx.get_parameter_source(param)
        # By name: typer ships its own copy of click's ParameterSource enum.
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            continue
        setting = _SETTING.get(param, param)
        if param in ("limit_test", "limit_train") and value == 0:
            value = None  # 0 keeps every row
        if param in ("ks", "strategies", "random_seeds", "baselines") and value is None:
            value = ""  # typer reads an empty value as None; here it means none
        if setting:
            given[setting] = str(value) if isinstance(value, Path) else value
    if "train_file" in given or "test_file" in given:
        given.setdefault("dataset", None)
    out_dir = run_logged(config_from_options(config, given))
    typer.echo(f"results in {out_dir / 'results.md'}")


bench_app.command("quality")(bench_quality)


@bench_app.command("speed", context_settings=_PASS_THROUGH)
def bench_speed(ctx: typer.Context) -> None:
    """Latency and throughput vs LangChain's selectors (options: kshot bench speed --help)."""
    from kshot.bench.speed import run_from_argv

    typer.echo(run_from_argv(ctx.args) / "results.md")


_quality_app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
_quality_app.command()(bench_quality)


def quality_main() -> None:
    """Run ``kshot bench quality`` as ``python -m benchmarks.quality.run``.

    A kshot error (a bad setting, an unreadable file) is one line on stderr and exit status 2.
    """
    try:
        _quality_app(prog_name="python -m benchmarks.quality.run")
    except (KshotError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
