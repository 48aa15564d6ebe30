"""The quality benchmark: label scoring, the leakage guard, a smoke run of the whole pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kshot.bench import quality
from kshot.bench.quality import (
    LeakageError,
    QualityConfig,
    assert_no_leak,
    remove_leaks,
    run_quality,
    stratified_limit,
)
from kshot.bench.quality.runner import Runner
from kshot.corpus import write_jsonl
from kshot.errors import ConfigError
from kshot.index import ExampleIndex, HashingEncoder
from kshot.model import LanguageModel, SoftPromptLM, calibrate, predict_labels
from kshot.selector import build_selector
from kshot.types import Example, Scored

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("sklearn")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_cached() -> Any:
    """The bundled SmolLM2 as a TransformersLM, only when its converted copy is cached (fast)."""
    from kshot.model._bundled import BUNDLED_MODEL_NAME, has_cached_model, model_cache_dir
    from kshot.model.transformers_lm import TransformersLM

    if not has_cached_model(model_cache_dir(BUNDLED_MODEL_NAME)):
        pytest.skip("the converted SmolLM2 is not cached; run any kshot model command once")
    torch.set_num_threads(1)
    return TransformersLM(device="cpu")


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Llama with the SmolLM2 tokenizer, saved as a model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from kshot.prompt import smollm2_tokenizer

    try:
        tokenizer = smollm2_tokenizer()
    except Exception as exc:  # pragma: no cover - the bundled package is missing
        pytest.skip(f"the SmolLM2 tokenizer is not available: {exc}")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _rows(prefix: str, texts: list[tuple[str, str]]) -> list[Example]:
    return [
        Example(input=text, output=label.replace("_", " "), label=label, id=f"{prefix}{i:02d}")
        for i, (text, label) in enumerate(texts)
    ]


TRAIN = _rows(
    "tr",
    [
        ("How do I reset my card PIN?", "change_pin"),
        ("I forgot the PIN of my debit card", "change_pin"),
        ("Change my PIN please", "change_pin"),
        ("My card has not arrived yet", "card_arrival"),
        ("When will the new card be delivered?", "card_arrival"),
        ("Still waiting for my card to come", "card_arrival"),
        ("Why was I charged a fee for the transfer?", "transfer_fee"),
        ("How much does an international transfer cost?", "transfer_fee"),
        ("Is there a charge for sending money?", "transfer_fee"),
        ("Can I top up my account with cash?", "top_up"),
        ("My top up failed, what happened?", "top_up"),
        ("How do I add money to my account?", "top_up"),
    ],
)
TEST = _rows(
    "te",
    [
        ("I need a new PIN for my card", "change_pin"),
        ("Where is my card? It has been a week", "card_arrival"),
        ("What is the fee for a bank transfer?", "transfer_fee"),
        ("Top up did not work", "top_up"),
    ],
)


# --- label scoring --------------------------------------------------------------------------------


def test_forced_answer_scores_its_label_first(smollm2_cached: Any) -> None:
    labels = ["card arrival", "exchange rate", "apple", "top up by cash"]
    for target in labels:
        prompt = (
            "Repeat the word after 'Say' exactly.\n\n"
            "Say: banana\nAnswer: banana\n\n"
            "Say: lost card\nAnswer: lost card\n\n"
            f"Say: {target}\nAnswer: {target}\n\n"
            f"Say: {target}\nAnswer:"
        )
        picks = predict_labels(smollm2_cached, [prompt], labels)
        assert picks == [labels.index(target)], target
    # The label-scoring path agrees with one full forward pass per label.
    prompt = "Say: exchange rate\nAnswer: exchange rate\n\nSay: exchange rate\nAnswer:"
    fast = smollm2_cached.score_labels([prompt], [" " + t for t in labels])
    slow = smollm2_cached.score_labels_naive([prompt], [" " + t for t in labels])
    np.testing.assert_allclose(fast, slow, atol=1e-3)


class _FakeLM:
    """A language model with fixed label scores and only the protocol's methods.

    ``score_labels`` takes no ``calibrate_with``: label prediction must calibrate through the
    :class:`~kshot.model.LanguageModel` protocol alone.
    """

    def __init__(
        self,
        scores: list[list[float]],
        generated: list[str] | None = None,
        content_free: list[list[float]] | None = None,
    ) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.content_free = None if content_free is None else np.asarray(content_free)
        self.generated = generated or []
        self.seen: list[str] = []
        self.new_tokens: list[int] = []

    @property
    def name(self) -> str:
        return "fake"

    def score_labels(self, prompts: list[Any], labels: list[str]) -> Any:
        self.seen = labels
        if self.content_free is not None and all(p == "N/A" for p in prompts):
            return self.content_free[: len(prompts)]
        return self.scores[: len(prompts)]

    def generate(
        self, prompts: list[Any], *, max_new_tokens: int = 32, stop: Any = None
    ) -> list[str]:
        self.new_tokens.append(max_new_tokens)
        return self.generated[: len(prompts)]


def _words(text: str) -> int:
    return len(text.split())


def test_prediction_rules() -> None:
    # Sum of log-probs picks the short label; the per-token mean picks the long one.
    lm = _FakeLM([[-3.0, -4.0]])
    assert isinstance(lm, LanguageModel)
    labels = ["yes", "card payment not recognised"]
    assert predict_labels(lm, ["p"], labels) == [0]
    assert lm.seen == [" yes", " card payment not recognised"]
    assert predict_labels(lm, ["p"], labels, score_norm="mean", count_tokens=_words) == [1]
    gen = _FakeLM([[0.0, 0.0]] * 3, generated=[" Card payment not recognised.", "no", "YES"])
    got = predict_labels(gen, ["a", "b", "c"], labels, mode="generate", count_tokens=_words)
    assert got == [1, None, 0]
    assert gen.new_tokens == [4 + 2]  # the longest label's tokens + 2


def test_prediction_calibrates_through_the_protocol() -> None:
    # The raw scores prefer label 0; the content-free prompt prefers it even more, so
    # contextual calibration flips the answer to label 1.
    lm = _FakeLM([[-1.0, -1.5]], content_free=[[-0.1, -3.0]])
    labels = ["yes", "no"]
    assert predict_labels(lm, ["p"], labels) == [0]
    assert predict_labels(lm, ["p"], labels, calibrate_with=["N/A"]) == [1]
    want = calibrate([[-1.0, -1.5]], [[-0.1, -3.0]])
    assert int(np.argmax(want)) == 1


def test_prediction_rejects_what_it_cannot_do() -> None:
    lm = _FakeLM([[-1.0, -2.0]])
    with pytest.raises(ConfigError, match="count_tokens"):
        predict_labels(lm, ["p"], ["a", "b"], score_norm="mean")
    with pytest.raises(ConfigError, match="predict mode"):
        predict_labels(lm, ["p"], ["a", "b"], mode="vote")
    with pytest.raises(ConfigError, match="score_norm"):
        predict_labels(lm, ["p"], ["a", "b"], score_norm="max")


def test_soft_prompt_wrapper_scores_like_a_full_pass(tiny_lm_dir: Path) -> None:
    # The prompt-tuning baseline scores labels through a wrapper that prepends the soft prompt;
    # its shared-cache scores must equal one full pass per label with the soft prompt in front.
    from kshot.model.transformers_lm import TransformersLM

    lm = TransformersLM(str(tiny_lm_dir), device="cpu")
    base = lm.model
    torch.manual_seed(1)
    soft = torch.randn(4, base.config.hidden_size) * 0.5
    lm.model = SoftPromptLM(base, soft)
    prompts = ["Input: my card is lost\nLabel:", "Input: fee?\nLabel:"]
    labels = [" card arrival", " transfer fee charged", " top up"]
    got = lm.score_labels(prompts, labels)
    want = np.zeros_like(got)
    with torch.inference_mode():
        for i, prompt in enumerate(prompts):
            ids = lm.tokenizer(prompt)["input_ids"]
            for j, label in enumerate(labels):
                full = lm.tokenizer(prompt + label)["input_ids"]
                embeds = torch.cat([soft, base.get_input_embeddings()(torch.tensor(full))])[None]
                logp = torch.log_softmax(base(inputs_embeds=embeds).logits[0], -1)
                n = len(soft) + len(ids)
                want[i, j] = sum(
                    float(logp[n - 1 + t, tok]) for t, tok in enumerate(full[len(ids) :])
                )
    np.testing.assert_allclose(got, want, atol=1e-4)


# --- leakage guard --------------------------------------------------------------------------------


def test_remove_leaks_drops_test_rows_by_id_and_text() -> None:
    same_id = Example(input="different words", output="x", label="x", id="te00")
    same_text = Example(input="  i need a NEW pin for my card ", output="x", label="x", id="zz")
    kept, dropped = remove_leaks([*TRAIN, same_id, same_text], TEST)
    assert kept == TRAIN
    assert dropped == ["te00", "zz"]


def test_assert_no_leak() -> None:
    query = TEST[0]
    assert_no_leak(query, [Scored(TRAIN[0], 1.0), TRAIN[1]])
    with pytest.raises(LeakageError):
        assert_no_leak(query, [Scored(TRAIN[0], 1.0), Scored(query, 0.5)])
    with pytest.raises(LeakageError):
        assert_no_leak(query, [Example(input=query.input.upper(), id="other")])


@pytest.mark.parametrize("strategy", ["random", "jaccard", "bm25", "similarity", "mmr", "balanced"])
def test_selectors_never_offer_the_query_itself(strategy: str) -> None:
    # The index holds the test rows too (a corpus that was not split): every selection must pass
    # the guard, because selectors drop examples whose input equals the query.
    index = ExampleIndex.build([*TRAIN, *TEST], HashingEncoder(64))
    selector = build_selector(index, strategy)
    picks = selector.select_batch([q.input for q in TEST], 8)
    for query, chosen in zip(TEST, picks, strict=True):
        assert len(chosen) == 8
        assert_no_leak(query, chosen)


def test_stratified_limit_is_seeded_and_covers_labels() -> None:
    rows = [
        Example(input=f"text {i}", output=lab, label=lab, id=str(i))
        for i, lab in enumerate(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    ]
    first = stratified_limit(rows, 10, seed=3)
    assert first == stratified_limit(rows, 10, seed=3)
    assert first != stratified_limit(rows, 10, seed=4)
    counts = {lab: sum(r.label == lab for r in first) for lab in "abc"}
    assert counts == {"a": 5, "b": 3, "c": 2}
    assert [int(r.id) for r in first] == sorted(int(r.id) for r in first)


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_file and test_file"):
        QualityConfig(train_file="a.jsonl")
    with pytest.raises(ValueError, match="unknown baseline"):
        QualityConfig(baselines=("svm",))
    with pytest.raises(ValueError, match="k must be at least 1"):
        QualityConfig(ks=(0, 1))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"#": "comment", "dataset": "movie-sentiment", "ks": [1, 4]}))
    config = QualityConfig.from_json(path, limit_test=50, epochs=None)
    assert config.ks == (1, 4) and config.limit_test == 50 and config.dataset == "movie-sentiment"
    assert config.train_steps("lora", 1000) == config.lora_steps
    with pytest.raises(ConfigError, match="not a fine-tuned LM baseline"):
        config.train_steps("logreg", 1000)
    with pytest.raises(ConfigError, match="not a fine-tuned LM baseline"):
        config.learning_rate("knn")
    assert QualityConfig(epochs=2, train_batch_size=10).train_steps("full", 95) == 19
    assert QualityConfig(epochs=2, max_steps=3).train_steps("prompt-tuning", 95) == 3


# --- smoke run of the whole pipeline --------------------------------------------------------------

ARM_FIELDS = {
    "id",
    "kind",
    "name",
    "k",
    "seed",
    "n_queries",
    "accuracy",
    "macro_f1",
    "prompt_tokens_per_query",
    "seconds_per_query",
    "train_seconds",
    "key",
}


def test_smoke_run(tmp_path: Path, tiny_lm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_file, test_file = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    leaked = Example(input="copied row", output="top up", label="top_up", id="te03")
    write_jsonl([*TRAIN, leaked], train_file)
    write_jsonl(TEST, test_file)
    out = tmp_path / "results"
    config = QualityConfig(
        dataset=None,
        train_file=str(train_file),
        test_file=str(test_file),
        out_dir=str(out),
        model=str(tiny_lm_dir),
        encoder="hashing:64",
        device="cpu",
        ks=(1, 2),
        strategies=("random", "similarity"),
        random_seeds=(0, 1),
        max_steps=2,
        train_batch_size=4,
        eval_batch_size=3,
        weights_dir=str(tmp_path / "weights"),
        progress=False,
    )
    assert run_quality(config) == out

    result = json.loads((out / "results.json").read_text())
    assert result["schema_version"] == quality.SCHEMA_VERSION
    assert result["finished"] is True
    assert result["config"]["ks"] == [1, 2]
    assert result["data"]["train_rows"] == len(TRAIN)
    assert result["data"]["test_rows"] == len(TEST)
    assert result["data"]["leakage_rows_removed"] == 1
    assert set(result["environment"]) == {"config", "versions", "machine", "device"}
    assert result["environment"]["device"] == "cpu"
    assert result["environment"]["versions"]["torch"]
    assert result["seeds"]["random_seeds"] == [0, 1]
    ids = [a["id"] for a in result["arms"]]
    assert ids == result["arms_planned"]
    assert set(ids) == {
        "zero-shot",
        "logreg",
        "knn",
        "random-s0-k1",
        "random-s1-k1",
        "similarity-k1",
        "random-s0-k2",
        "random-s1-k2",
        "similarity-k2",
        "ft-full",
        "ft-lora",
        "ft-prompt-tuning",
    }
    for arm in result["arms"]:
        assert set(arm) >= ARM_FIELDS, arm["id"]
        assert 0.0 <= arm["accuracy"] <= 1.0
        assert 0.0 <= arm["macro_f1"] <= 1.0
        assert arm["n_queries"] == len(TEST)
        assert arm["seconds_per_query"] >= 0.0
        if arm["kind"] == "finetune":
            assert arm["train_steps"] == 2 and arm["train_seconds"] > 0
            assert arm["weights_cached"] is False
            assert arm["trainable_parameters"] > 0
        if arm["kind"] == "icl":
            assert arm["examples_per_query"] == arm["k"]
            assert arm["prompt_tokens_per_query"] > result["arms"][0]["prompt_tokens_per_query"]
    lora = next(a for a in result["arms"] if a["id"] == "ft-lora")
    full = next(a for a in result["arms"] if a["id"] == "ft-full")
    assert lora["trainable_parameters"] < full["trainable_parameters"]
    summary = {row["arm"]: row for row in result["summary"]}
    assert summary["random (2 seeds)"]["accuracy_std"] >= 0.0
    table = (out / "results.md").read_text()
    assert (
        "| arm | k | accuracy | macro-F1 | prompt tokens / query | s / query | training s |"
        in table
    )
    assert "random (2 seeds)" in table and "fine-tuned (LoRA r=8)" in table
    assert (out / "accuracy_vs_k.png").read_bytes()[:4] == b"\x89PNG"
    arm_file = json.loads((out / "arms" / "similarity-k1.json").read_text())
    assert len(arm_file["predictions"]) == len(TEST)

    # A rerun resumes: no arm runs again.
    def refuse(self: Any, arm: Any) -> dict[str, Any]:
        raise AssertionError(f"arm {arm.id} ran again")

    monkeypatch.setattr(Runner, "run_arm", refuse)
    run_quality(config)
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["finished"] is True
    assert resumed["model"] == result["model"] | {"load_seconds": resumed["model"]["load_seconds"]}

    # A deleted arm runs again, with its trained weights from the cache.
    monkeypatch.undo()
    (out / "arms" / "ft-lora.json").unlink()
    run_quality(config)
    again = json.loads((out / "arms" / "ft-lora.json").read_text())
    assert again["weights_cached"] is True
    assert again["train_seconds"] == lora["train_seconds"]
    assert again["accuracy"] == lora["accuracy"]

    # An arm that another run sharing the folder finishes meanwhile is kept, not run twice.
    arms_dir = out / "arms"
    saved = {
        name: (arms_dir / f"{name}.json").read_text() for name in ("random-s0-k2", "similarity-k2")
    }
    for name in saved:
        (arms_dir / f"{name}.json").unlink()
    ran: list[str] = []
    run_arm = Runner.run_arm

    def other_run_finishes_similarity(self: Any, arm: Any) -> dict[str, Any]:
        ran.append(arm.id)
        (arms_dir / "similarity-k2.json").write_text(saved["similarity-k2"])
        return run_arm(self, arm)

    monkeypatch.setattr(Runner, "run_arm", other_run_finishes_similarity)
    run_quality(config)
    assert ran == ["random-s0-k2"]
    result = json.loads((out / "results.json").read_text())
    assert result["finished"] is True and len(result["arms"]) == len(ids)

    # An arm claimed by a live run is left to it; a claim whose process is gone is taken over.
    for name in saved:
        (arms_dir / f"{name}.json").unlink()
    (arms_dir / "random-s0-k2.running").write_text(f"{os.getppid()}\n")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (arms_dir / "similarity-k2.running").write_text(f"{gone.pid}\n")
    ran.clear()

    def record_and_run(self: Any, arm: Any) -> dict[str, Any]:
        ran.append(arm.id)
        return run_arm(self, arm)

    monkeypatch.setattr(Runner, "run_arm", record_and_run)
    run_quality(config)
    assert ran == ["similarity-k2"]
    assert not (arms_dir / "similarity-k2.running").exists()
    assert (arms_dir / "random-s0-k2.running").exists()
    assert json.loads((out / "results.json").read_text())["finished"] is False


# --- module boundaries ----------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["movie-sentiment", "banking77"])
def test_committed_arm_files_still_resume(dataset: str) -> None:
    # The arm keys of the committed results, recomputed from their recorded config and data
    # fingerprints, match the keys in their arm files: the runner resumes them, not reruns.
    from kshot.bench.quality.arms import arm_key, plan

    folder = Path(__file__).parents[2] / "benchmarks" / "results" / "quality" / dataset
    result = json.loads((folder / "results.json").read_text())
    config = QualityConfig.from_dict(result["config"])
    data = result["data"]
    arms = plan(config)
    assert [a.id for a in arms] == result["arms_planned"]
    checked = 0
    for arm in arms:
        path = folder / "arms" / f"{arm.id}.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            assert arm_key(config, arm, data["fingerprint"], data["train_rows"]) == stored["key"]
            checked += 1
    assert checked == len(arms)


def test_quality_command_line_options(tmp_path: Path) -> None:
    from kshot.bench.quality import config_from_options

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"dataset": "movie-sentiment", "ks": [1, 4], "limit_test": 20}))
    config = config_from_options(path, {"ks": "2,8", "calibrated_arms": "similarity"})
    assert config.ks == (2, 8) and config.limit_test == 20 and config.calibrate is False
    assert config.calibrated_arms == ("similarity",)
