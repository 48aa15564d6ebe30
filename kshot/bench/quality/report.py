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

__all__ = [
    "BASELINE_NAMES",
    "markdown",
    "recommendation",
    "summary",
    "training_lines",
    "wilson_interval",
]

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
        if r.get("calibrated"):
            # A calibrated twin (config calibrated_arms): its own line beside the raw arm.
            strategy = f"{strategy}+cal"
            arm_name = f"{arm_name} (calibrated)"
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
                "uses_training": r.get("uses_training"),
                "invalid_predictions": r.get("invalid_predictions"),
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
        f"# Quality benchmark: {data.get('title') or data['name']}",
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


# -- the recommendation ----------------------------------------------------------------------------


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of an accuracy measured on ``n`` queries."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _trains(row: Mapping[str, Any]) -> bool:
    """Whether an arm learns from the training split (rather than only reading examples)."""
    return row["kind"] in ("finetune", "embedding") or bool(row.get("uses_training"))


def _label(row: Mapping[str, Any]) -> str:
    k = row["kind"] in ("icl",) or (row["kind"] == "embedding" and row["strategy"] == "knn")
    return f"{row['arm']}" + (f" at k={row['k']}" if k else "")


def _cost(row: Mapping[str, Any]) -> str:
    tokens = row.get("prompt_tokens_per_query")
    parts = [f"{tokens:.0f} prompt tokens" if tokens is not None else "no prompt"]
    parts.append(f"{row['seconds_per_query']:.3f} s per query")
    train = row.get("train_seconds")
    if _trains(row):
        steps = row.get("train_steps")
        parts.append(
            f"{train or 0.0:.1f} s of training" + (f" ({steps} steps)" if steps is not None else "")
        )
    else:
        parts.append("no training")
    return ", ".join(parts)


def _best(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most accurate row; a tie goes to the cheaper one per query."""
    scored = [r for r in rows if r["accuracy"] is not None and not math.isnan(r["accuracy"])]
    if not scored:
        return None
    return min(scored, key=lambda r: (-r["accuracy"], r["seconds_per_query"]))


def _machine(result: Mapping[str, Any]) -> str:
    """Where the run's seconds were measured: the model's device or endpoint, and the CPU."""
    machine = result["environment"].get("machine", {})
    cpu = f"{machine.get('cpu_model') or 'CPU'}, {machine.get('cpu_count', '?')} cores"
    model = result["model"]
    if model.get("endpoint"):
        return f"answers from the endpoint {model['endpoint']}; this machine {cpu}"
    device = model.get("device") or result["environment"].get("device")
    return cpu if device in (None, "auto", "cpu") else f"{device}; {cpu}"


def recommendation(result: Mapping[str, Any]) -> str:
    """A plain recommendation for the data of ``result`` (the content of ``results.json``).

    Which arm wins, by how much (in points and in test queries) over the best arm of the other
    side (in-context without training against arms that train), what each costs, and the
    caveats: the size of one query, 95% Wilson intervals and whether they separate the two, the
    spread over random seeds, unparsable answers, and runs still in progress. With a
    training-set-size curve, one recommendation per N: the answer can change with N.
    """
    name = result["data"].get("title") or result["data"]["name"]
    sizes = [s["size"] for s in result["data"].get("train_sizes") or []]
    if not sizes:
        return _recommend(result, list(result["summary"]), name)
    return "".join(
        _recommend(
            result,
            [r for r in result["summary"] if r.get("train_size") == size],
            f"{name}, N = {size}",
        )
        for size in sizes
    )


def _recommend(result: Mapping[str, Any], rows: list[Mapping[str, Any]], name: str) -> str:
    n = int(result["data"]["test_rows"])
    lines = ["", f"## Recommendation for {name}", ""]
    best = _best(rows)
    if best is None:
        return "\n".join([*lines, "No arm has finished yet.", ""])
    free = _best([r for r in rows if not _trains(r)])
    trained = _best([r for r in rows if _trains(r)])
    other = trained if best is free else free
    side = "trains on the training split" if _trains(best) else "no training"
    lines.append(
        f"**Use {_label(best)}** ({side}): accuracy {best['accuracy']:.3f}, macro-F1 "
        f"{best['macro_f1']:.3f} on {n} test queries; it costs {_cost(best)}."
    )
    caveats = [f"{n} test queries: one query is {100 / n:.2g} points of accuracy."]
    if other is not None:
        gap = best["accuracy"] - other["accuracy"]
        kind = "trained" if _trains(other) else "training-free"
        lines.append(
            f"The best {kind} arm, {_label(other)}, reaches {other['accuracy']:.3f}: "
            f"{100 * gap:.1f} points (about {round(gap * n)} queries) lower; it costs "
            f"{_cost(other)}."
        )
        low_b, high_b = wilson_interval(best["accuracy"], n)
        low_o, high_o = wilson_interval(other["accuracy"], n)
        intervals = (
            f"95% intervals (Wilson): {low_b:.3f}-{high_b:.3f} against {low_o:.3f}-{high_o:.3f}"
        )
        if low_b <= high_o:
            cheaper = min((best, other), key=lambda r: r["seconds_per_query"])
            caveats.append(
                f"{intervals}: they overlap, so these queries do not clearly separate the two; "
                f"{_label(cheaper)} is the cheaper per query."
            )
        else:
            caveats.append(f"{intervals}: they do not overlap.")
    for row in (best, other):
        if row is not None and row.get("accuracy_std") is not None:
            caveats.append(
                f"{_label(row)} is a mean over seeds: ± {row['accuracy_std']:.3f} (sd), "
                f"{row['accuracy_min']:.3f}-{row['accuracy_max']:.3f}."
            )
        if row is not None and row.get("invalid_predictions"):
            caveats.append(
                f"{_label(row)}: {row['invalid_predictions']} of {n} answers matched no label "
                "and count as wrong."
            )
    tuned = [r for r in rows if r["kind"] == "finetune"]
    if not tuned:
        caveats.append("No fine-tuned language model ran here; the comparison leaves it out.")
    else:
        steps = ", ".join(f"{r['arm']} {r.get('train_steps')}" for r in tuned)
        caveats.append(
            f"Training steps of the fine-tuned arms: {steps}; a larger budget may move them "
            "(their losses are in results.json)."
        )
    caveats.append(
        f"Seconds are this run's wall clock ({_machine(result)}); they move with the load."
    )
    if not result["finished"]:
        caveats.append("The run is still in progress: arms not finished are missing.")
    lines += ["", "Caveats:", *(f"- {c}" for c in caveats), ""]
    return "\n".join(lines)
