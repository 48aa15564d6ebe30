"""The quality benchmark's report: the summary table rows and ``results.md``.

Random arms (one per seed) fold into one row per ``k`` with the mean, the sample standard
deviation, the minimum and the maximum over seeds; every other arm is one row.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["BASELINE_NAMES", "markdown", "summary"]

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
    randoms: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "icl" and r["name"] == "random":
            randoms[int(r["k"])].append(r)
    emitted_random: set[int] = set()
    for r in records:
        if r["kind"] == "icl" and r["name"] == "random":
            k = int(r["k"])
            if k in emitted_random:
                continue
            emitted_random.add(k)
            group = randoms[k]
            row = {
                "arm": f"random ({len(group)} seeds)",
                "kind": "icl",
                "strategy": "random",
                "k": k,
                "seeds": [g["seed"] for g in group],
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
        rows.append(
            {
                "arm": BASELINE_NAMES.get(name, name) if r["kind"] != "icl" else name,
                "kind": r["kind"],
                "strategy": name,
                "k": r["k"],
                "accuracy": r["accuracy"],
                "macro_f1": r["macro_f1"],
                "prompt_tokens_per_query": r.get("prompt_tokens_per_query"),
                "seconds_per_query": r["seconds_per_query"],
                "train_seconds": r.get("train_seconds"),
                "train_steps": r.get("train_steps"),
            }
        )
    return rows


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
        f"{' (calibrated)' if c['calibrate'] else ''}. "
        f"kshot {result['kshot_version']}, {result['updated']}"
        f"{'' if result['finished'] else ' (run in progress: partial results)'}.",
        "",
        "| arm | k | accuracy | macro-F1 | prompt tokens / query | s / query | training s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["summary"]:
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
                ]
            )
            + " |"
        )
    lines += [
        "",
        "Random: mean ± sample standard deviation over seeds. Fine-tuned rows use the zero-shot "
        "prompt and the same label scoring; their training steps and losses are in results.json. "
        "s / query for the embedding baselines includes encoding the query.",
        "",
    ]
    return "\n".join(lines)
