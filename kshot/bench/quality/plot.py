"""The quality benchmark's plots: accuracy against k, and against the training-set size N.

Against k, the fine-tuned baselines are horizontal lines; against N (a run with
``train_sizes``), every arm is a line.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["curve_points", "plot_accuracy_vs_k", "plot_accuracy_vs_n"]

#: Markers cycled over the arms of the accuracy-vs-N plot, so arms that tie stay visible.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "*", "h", "p")


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


def _curve_label(row: Mapping[str, Any]) -> str:
    if row["kind"] == "icl":
        return f"{row['arm']} k={row['k']}"
    if row["kind"] == "embedding" and row["strategy"] == "knn":
        return f"{row['arm']} k={row['k']}"
    return str(row["arm"])


def curve_points(
    summary: Sequence[Mapping[str, Any]], spread: float = 0.04
) -> dict[str, list[tuple[float, float]]]:
    """The accuracy-vs-N points of each arm, by legend label, each arm's N nudged apart.

    Each arm's N is multiplied by its own factor around 1 (over ``±spread`` on a log axis),
    so arms with the same accuracy at the same N stay side by side instead of hiding each other.
    """
    curves: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in summary:
        if r.get("n_train") is not None:
            curves[_curve_label(r)].append((int(r["n_train"]), float(r["accuracy"])))
    count = len(curves)
    points: dict[str, list[tuple[float, float]]] = {}
    for i, (label, values) in enumerate(curves.items()):
        factor = 1.0 + spread * ((i - (count - 1) / 2) / max(1, count - 1)) * 2
        points[label] = [(n * factor, acc) for n, acc in sorted(values)]
    return points


def plot_accuracy_vs_n(summary: Sequence[Mapping[str, Any]], path: Path, *, title: str) -> None:
    """Accuracy against the training-set size N, a line per arm (PNG; needs matplotlib).

    Fine-tuned arms are dashed, the embedding baselines dotted, the in-context arms solid; each
    arm has its own marker and a small offset along N.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = {_curve_label(r): r["kind"] for r in summary}
    styles = {"finetune": "--", "embedding": ":"}
    fig, ax = plt.subplots(figsize=(10.5, 5.2))
    sizes: set[int] = set()
    for i, (label, points) in enumerate(curve_points(summary).items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            linestyle=styles.get(kinds[label], "-"),
            marker=_MARKERS[i % len(_MARKERS)],
            markersize=5,
            linewidth=1.2,
            label=label,
        )
    for r in summary:
        if r.get("n_train") is not None:
            sizes.add(int(r["n_train"]))
    ax.set_xscale("log")
    ax.set_xticks(sorted(sizes), [str(n) for n in sorted(sizes)])
    ax.minorticks_off()
    ax.set_xlabel("N (labelled training rows)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: accuracy vs training-set size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=2)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
