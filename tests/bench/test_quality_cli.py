"""``kshot bench quality`` as a user's tool: their files, their endpoint, logs, cost, verdict."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from kshot.bench.quality import QualityConfig, config_from_options
from kshot.bench.quality.arms import Arm, arm_key, plan
from kshot.bench.quality.data import class_key, data_set_name, label_space, load_splits
from kshot.bench.quality.estimate import estimate
from kshot.bench.quality.icl import InContextEvaluator
from kshot.bench.quality.report import recommendation, summary, wilson_interval
from kshot.cli import app
from kshot.errors import ConfigError, DataError
from kshot.index import ExampleIndex, HashingEncoder
from kshot.prompt import PromptAssembler, PromptTemplate
from kshot.prompt.budget import WhitespaceCounter
from kshot.types import Example

pytest.importorskip("sklearn")

ROOT = Path(__file__).parents[2]

TRAIN = [
    ("How do I reset my card PIN?", "change pin"),
    ("I forgot the PIN of my debit card", "change pin"),
    ("Change my PIN please", "change pin"),
    ("My card has not arrived yet", "card arrival"),
    ("When will the new card be delivered?", "card arrival"),
    ("Still waiting for my card to come", "card arrival"),
    ("Why was I charged a fee for the transfer?", "transfer fee"),
    ("How much does an international transfer cost?", "transfer fee"),
    ("Is there a charge for sending money?", "transfer fee"),
    ("Can I top up my account with cash?", "top up"),
    ("My top up failed, what happened?", "top up"),
    ("How do I add money to my account?", "top up"),
]
TEST = [
    ("I need a new PIN for my card", "change pin"),
    ("Where is my card? It has been a week", "card arrival"),
    ("What is the fee for a bank transfer?", "transfer fee"),
    ("Top up did not work", "top up"),
]


def write_split(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    """Write ``rows`` as columns ``text`` and ``intent`` in the format of ``path``'s suffix."""
    records = [{"text": text, "intent": label} for text, label in rows]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif path.suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    else:
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(
                f, ["text", "intent"], delimiter="\t" if path.suffix == ".tsv" else ","
            )
            writer.writeheader()
            writer.writerows(records)
    return path


def user_files(folder: Path, suffix: str = ".csv") -> tuple[Path, Path]:
    return (
        write_split(folder / f"intents_train{suffix}", TRAIN),
        write_split(folder / f"intents_test{suffix}", TEST),
    )


#: The options of a fast run: the user's columns, no language-model arm, the hashing encoder.
def fast_options(train: Path, test: Path, out: Path) -> list[str]:
    return [
        "bench",
        "quality",
        "--train-file",
        str(train),
        "--test-file",
        str(test),
        "--input-field",
        "text",
        "--label-field",
        "intent",
        "--baselines",
        "logreg,knn",
        "--strategies",
        "",
        "--no-zero-shot",
        "--encoder",
        "hashing:64",
        "--weights-dir",
        str(out.parent / "weights"),
        "--out",
        str(out),
        "--no-progress",
    ]


def kshot(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``kshot`` console entry point in a subprocess (it sets the console to warnings)."""
    return subprocess.run(
        [sys.executable, "-c", "from kshot.cli import main; main()", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- a user's files -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_user_files_are_read_with_the_field_options(tmp_path: Path, suffix: str) -> None:
    train, test = user_files(tmp_path, suffix)
    config = QualityConfig(
        dataset=None,
        train_file=str(train),
        test_file=str(test),
        input_field="text",
        label_field="intent",
    )
    splits = load_splits(config)
    assert [ex.input for ex in splits.train] == [text for text, _ in TRAIN]
    assert [class_key(ex) for ex in splits.test] == [label for _, label in TEST]
    assert all(ex.id for ex in [*splits.train, *splits.test])  # numbered for the leakage guard
    assert splits.name == "intents"


def test_the_data_set_name_leaves_the_split_word_out() -> None:
    assert data_set_name("data/intents_train.csv") == "intents"
    assert data_set_name("data/train-intents.tsv") == "intents"
    assert data_set_name("clinc/train.jsonl") == "clinc"
    assert data_set_name("banking.parquet") == "banking"
    assert data_set_name("trainer.csv") == "trainer"


def test_a_bad_column_names_the_option_to_fix(tmp_path: Path) -> None:
    train, test = user_files(tmp_path)
    base = {"dataset": None, "train_file": str(train), "test_file": str(test)}
    with pytest.raises(DataError, match=r"^--train-file: .*pass --input-field"):
        load_splits(QualityConfig(**base, label_field="intent"))
    with pytest.raises(DataError, match=r"^--train-file: .*row 1 has no label in column 'label'"):
        load_splits(QualityConfig(**base, input_field="text"))
    with pytest.raises(DataError, match=r"^--test-file: .*no such file"):
        missing = base | {"test_file": str(tmp_path / "nope.csv")}
        load_splits(QualityConfig(**missing, input_field="text", label_field="intent"))


@pytest.mark.parametrize(
    "entry",
    [
        ("-c", "from kshot.cli import main; main()", "bench", "quality"),
        ("-m", "benchmarks.quality.run"),
    ],
    ids=["kshot-bench-quality", "benchmarks-quality-run"],
)
def test_bad_files_and_fields_are_one_line_and_exit_2(
    tmp_path: Path, entry: tuple[str, ...]
) -> None:
    train, test = user_files(tmp_path)
    cases = [
        (["--input-field", "question", "--label-field", "intent"], "--input-field"),
        (["--input-field", "text"], "--label-field"),
        (["--label-field", "intent", "--input-field", "text", "--model", "openai:x"], "--base-url"),
    ]
    if entry[0] == "-m":
        cases = cases[:1]  # the script runs the same command: one case shows it reports alike
    for extra, option in cases:
        done = subprocess.run(
            [sys.executable, *entry, "--train-file", str(train), "--test-file", str(test), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert option in lines[0]


def test_a_run_on_user_files_logs_its_arms_its_cost_and_ends_with_a_recommendation(
    tmp_path: Path,
) -> None:
    train, test = user_files(tmp_path)
    out = tmp_path / "out"
    done = kshot(*fast_options(train, test, out))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    err = done.stderr
    # The cost is said before the first arm runs; every arm says its numbers (INFO, though the
    # kshot command sets the console to warnings); the same lines go to the documented run.log.
    assert "plan: 2 arms on 4 test queries, 4 labels, 12 training rows" in err
    assert err.index("plan: 2 arms") < err.index("running arm logreg")
    assert "arm logreg: accuracy" in err and "arm knn: accuracy" in err
    assert "every prompt starts with 'Classify each input.'; say what" in err  # --instruction
    log = (out / "run.log").read_text()
    assert "plan: 2 arms" in log and "arm knn: accuracy" in log
    assert done.stdout.strip() == f"results in {out / 'results.md'}"
    report = (out / "results.md").read_text()
    assert report.startswith("# Quality benchmark: intents\n")
    assert "| arm | k | accuracy |" in report  # the table stays
    assert "## Recommendation for intents" in report
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["input_field"] == "text"
    assert result["data"]["train_rows"] == len(TRAIN)

    # A rerun (in this process) appends to run.log, resumes both arms, takes the given title.
    again = CliRunner().invoke(app, [*fast_options(train, test, out), "--name", "My intents"])
    assert again.exit_code == 0, again.output
    log = (out / "run.log").read_text()
    assert log.count("plan: 2 arms") == 2 and "2 already finished, 0 to run" in log
    assert (out / "results.md").read_text().startswith("# Quality benchmark: My intents\n")


def test_the_options_override_the_config_file_and_only_when_given(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dataset": "movie-sentiment", "ks": [1, 4], "limit_test": 20}))
    config = config_from_options(path, {"ks": "2,8", "instructions": "Say the sentiment."})
    assert config.ks == (2, 8) and config.limit_test == 20
    assert config.resolved_instructions == "Say the sentiment."
    endpoint = config_from_options(None, {"model": "openai:m", "base_url": "http://h"})
    assert endpoint.predict == "generate" and endpoint.baselines == ("logreg", "knn")
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        config_from_options(
            None, {"model": "openai:m", "base_url": "http://h", "baselines": "full"}
        )


def test_help_says_the_fine_tuning_baselines_run_by_default() -> None:
    result = CliRunner().invoke(app, ["bench", "quality", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "The default runs all five, so the three slow fine-tuning ones" in text
    for option in ("--input-field", "--label-field", "--output-field", "--instruction"):
        assert option in text
    for option in ("--base-url", "--api-key-env", "--calibrate", "--name", "--config"):
        assert option in text


# --- the cost said before a run -------------------------------------------------------------------


def test_the_estimate_counts_the_planned_work() -> None:
    config = QualityConfig(
        ks=(1, 4),
        strategies=("similarity",),
        baselines=("full", "logreg"),
        max_steps=5,
        calibrated_arms=("similarity",),
    )
    found = estimate(config, queries=10, labels=3, train_rows=100)
    # zero-shot, logreg, similarity-k1, ft-full, similarity-k4, similarity-cal-k1, -cal-k4
    assert found.arms == 7
    assert found.prompt_passes == 10 + 10 + 10 + 10 + 2 * 10 + 2 * 10
    assert found.train_steps == 5
    text = found.describe(config)
    assert "5 fine-tuning steps" in text and "--baselines" in text
    cheaper = estimate(QualityConfig(ks=(1,), strategies=("similarity",), baselines=()), 10, 3, 100)
    assert cheaper.train_steps == 0 and cheaper.seconds < found.seconds


# --- calibration per arm ------------------------------------------------------------------------


class BiasedLM:
    """Scores the label its query names 3 higher, and always the first label 5 higher.

    Raw scores pick the first label for every query; the content-free prompt's scores hold only
    the bias, so contextual calibration takes it away.
    """

    name = "biased"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.calibration_prompts = 0

    def generate(self, prompts: Sequence[Any], **_: Any) -> list[str]:
        raise AssertionError("not used")

    def score_labels(self, prompts: Sequence[Any], labels: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(prompts), len(labels)))
        for i, prompt in enumerate(prompts):
            query = prompt.text.rsplit("Input:", 1)[1].lower()
            if "n/a" in query:
                self.calibration_prompts += 1
            out[i, 0] = 5.0
            for j, label in enumerate(labels):
                if any(word in query for word in label.strip().split()):
                    out[i, j] += 3.0
        return out


def test_calibration_is_a_per_arm_choice_beside_the_raw_arms() -> None:
    train = [
        Example(input=t, output=lab, label=lab, id=f"tr{i}") for i, (t, lab) in enumerate(TRAIN)
    ]
    test = [Example(input=t, output=lab, label=lab, id=f"te{i}") for i, (t, lab) in enumerate(TEST)]
    test = test[1:]  # card arrival (the biased label), transfer fee, top up
    config = QualityConfig(
        ks=(1,),
        strategies=("random", "similarity"),
        calibrated_arms=("zero-shot", "similarity"),
        encoder="hashing:64",
    )
    arms = plan(config)
    ids = [a.id for a in arms]
    assert ids[-2:] == ["zero-shot-cal", "similarity-cal-k1"]
    assert {"zero-shot", "similarity-k1"} <= set(ids)
    # Raw arms keep the keys they had before calibration was per arm; the twins have their own.
    plain = QualityConfig(ks=(1,), strategies=("random", "similarity"), encoder="hashing:64")
    data = {"name": "d", "train": "a", "test": "b"}
    raw = next(a for a in arms if a.id == "similarity-k1")
    assert arm_key(config, raw, data, 12) == arm_key(plain, raw, data, 12)
    twin = next(a for a in arms if a.id == "similarity-cal-k1")
    assert arm_key(config, twin, data, 12) != arm_key(config, raw, data, 12)

    space = label_space(train, test)
    assert space.texts[0] == "card arrival"
    gold = [class_key(ex) for ex in test]
    assembler = PromptAssembler(PromptTemplate(instructions="Classify."), WhitespaceCounter())
    evaluator = InContextEvaluator(config, test, gold, space, assembler, lambda n: None)
    index = ExampleIndex.build(train, HashingEncoder(64))
    lm = BiasedLM(space.texts)
    records = []
    for arm in [a for a in arms if a.name in ("zero-shot", "similarity")]:
        before = lm.calibration_prompts
        records.append(evaluator.run_icl(arm, index, lm))
        assert (lm.calibration_prompts > before) == arm.calibrated, arm.id
    rows = {row["arm"]: row for row in summary(records)}
    assert rows["zero-shot"]["accuracy"] == pytest.approx(1 / 3)  # the bias wins
    assert rows["zero-shot (calibrated)"]["accuracy"] == 1.0
    assert rows["similarity (calibrated)"]["strategy"] == "similarity+cal"
    with pytest.raises(ConfigError, match="cannot calibrate the arms of 'random'"):
        QualityConfig(calibrated_arms=("random",))
    assert QualityConfig(strategies=("random", "bm25"), calibrated_arms="all").calibrated_arms == (
        "zero-shot",
        "bm25",
    )


# --- the recommendation ---------------------------------------------------------------------------


def _result(arms: list[dict[str, Any]], n: int = 200) -> dict[str, Any]:
    base = {"seed": None, "n_queries": n, "train_seconds": None, "prompt_tokens_per_query": None}
    records = [base | a for a in arms]
    return {
        "data": {"name": "tickets", "test_rows": n},
        "summary": summary(records),
        "finished": True,
        "model": {"name": "m", "device": "cpu"},
        "environment": {"device": "cpu", "machine": {"cpu_model": "EPYC", "cpu_count": 2}},
    }


def _arm(
    id: str, kind: str, name: str, k: int, acc: float, spq: float, **more: Any
) -> dict[str, Any]:
    arm = {"id": id, "kind": kind, "name": name, "k": k, "accuracy": acc}
    return arm | {"macro_f1": acc - 0.01, "seconds_per_query": spq} | more


def test_the_recommendation_is_written_from_the_results() -> None:
    result = _result(
        [
            _arm("zero-shot", "zero-shot", "zero-shot", 0, 0.40, 0.5, prompt_tokens_per_query=30.0),
            _arm("logreg", "embedding", "logreg", 0, 0.80, 0.01, train_seconds=2.0),
            _arm(
                *("similarity-k4", "icl", "similarity", 4, 0.90, 1.2),
                prompt_tokens_per_query=120.0,
                invalid_predictions=3,
            ),
        ]
    )
    text = recommendation(result)
    assert "## Recommendation for tickets" in text
    assert "**Use similarity at k=4** (no training): accuracy 0.900" in text
    assert "120 prompt tokens, 1.200 s per query, no training" in text
    assert "(embeddings), reaches 0.800: 10.0 points (about 20 queries) lower" in text
    assert "0.010 s per query, 2.0 s of training" in text
    assert "200 test queries: one query is 0.5 points" in text
    low, high = wilson_interval(0.9, 200)
    assert f"{low:.3f}-{high:.3f}" in text and "they do not overlap" in text
    assert "3 of 200 answers matched no label" in text
    assert "No fine-tuned language model ran here" in text

    close = recommendation(
        _result(
            [
                _arm("logreg", "embedding", "logreg", 0, 0.81, 0.01, train_seconds=2.0),
                _arm(
                    *("similarity-k4", "icl", "similarity", 4, 0.80, 1.2),
                    prompt_tokens_per_query=99.0,
                ),
            ],
            n=100,
        )
    )
    assert "**Use logistic regression (embeddings)** (trains on the training split)" in close
    assert "1.0 points (about 1 queries) lower" in close
    assert "they overlap, so these queries do not clearly separate the two" in close
    assert recommendation(_result([])).endswith("No arm has finished yet.\n")


def test_wilson_interval() -> None:
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(1.0, 10)[1] == 1.0 and wilson_interval(0.0, 10)[0] == 0.0


# --- an OpenAI-compatible endpoint ----------------------------------------------------------------


class StandIn(BaseHTTPRequestHandler):
    """A chat-completions server that answers from the query and records each request."""

    received: ClassVar[list[dict[str, Any]]] = []

    ANSWERS: ClassVar[dict[str, str]] = {
        "PIN": "  Change PIN ",  # case and spaces differ: still the label
        "week": "card arrival\nand more",  # cut at the newline
        "fee": "The answer is transfer fee",  # not a label: unparsable, counted
        "Top up": "transfer fee",  # a label, the wrong one
    }

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StandIn.received.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        query = body["messages"][-1]["content"]
        answer = next((a for key, a in self.ANSWERS.items() if key in query), "?")
        payload = json.dumps(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[str]:
    StandIn.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_in_context_arms_ask_an_openai_compatible_endpoint(tmp_path: Path, stand_in: str) -> None:
    train, test = user_files(tmp_path)
    out = tmp_path / "out"
    options = [
        *("bench", "quality", "--train-file", str(train), "--test-file", str(test)),
        *("--input-field", "text", "--label-field", "intent", "--encoder", "hashing:64"),
        *("--strategies", "similarity", "--ks", "1", "--out", str(out), "--no-progress"),
        *("--weights-dir", str(tmp_path / "weights")),
        *("--model", "openai:my-model", "--base-url", stand_in, "--api-key-env", "MY_KEY"),
        *("--instruction", "Classify each banking request.", "--baselines", ""),
    ]
    result = CliRunner().invoke(app, options, env={"MY_KEY": "sk-test"})
    assert result.exit_code == 0, result.output

    sent = StandIn.received
    assert len(sent) == 2 * len(TEST)  # zero-shot and similarity-k1, one request per query
    assert {s["path"] for s in sent} == {"/v1/chat/completions"}
    assert {s["auth"] for s in sent} == {"Bearer sk-test"}
    first = sent[0]["body"]
    assert first["model"] == "my-model" and first["temperature"] == 0
    system = first["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Classify each banking request. Answer with exactly one")
    assert all(label in system["content"] for label in ("change pin", "top up", "card arrival"))
    with_examples = [s["body"]["messages"] for s in sent if len(s["body"]["messages"]) > 2]
    assert len(with_examples) == len(TEST)
    assert [m["role"] for m in with_examples[0]] == ["system", "user", "assistant", "user"]

    report = json.loads((out / "results.json").read_text())
    arms = {a["id"]: a for a in report["arms"]}
    assert set(arms) == {"zero-shot", "similarity-k1"}
    for arm_id in ("zero-shot", "similarity-k1"):
        assert arms[arm_id]["accuracy"] == 0.5, arm_id
        assert arms[arm_id]["invalid_predictions"] == 1
    assert report["config"]["predict"] == "generate"
    assert report["model"]["name"] == "my-model" and report["model"]["endpoint"] == stand_in
    assert report["prompt"]["format"] == "chat"
    assert "## Recommendation for intents" in (out / "results.md").read_text()


def test_an_unset_api_key_variable_is_a_clear_error(tmp_path: Path) -> None:
    config = QualityConfig(
        model="openai:m",
        base_url="http://127.0.0.1:9",
        api_key_env="KSHOT_TEST_UNSET_KEY",
        predict="generate",
        baselines=(),
    )
    from kshot.bench.quality.endpoint import load_endpoint

    with pytest.raises(ConfigError, match="KSHOT_TEST_UNSET_KEY \\(--api-key-env\\) is not set"):
        load_endpoint(config)


def test_a_plain_arm_needs_no_endpoint() -> None:
    assert Arm("zero-shot", "zero-shot", "zero-shot", 0).calibrated is False
    with pytest.raises(ConfigError, match="base_url is for a model named openai:NAME"):
        QualityConfig(base_url="http://h")


@pytest.mark.slow
def test_the_endpoint_arms_against_kshot_serve_local_model(tmp_path: Path) -> None:
    # A real OpenAI-compatible server: `kshot serve --local-model` (the bundled SmolLM2) in its
    # own process, asked by the benchmark's own command in another.
    sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
    from proxy_processes import kshot_serve

    server = kshot_serve(tmp_path / "server.log", "--local-model")
    try:
        train, test = user_files(tmp_path)
        out = tmp_path / "out"
        options = fast_options(train, test, out)
        options.remove("--no-zero-shot")
        strategies = options.index("--strategies") + 1
        options[strategies] = "similarity"
        options += ["--ks", "2", "--model", "openai:SmolLM2", "--base-url", f"{server.url}/v1"]
        done = kshot(*options)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "results.json").read_text())
    arms = {a["id"]: a for a in result["arms"]}
    assert set(arms) == {"zero-shot", "similarity-k2", "logreg", "knn"}
    for arm_id in ("zero-shot", "similarity-k2"):
        arm = arms[arm_id]
        assert arm["n_queries"] == len(TEST)
        assert 0.0 <= arm["accuracy"] <= 1.0
    # Every answer is a label or counted as unparsable (and wrong).
    stored = json.loads((out / "arms" / "similarity-k2.json").read_text())
    labels = {label for _, label in TRAIN}
    assert all(p is None or p in labels for p in stored["predictions"])
    assert stored["invalid_predictions"] == sum(p is None for p in stored["predictions"])
    assert "arm similarity-k2: accuracy" in done.stderr
    assert "## Recommendation for intents" in (out / "results.md").read_text()
