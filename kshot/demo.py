"""The end-to-end demo behind ``kshot demo``: BANKING77, selection, prompt, model, answer.

Everything slow is cached: the data archive (``~/.cache/kshot/archives``), the index of the
training split (``~/.cache/kshot/indexes``) and the dequantised language model, so a rerun takes
seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from kshot.api import assemble, select
from kshot.data import load_dataset
from kshot.errors import IndexFormatError
from kshot.index import ExampleIndex, SentenceTransformerEncoder
from kshot.types import Scored

__all__ = ["demo_index", "run_demo"]

STRATEGIES = ("similarity", "mmr", "bm25", "balanced", "random")
INSTRUCTIONS = "Classify each online-banking customer message into its intent."


def _cache_root() -> Path:
    root = os.environ.get("KSHOT_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "kshot"


def demo_index(console: Console) -> ExampleIndex:
    """Load the cached BANKING77-train index, or build it (about a minute on 2 CPU cores)."""
    path = _cache_root() / "indexes" / "banking77-train-minilm"
    if path.exists():
        try:
            return ExampleIndex.load(path)
        except IndexFormatError as exc:
            console.print(f"[yellow]cached index unusable ({exc}); rebuilding[/yellow]")
    train = load_dataset("banking77", "train")
    console.print(f"embedding {len(train)} BANKING77 training examples (cached for next time)")
    started = time.perf_counter()
    index = ExampleIndex.build(train, SentenceTransformerEncoder(), show_progress=True)
    index.save(path, overwrite=True)
    seconds = time.perf_counter() - started
    console.print(f"built {path} in {seconds:.0f} s ({len(index) / seconds:.0f} rows/s)")
    return index


def _show_selection(console: Console, name: str, chosen: list[Scored], truth: str) -> None:
    table = Table(title=f"{name}", title_justify="left", show_lines=False, expand=False)
    table.add_column("score", justify="right")
    table.add_column("label")
    table.add_column("example input")
    for scored in chosen:
        label = scored.example.label or ""
        style = "green" if label == truth else ""
        table.add_row(
            f"{scored.score:.3f}",
            f"[{style}]{label}[/{style}]" if style else label,
            scored.example.input,
        )
    console.print(table)


def run_demo(*, questions: int = 5, k: int = 4, use_model: bool = True, seed: int = 0) -> None:
    """Show, for some BANKING77 test questions, each strategy's picks, the prompt and answer."""
    console = Console()
    index = demo_index(console)
    test = load_dataset("banking77", "test")
    rng = np.random.default_rng(seed)
    picked = [test[i] for i in rng.choice(len(test), size=min(questions, len(test)), replace=False)]
    index.encoder.encode(["warm-up"])  # load the encoder now, so the timings below are per query

    lm = counter = None
    label_texts: list[str] = []
    label_names: list[str] = []
    if use_model:
        from kshot.model.transformers_lm import TransformersLM
        from kshot.prompt import HFTokenCounter, PromptTemplate

        started = time.perf_counter()
        lm = TransformersLM()
        console.print(f"loaded {lm.name} in {time.perf_counter() - started:.1f} s")
        counter = HFTokenCounter(lm.tokenizer)
        # Every intent's answer text, scored as a continuation of the prompt.
        answers = {ex.label: ex.output for ex in load_dataset("banking77", "train") if ex.label}
        label_names = sorted(answers)
        label_texts = [" " + answers[name] for name in label_names]

    correct = 0
    for number, question in enumerate(picked, 1):
        truth = question.label or ""
        console.rule(f"[bold]question {number}/{len(picked)}[/bold]: {question.input}")
        console.print(f"true intent: [bold]{truth}[/bold]")
        selections: dict[str, list[Scored]] = {}
        for name in STRATEGIES:
            started = time.perf_counter()
            selections[name] = select(index, question.input, k, selector=name)
            elapsed = (time.perf_counter() - started) * 1000
            _show_selection(console, f"{name} ({elapsed:.1f} ms)", selections[name], truth)
        if lm is None or counter is None:
            continue
        started = time.perf_counter()
        prompt = assemble(
            question.input,
            selections["similarity"],
            template=PromptTemplate(instructions=INSTRUCTIONS),
            max_tokens=512,
            tokenizer=counter,
        )
        assembly_ms = (time.perf_counter() - started) * 1000
        console.print(
            f"[bold]prompt[/bold] (similarity examples, {prompt.token_count} tokens, "
            f"assembled in {assembly_ms:.1f} ms):"
        )
        console.print(prompt.text, markup=False, highlight=False)
        started = time.perf_counter()
        scores = lm.score_labels([prompt], label_texts)[0]
        scoring_s = time.perf_counter() - started
        answer = label_names[int(np.argmax(scores))]
        right = answer == truth
        correct += right
        mark = "[green]right[/green]" if right else "[red]wrong[/red]"
        console.print(
            f"model answer: [bold]{answer}[/bold] ({mark}; scored {len(label_texts)} intents "
            f"in {scoring_s:.2f} s)"
        )
    if lm is not None:
        console.rule()
        console.print(f"{correct}/{len(picked)} answered right with {k} similar examples each")
