"""The fine-tuned LM baselines: full fine-tuning, LoRA and prompt tuning, with a weight cache.

Each baseline trains the run's language model on the training split (the zero-shot prompt, loss
on the answer tokens and EOS) with a plain AdamW loop, then predicts like the zero-shot arm.
With ``early_stopping`` it trains epoch by epoch on the training rows less a held-out dev split
(:func:`~kshot.bench.quality.training.split_dev`), evaluates dev accuracy after each epoch,
stops when it no longer improves (:class:`~kshot.bench.quality.training.EarlyStopping`) and
keeps the best epoch's weights; batches are length-bucketed and padded to their own longest row.
Trained weights are cached under ``<weights_dir>/weights/<baseline>-<key>/``
(``weights.safetensors`` and ``meta.json``), keyed by
:func:`~kshot.bench.quality.arms.train_spec`, so a rerun loads them instead of training again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kshot.bench.quality.arms import Arm, ArmRecord, train_spec
from kshot.bench.quality.cache import cache_key, cache_root, write_json
from kshot.bench.quality.config import QualityConfig
from kshot.bench.quality.data import LabelSpace, class_key, fingerprint
from kshot.bench.quality.icl import InContextEvaluator, no_examples
from kshot.bench.quality.training import (
    DevSplit,
    EarlyStopping,
    EpochRecord,
    bucketed_batches,
    dev_size,
    pad_batch,
    split_dev,
)
from kshot.errors import DataError
from kshot.types import Example

if TYPE_CHECKING:
    from kshot.model.transformers_lm import TransformersLM
    from kshot.prompt import PromptAssembler

__all__ = ["FineTuner", "TrainedLM"]

logger = logging.getLogger(__name__)

#: One training row: token ids, and loss targets (answer tokens + EOS; -100 elsewhere).
TrainRow = tuple[list[int], list[int]]


@dataclass(frozen=True)
class TrainedLM:
    """A fine-tuned baseline ready to predict, and how it was trained."""

    lm: TransformersLM
    train_seconds: float
    steps: int
    losses: list[float]
    cached: bool
    trainable_parameters: int
    history: dict[str, Any] = field(default_factory=dict)
    """With early stopping: the dev curve, the best epoch and why training stopped."""


class FineTuner:
    """Trains (or loads from the cache) the LM baselines of one run.

    Args:
        config: the run's settings (budget, learning rates, LoRA and prompt-tuning options).
        train: the training rows.
        assembler: builds the zero-shot prompt the baselines train and predict with.
        load_lm: loads a fresh copy of the run's language model.
        advance: called with the number of training steps done (progress).
    """

    def __init__(
        self,
        config: QualityConfig,
        train: Sequence[Example],
        assembler: PromptAssembler,
        load_lm: Callable[[], TransformersLM],
        advance: Callable[[int], None],
    ) -> None:
        self.config = config
        self.assembler = assembler
        self.load_lm = load_lm
        self.advance = advance
        rows = list(train)
        if config.early_stopping:
            self.split = split_dev(
                rows, dev_size(len(rows), config.dev_fraction, config.dev_max), config.seed
            )
        else:
            self.split = DevSplit(rows, [])
        self.train = self.split.train
        self._fingerprint = fingerprint(self.train)

    def spec(self, baseline: str) -> dict[str, object]:
        """What determines the baseline's weights (its cache key)."""
        spec = train_spec(self.config, baseline, self._fingerprint, len(self.train))
        if self.split.dev:
            spec["dev_rows"] = fingerprint(self.split.dev)
        return spec

    def run(self, arm: Arm, evaluator: InContextEvaluator) -> ArmRecord:
        """Train or load the arm's baseline, evaluate it on the zero-shot prompt; its record."""
        trained = self.trained(arm.name, evaluator.space)
        c = self.config
        record = arm.base_record(len(evaluator.test))
        record.update(evaluator.evaluate(trained.lm, no_examples).as_record())
        record.update(
            train_seconds=trained.train_seconds,
            train_steps=trained.steps,
            train_examples_seen=trained.steps * c.train_batch_size,
            train_epochs=trained.steps * c.train_batch_size / len(self.train),
            train_loss_first=trained.losses[0] if trained.losses else None,
            train_loss_last=trained.losses[-1] if trained.losses else None,
            weights_cached=trained.cached,
            train_spec=self.spec(arm.name),
            trainable_parameters=trained.trainable_parameters,
        )
        if c.early_stopping:
            record.update(
                train_rows=len(self.train),
                dev_rows=len(self.split.dev),
                **trained.history,
            )
        return record

    def planned_steps(self, baseline: str) -> int:
        """Optimiser steps of the baseline: its budget, or every epoch ``max_epochs`` allows."""
        c = self.config
        if c.early_stopping:
            return c.max_epochs * math.ceil(len(self.train) / c.train_batch_size)
        return int(c.train_steps(baseline, len(self.train)))

    def trained(self, baseline: str, space: LabelSpace) -> TrainedLM:
        """Train (or load from the cache) one LM baseline.

        ``space``: the classes, over which early stopping measures dev accuracy.
        """
        import torch

        spec = self.spec(baseline)
        cache = cache_root(self.config.weights_dir) / "weights" / f"{baseline}-{cache_key(spec)}"
        lm = self.load_lm()
        model = lm.model
        meta_path = cache / "meta.json"
        weights_path = cache / "weights.safetensors"
        steps = self.planned_steps(baseline)
        # Seeded before peft wraps the model: LoRA's A matrices (and the prompt encoder) are
        # drawn at wrapping, so an unseeded wrap made every run's initialisation different.
        torch.manual_seed(self.config.seed)
        peft_model = None
        if baseline in ("lora", "prompt-tuning"):
            peft_model = self._peft_wrap(baseline, model, lm.tokenizer)
        trainable = model if peft_model is None else peft_model
        n_trainable = sum(p.numel() for p in trainable.parameters() if p.requires_grad)
        if meta_path.is_file() and weights_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            _load_trained(baseline, model, peft_model, weights_path)
            self.advance(steps)
            logger.info("loaded %s weights from %s", baseline, cache)
            losses, seconds, steps, cached = (
                meta["losses"],
                meta["train_seconds"],
                meta["steps"],
                True,
            )
            history = dict(meta.get("history", {}))
        else:
            history = {}
            if self.config.early_stopping:
                losses, seconds, history = self._train_epochs(
                    lm, trainable, baseline, peft_model, space
                )
                steps = int(history["train_steps_total"])
            else:
                losses, seconds = self._train(trainable, lm.tokenizer, baseline, steps)
            _save_trained(baseline, model, peft_model, weights_path)
            meta = {
                "train_seconds": seconds,
                "steps": steps,
                "losses": losses,
                "spec": spec,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            } | ({"history": history} if history else {})
            write_json(meta_path, meta)
            cached = False
        lm.model = _inference_model(baseline, model, peft_model)
        lm.model.eval()
        return TrainedLM(lm, float(seconds), int(steps), list(losses), cached, n_trainable, history)

    def _peft_wrap(self, baseline: str, model: Any, tokenizer: Any) -> Any:
        import torch
        from peft import LoraConfig, PromptTuningConfig, TaskType, get_peft_model

        c = self.config
        if baseline == "lora":
            return get_peft_model(
                model,
                LoraConfig(
                    task_type=TaskType.CAUSAL_LM,
                    r=c.lora_r,
                    lora_alpha=c.lora_alpha,
                    lora_dropout=c.lora_dropout,
                    target_modules=list(c.lora_targets),
                ),
            )
        peft_model = get_peft_model(
            model,
            PromptTuningConfig(
                task_type=TaskType.CAUSAL_LM, num_virtual_tokens=c.num_virtual_tokens
            ),
        )
        # Initialise the soft prompt from the instructions' token embeddings (repeated to fill):
        # far better than random vectors when training gets few steps.
        ids = tokenizer(c.resolved_instructions, add_special_tokens=False)["input_ids"] or [0]
        ids = (ids * (c.num_virtual_tokens // len(ids) + 1))[: c.num_virtual_tokens]
        with torch.no_grad():
            words = model.get_input_embeddings()(torch.tensor(ids, device=model.device))
            encoder: Any = peft_model.prompt_encoder["default"]
            encoder.embedding.weight.copy_(words)
        return peft_model

    def _train_rows(self, tokenizer: Any) -> list[TrainRow]:
        """Token ids and loss targets (answer tokens + EOS; -100 elsewhere) per training row."""
        c = self.config
        assembler = self.assembler
        eos = tokenizer.eos_token_id
        rows: list[TrainRow] = []
        for ex in self.train:
            prompt = assembler.assemble(ex.input, []).text or ""  # a text template: never None
            answer = " " + (ex.output or class_key(ex))
            prompt_ids = list(tokenizer(prompt)["input_ids"])
            full = list(tokenizer(prompt + answer)["input_ids"])
            if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
                answer_ids = full[len(prompt_ids) :]
            else:
                answer_ids = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
            if eos is not None:
                answer_ids = [*answer_ids, int(eos)]
            room = max(1, c.max_train_tokens - len(answer_ids))
            prompt_ids = prompt_ids[-room:]
            rows.append(([*prompt_ids, *answer_ids], [-100] * len(prompt_ids) + answer_ids))
        return rows

    def _train(
        self, model: Any, tokenizer: Any, baseline: str, steps: int
    ) -> tuple[list[float], float]:
        """A plain AdamW loop on the answer tokens; returns the losses and the seconds taken."""
        c = self.config
        rows = self._train_rows(tokenizer)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer, scheduler = _optimizer(params, c.learning_rate(baseline), steps)
        rng = np.random.default_rng(c.seed)
        order: list[int] = []
        pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        device = next(model.parameters()).device
        losses: list[float] = []
        model.train()
        started = time.perf_counter()
        for _ in range(steps):
            if len(order) < c.train_batch_size:
                order.extend(int(i) for i in rng.permutation(len(rows)))
            batch = [rows[i] for i in order[: c.train_batch_size]]
            del order[: c.train_batch_size]
            losses.append(_step(model, batch, pad, device, params, optimizer, scheduler))
            self.advance(1)
        seconds = time.perf_counter() - started
        model.eval()
        return losses, seconds

    def _train_epochs(
        self, lm: TransformersLM, model: Any, baseline: str, peft_model: Any, space: LabelSpace
    ) -> tuple[list[float], float, dict[str, Any]]:
        """Train epoch by epoch until dev accuracy stops improving; keep the best epoch.

        Returns the per-step losses, the seconds taken (training and dev evaluations) and the
        history recorded in the arm's file. The model is left with the best epoch's weights.
        """
        import torch

        c = self.config
        rows = self._train_rows(lm.tokenizer)
        lengths = [len(ids) for ids, _ in rows]
        per_epoch = math.ceil(len(rows) / c.train_batch_size)
        total = c.max_epochs * per_epoch
        params = [p for p in model.parameters() if p.requires_grad]
        # The schedule decays to zero at the last step max_epochs allows.
        optimizer, scheduler = _optimizer(params, c.learning_rate(baseline), total)
        rng = np.random.default_rng(c.seed)
        pad = int(lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0)
        device = next(model.parameters()).device
        gold = [class_key(ex) for ex in self.split.dev]
        dev = InContextEvaluator(c, self.split.dev, gold, space, self.assembler, lambda _: None)
        stopper = EarlyStopping(c.min_epochs, c.max_epochs, c.patience, c.max_train_seconds)
        curve: list[EpochRecord] = []
        losses: list[float] = []
        best: dict[str, Any] = {}
        started = time.perf_counter()
        while True:
            began = time.perf_counter()
            model.train()
            epoch_losses = []
            for batch in bucketed_batches(lengths, c.train_batch_size, rng):
                picked = [rows[i] for i in batch]
                epoch_losses.append(_step(model, picked, pad, device, params, optimizer, scheduler))
                self.advance(1)
            losses.extend(epoch_losses)
            model.eval()
            trained_model = lm.model
            lm.model = _eval_model(baseline, model, peft_model)
            accuracy = dev.evaluate(lm, no_examples).metrics.accuracy
            lm.model = trained_model
            seconds = time.perf_counter() - began
            epoch = EpochRecord(
                len(curve) + 1, len(losses), float(np.mean(epoch_losses)), accuracy, seconds
            )
            curve.append(epoch)
            go_on = stopper.update(accuracy, seconds)
            logger.info(
                "%s epoch %d: train loss %.4f, dev accuracy %.3f (%.1f s)",
                baseline,
                epoch.epoch,
                epoch.train_loss,
                accuracy,
                seconds,
            )
            if stopper.improved():
                best = {
                    name: p.detach().clone()
                    for name, p in model.named_parameters()
                    if p.requires_grad
                }
            if not go_on:
                break
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in best:
                    p.copy_(best[name])
        seconds = time.perf_counter() - started
        history: dict[str, Any] = {
            "dev_curve": [e.as_dict() for e in curve],
            "best_epoch": stopper.best_epoch,
            "best_dev_accuracy": curve[stopper.best_epoch - 1].dev_accuracy,
            "epochs_trained": len(curve),
            "converged": stopper.converged,
            "stop_reason": stopper.reason,
            "stopped": stopper.describe(),
            "train_steps_total": len(losses),
            "train_steps_best": curve[stopper.best_epoch - 1].steps,
            "steps_per_epoch": per_epoch,
        }
        logger.info("%s: %s", baseline, history["stopped"])
        return losses, seconds, history


def _optimizer(params: Sequence[Any], lr: float, steps: int) -> tuple[Any, Any]:
    """AdamW with a linear warm-up (a tenth of ``steps``, at most 10) and linear decay to zero."""
    import torch

    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = min(10, max(1, steps // 10))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _step(
    model: Any,
    batch: Sequence[TrainRow],
    pad: int,
    device: Any,
    params: Sequence[Any],
    optimizer: Any,
    scheduler: Any,
) -> float:
    """One optimiser step on a batch padded to its longest row; returns the batch's loss."""
    import torch

    input_ids, labels, mask = (torch.from_numpy(a).to(device) for a in pad_batch(batch, pad))
    out = model(input_ids=input_ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(out.loss.detach())


def _save_trained(baseline: str, model: Any, peft_model: Any, path: Path) -> None:
    from safetensors.torch import save_file

    if baseline == "full":
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        # Tied weights share storage; keep one copy (the loader restores the tie).
        seen: dict[int, str] = {}
        for name in list(state):
            ptr = state[name].data_ptr()
            if ptr in seen:
                del state[name]
            else:
                seen[ptr] = name
    elif baseline == "lora":
        from peft import get_peft_model_state_dict

        state = {k: v.contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}
    else:
        state = {"soft_prompt": peft_model.get_prompt_embedding_to_save("default").contiguous()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def _load_trained(baseline: str, model: Any, peft_model: Any, path: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(path))
    if baseline == "full":
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any("lm_head" not in m for m in missing):
            raise DataError(f"{path} does not match the model: {missing} {unexpected}")
        model.tie_weights()
    elif baseline == "lora":
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(peft_model, state)
    else:
        import torch

        with torch.no_grad():
            peft_model.prompt_encoder["default"].embedding.weight.copy_(state["soft_prompt"])


def _eval_model(baseline: str, model: Any, peft_model: Any) -> Any:
    """The model that scores the dev split mid-training (LoRA left unmerged: training goes on)."""
    from kshot.model.soft_prompt import SoftPromptLM

    if baseline == "full":
        return model
    if baseline == "lora":
        return peft_model
    soft = peft_model.get_prompt_embedding_to_save("default").detach().clone()
    return SoftPromptLM(peft_model.get_base_model(), soft)


def _inference_model(baseline: str, model: Any, peft_model: Any) -> Any:
    from kshot.model.soft_prompt import SoftPromptLM

    if baseline == "full":
        return model
    if baseline == "lora":
        return peft_model.merge_and_unload()
    soft = peft_model.get_prompt_embedding_to_save("default").detach()
    return SoftPromptLM(peft_model.get_base_model(), soft)
