"""The quality benchmark's report: the summary table rows and ``results.md``.

Random arms (one per seed) fold into one row per ``k`` with the mean, the sample standard
deviation, the minimum and the maximum over seeds; every other arm is one row (an arm with a
prediction mode is named ``<selector> + <mode>``). A run with training-set sizes has one table
per size N, and the fine-tuned arms' dev curves follow the tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["BASELINE_NAMES", "markdown", "summary", "training_lines"]

#: A summary row, one line of the table (plain JSON values).
Row = dict[str, Any]

BASELINE_NAMES = {
    "full": "fine-tuned (full)",
    "lora": "fine-tuned (LoRA r=8)",
    "prompt-tuning": "prompt tuning",
    "logreg": "logistic regression (embeddings)",
    "knn": "kNN vote (embeddings)",
}


def summary(records: Sequence[Mapping[str, Any]]) -> list[Row]:
    """One row per table line: random seeds folded into mean and standard deviation."""
    rows: list[Row] = []
    randoms: dict[tuple[Any, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "icl" and r["name"] == "random":
            randoms[r.get("train_size"), int(r["k"])].append(r)
    emitted_random: set[tuple[Any, int]] = set()
    for r in records:
        size = (
            {"train_size": r["train_size"], "n_train": r.get("n_train")}
            if "train_size" in r
            else {}
        )
        if r["kind"] == "icl" and r["name"] == "random":
            group_key = (r.get("train_size"), int(r["k"]))
            if group_key in emitted_random:
                continue
            emitted_random.add(group_key)
            group = randoms[group_key]
            row = {
                "arm": f"random ({len(group)} seeds)",
                "kind": "icl",
                "strategy": "random",
                "k": group_key[1],
                "seeds": [g["seed"] for g in group],
                **size,
            }
            for metric in (
                "accuracy",
                "macro_f1",
                "prompt_tokens_per_query",
                "seconds_per_query",
            ):
                values = np.asarray([g[metric] for g in group], dtype=np.float64)
                row[metric] = float(values.mean())
                row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                row[f"{metric}_min"] = float(values.min())
                row[f"{metric}_max"] = float(values.max())
            row["train_seconds"] = None
            rows.append(row)
            continue
        name = r["name"]
        arm_name = BASELINE_NAMES.get(name, name) if r["kind"] != "icl" else name
        strategy = name
        if r.get("mode") is not None:
            # Its own line in the plot; the name says when the arm trains a classifier.
            strategy = f"{name}+{r['mode']}"
            arm_name = f"{name} + {r['mode']}"
            if r.get("uses_training"):
                arm_name += " (trains a classifier)"
        rows.append(
            {
                "arm": arm_name,
                "kind": r["kind"],
                "strategy": strategy,
                "mode": r.get("mode"),
                "k": r["k"],
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
                "prompt_tokens_per_query": r.get("prompt_tokens_per_query"),
                "seconds_per_query": r["seconds_per_query"],
                "train_seconds": r.get("train_seconds"),
                "train_steps": r.get("train_steps"),
                "labels_scored_per_query": r.get("labels_scored_per_query"),
                "prior_weight": r.get("prior_weight"),
                **size,
                **{key: r[key] for key in _TRAINING_FIELDS if key in r},
            }
        )
    return rows


#: The early-stopping fields of a fine-tuned arm's record carried into its summary row.
_TRAINING_FIELDS = ("best_epoch", "epochs_trained", "converged", "stopped", "dev_rows")


def _fmt(value: float | None, digits: int = 3, std: float | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if std is not None:
        text += f" ± {std:.{digits}f}"
    return text


def markdown(result: Mapping[str, Any]) -> str:
    """The results table of ``results.md``, from the content of ``results.json``."""
    c = result["config"]
    data = result["data"]
    model = result["model"]
    lines = [
        f"# Quality benchmark: {data['name']}",
        "",
        f"Model `{model['name']}`, encoder `{result['encoder']['name']}`, "
        f"{data['test_rows']} test queries, {data['train_rows']} training rows, "
        f"{data['labels']} labels. Prediction: {c['predict']}"
        f"{' (calibrated, in the arms without a mode)' if c['calibrate'] else ''}. "
        f"kshot {result['kshot_version']}, {result['updated']}"
        f"{'' if result['finished'] else ' (run in progress: partial results)'}.",
        "",
    ]
    sizes = data.get("train_sizes")
    if sizes:
        for size in sizes:
            lines += [
                f"## N = {size['size']}: {size['rows']} labelled training rows",
                "",
                f"The in-context pool and the embedding baselines hold all {size['rows']} rows; "
                f"the fine-tuned arms train on {size['fine_tune_train_rows']} and stop on "
                f"{size['fine_tune_dev_rows']} dev rows taken from them.",
                "",
                *table_lines([r for r in result["summary"] if r.get("train_size") == size["size"]]),
                "",
            ]
    else:
        lines += [*table_lines(result["summary"]), ""]
    lines += [
        "Random: mean ± sample standard deviation over seeds. Fine-tuned rows use the zero-shot "
        "prompt and the same label scoring; their training steps and losses are in results.json. "
        "s / query for the embedding baselines includes encoding the query. "
        "Arms named `<selector> + <mode>` use a prediction mode (config `modes`: label gating, "
        "neighbour prior, calibration, a classifier's gate); their options, the prior weight "
        "and its dev accuracies are in results.json.",
        "",
        *training_lines(result),
    ]
    return "\n".join(lines)


def table_lines(summary_rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The markdown table of summary rows (one line per row)."""
    lines = [
        "| arm | k | accuracy | macro-F1 | prompt tokens / query | s / query | training s "
        "| labels scored / query |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary_rows:
        k = row["k"]
        k_text = "-" if row["kind"] in ("finetune",) else str(k)
        if row["kind"] == "embedding":
            k_text = str(k) if row["strategy"] == "knn" else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    row["arm"],
                    k_text,
                    _fmt(row["accuracy"], 3, row.get("accuracy_std")),
                    _fmt(row["macro_f1"], 3, row.get("macro_f1_std")),
                    _fmt(row["prompt_tokens_per_query"], 1),
                    _fmt(row["seconds_per_query"], 3),
                    _fmt(row["train_seconds"], 1),
                    _fmt(row.get("labels_scored_per_query"), 1),
                ]
            )
            + " |"
        )
    return lines


def training_lines(result: Mapping[str, Any]) -> list[str]:
    """How each early-stopped fine-tuned arm trained: its dev curve and why it stopped."""
    arms = [a for a in result["arms"] if a["kind"] == "finetune" and "dev_curve" in a]
    if not arms:
        return []
    lines = [
        "## Fine-tuned arms: dev accuracy per epoch",
        "",
        "Each trains epoch by epoch on the training rows less its dev rows (length-bucketed "
        "batches padded to their longest row) and is tested with the weights of its best dev "
        "epoch.",
        "",
        "| arm | dev rows | dev accuracy by epoch | best epoch | how it stopped |",
        "|---|---:|---|---:|---|",
    ]
    for a in arms:
        curve = ", ".join(f"{e['dev_accuracy']:.3f}" for e in a["dev_curve"])
        lines.append(
            f"| {a['id']} | {a['dev_rows']} | {curve} | {a['best_epoch']} | {a['stopped']} |"
        )
    return [*lines, ""]
