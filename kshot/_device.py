"""Device choice shared by the encoder and the language model."""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(device: str = "auto") -> str:
    """Map ``"auto"`` to the best available torch device: cuda, then mps, then cpu."""
    if device != "auto":
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
