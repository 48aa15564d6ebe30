"""The quality benchmark's plot: accuracy against k, fine-tuned baselines as horizontal lines."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_accuracy_vs_k"]


def plot_accuracy_vs_k(summary: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> None:
    """Draw the summary rows into ``path`` (PNG, written aside then renamed; needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({int(r["k"]) for r in summary if r["kind"] == "icl"})
    positions = {k: i + 1 for i, k in enumerate(ks)}
    fig, ax = plt.subplots(figsize=(9.5, 4.8))
    zero = [r for r in summary if r["kind"] == "zero-shot"]
    strategies: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in summary:
        if r["kind"] == "icl":
            strategies[str(r["strategy"])].append(r)
    for name, rows in strategies.items():
        rows = sorted(rows, key=lambda r: r["k"])
        xs = [positions[int(r["k"])] for r in rows]
        ys = [r["accuracy"] for r in rows]
        if zero:
            xs, ys = [0, *xs], [zero[0]["accuracy"], *ys]
        if name == "random":
            errs = [0.0] * (len(ys) - len(rows)) + [r.get("accuracy_std", 0.0) for r in rows]
            ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label="random (mean ± sd)")
        else:
            ax.plot(xs, ys, marker="o", label=name)
    if zero:
        ax.scatter([0], [zero[0]["accuracy"]], color="black", zorder=5, label="zero-shot")
    styles = ["--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1))]
    colours = ["tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]
    baselines = [r for r in summary if r["kind"] in ("finetune", "embedding")]
    for i, r in enumerate(baselines):
        ax.axhline(
            r["accuracy"],
            linestyle=styles[i % len(styles)],
            color=colours[i % len(colours)],
            linewidth=1.4,
            label=f"{r['arm']} ({r['accuracy']:.2f})",
        )
    ax.set_xticks([0, *positions.values()], ["0", *[str(k) for k in ks]])
    ax.set_xlim(-0.2, len(ks) + 0.2)
    ax.set_xlabel("k (in-context examples)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: accuracy vs k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
