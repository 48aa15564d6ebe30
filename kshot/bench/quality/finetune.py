"""The fine-tuned LM baselines: full fine-tuning, LoRA and prompt tuning, with a weight cache.

Each baseline trains the run's language model on the training split (the zero-shot prompt, loss
on the answer tokens and EOS) with a plain AdamW loop, then predicts like the zero-shot arm.
Trained weights are cached under ``<weights_dir>/weights/<baseline>-<key>/``
(``weights.safetensors`` and ``meta.json``), keyed by
:func:`~kshot.bench.quality.arms.train_spec`, so a rerun loads them instead of training again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kshot.bench.quality.arms import Arm, ArmRecord, train_spec
from kshot.bench.quality.cache import cache_key, cache_root, write_json
from kshot.bench.quality.config import QualityConfig
from kshot.bench.quality.data import class_key, fingerprint
from kshot.bench.quality.icl import InContextEvaluator, no_examples
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
        self.train = list(train)
        self.assembler = assembler
        self.load_lm = load_lm
        self.advance = advance
        self._fingerprint = fingerprint(self.train)

    def spec(self, baseline: str) -> dict[str, object]:
        """What determines the baseline's weights (its cache key)."""
        return train_spec(self.config, baseline, self._fingerprint, len(self.train))

    def run(self, arm: Arm, evaluator: InContextEvaluator) -> ArmRecord:
        """Train or load the arm's baseline, evaluate it on the zero-shot prompt; its record."""
        trained = self.trained(arm.name)
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
        return record

    def trained(self, baseline: str) -> TrainedLM:
        """Train (or load from the cache) one LM baseline."""
        import torch

        spec = self.spec(baseline)
        cache = cache_root(self.config.weights_dir) / "weights" / f"{baseline}-{cache_key(spec)}"
        lm = self.load_lm()
        model = lm.model
        meta_path = cache / "meta.json"
        weights_path = cache / "weights.safetensors"
        steps = int(self.config.train_steps(baseline, len(self.train)))
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
        else:
            torch.manual_seed(self.config.seed)
            losses, seconds = self._train(trainable, lm.tokenizer, baseline, steps)
            _save_trained(baseline, model, peft_model, weights_path)
            meta = {
                "train_seconds": seconds,
                "steps": steps,
                "losses": losses,
                "spec": spec,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_json(meta_path, meta)
            cached = False
        lm.model = _inference_model(baseline, model, peft_model)
        lm.model.eval()
        return TrainedLM(lm, float(seconds), int(steps), list(losses), cached, n_trainable)

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
        import torch

        c = self.config
        rows = self._train_rows(tokenizer)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate(baseline), weight_decay=0.0)
        warmup = min(10, max(1, steps // 10))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return max(0.0, (steps - step) / max(1, steps - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
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
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, (ids, targets) in enumerate(batch):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                labels[r, : len(ids)] = torch.tensor(targets)
                mask[r, : len(ids)] = 1
            out = model(
                input_ids=input_ids.to(device),
                attention_mask=mask.to(device),
                labels=labels.to(device),
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(out.loss.detach()))
            self.advance(1)
        seconds = time.perf_counter() - started
        model.eval()
        return losses, seconds


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


def _inference_model(baseline: str, model: Any, peft_model: Any) -> Any:
    from kshot.model.soft_prompt import SoftPromptLM

    if baseline == "full":
        return model
    if baseline == "lora":
        return peft_model.merge_and_unload()
    soft = peft_model.get_prompt_embedding_to_save("default").detach()
    return SoftPromptLM(peft_model.get_base_model(), soft)
