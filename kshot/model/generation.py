"""Backend-independent pieces of text generation: options, results, stop-sequence scanning."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kshot.errors import ConfigError
from kshot.model.base import first_stop

__all__ = ["FinishReason", "Generation", "GenerationOptions", "StopScanner"]

#: Why generation ended: a stop sequence or the end-of-sequence token, or the token limit.
FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class GenerationOptions:
    """How to continue a prompt.

    ``temperature`` 0 is greedy decoding (``top_p`` and ``seed`` then do not matter); above 0 the
    next token is sampled from the softmax at that temperature, restricted to the smallest set of
    tokens whose probabilities add up to ``top_p`` (nucleus sampling), with a generator seeded by
    ``seed`` (the model's own seed when ``None``), so a seeded request repeats exactly.
    """

    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {self.max_new_tokens!r}")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise ConfigError("stop must be a sequence of strings")


@dataclass(frozen=True)
class Generation:
    """One finished continuation with its token counts."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass
class StopScanner:
    """Cuts streamed text before the first stop sequence, across chunk boundaries.

    :meth:`feed` returns the text that is safe to emit: anything that might be the start of a
    stop sequence is held back until the next chunk shows whether it is one. After a stop is
    found, :attr:`stopped` is true and the rest is discarded; :meth:`flush` returns what is still
    held when the stream ends without a stop.
    """

    stop: Sequence[str]
    stopped: bool = False
    _held: str = field(default="", repr=False)

    def feed(self, delta: str) -> str:
        """Add ``delta``; return the text that can be emitted now."""
        if self.stopped:
            return ""
        text = self._held + delta
        cut = first_stop(text, self.stop)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        hold = 0
        for s in self.stop:
            for j in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:j]):
                    hold = j
                    break
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """Return (and forget) the held text, at the end of a stream that did not stop."""
        out, self._held = self._held, ""
        return out
