"""``kshot demo``: the end-to-end demo on BANKING77."""

from __future__ import annotations

from typing import Annotated

import typer

from kshot.cli.options import K

__all__ = ["demo_cmd"]


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
