"""The index layer: encoders, the example store, FAISS vectors and the lexical index."""

from kshot.index.encoder import (
    DEFAULT_MODEL,
    Encoder,
    HashingEncoder,
    SentenceTransformerEncoder,
    encoder_from_name,
    resolve_device,
)
from kshot.index.example_index import ExampleIndex, as_example, normalize_text
from kshot.index.vectors import choose_factory

__all__ = [
    "DEFAULT_MODEL",
    "Encoder",
    "ExampleIndex",
    "HashingEncoder",
    "SentenceTransformerEncoder",
    "as_example",
    "choose_factory",
    "encoder_from_name",
    "normalize_text",
    "resolve_device",
]
