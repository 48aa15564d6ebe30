"""Shared fixtures: encoders (the real MiniLM model and the hashing one), toy and real examples."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from kshot.data import load_dataset
from kshot.index.encoder import HashingEncoder, SentenceTransformerEncoder
from kshot.types import Example

# No per-example deadline: on a loaded 2-core machine a fast example can take 250 ms, and a
# deadline then fails a test for the machine's load, not for the code. Derandomised so that a
# run (CI's too) is reproducible; the properties still cover each test's full strategy.
settings.register_profile("kshot", deadline=None, derandomize=True)
settings.load_profile("kshot")


@pytest.fixture(scope="module")
def one_faiss_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread for a module (``pytest.mark.usefixtures("one_faiss_thread")``).

    FAISS parallelises even a one-query search with OpenMP; on a busy two-core machine the
    threads' barrier costs ~15 ms a search, and the modules using this search tiny indexes one
    query at a time.
    """
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEncoder:
    """The real all-MiniLM-L6-v2 model, loaded once from the bundled package, on the CPU."""
    return SentenceTransformerEncoder(device="cpu")


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    """A deterministic model-free encoder for tests that are not about embedding quality."""
    return HashingEncoder(64)


@pytest.fixture
def toy_examples() -> list[Example]:
    """Twelve small labelled examples with metadata, ids ``t00``..``t11``."""
    rows = [
        ("How do I reset my card PIN?", "change_pin", "card"),
        ("I forgot the PIN of my debit card", "change_pin", "card"),
        ("My card has not arrived yet", "card_arrival", "card"),
        ("When will the new card be delivered?", "card_arrival", "card"),
        ("Why was I charged a fee for the transfer?", "transfer_fee", "transfer"),
        ("How much does an international transfer cost?", "transfer_fee", "transfer"),
        ("My transfer has been pending for days", "pending_transfer", "transfer"),
        ("The money I sent still has not arrived", "pending_transfer", "transfer"),
        ("Can I top up my account with cash?", "top_up", "account"),
        ("My top up failed, what happened?", "top_up", "account"),
        ("How do I close my account?", "terminate_account", "account"),
        ("Please delete my account and my data", "terminate_account", "account"),
    ]
    return [
        Example(
            input=text,
            output=label.replace("_", " "),
            label=label,
            metadata={"topic": topic, "n": i},
            id=f"t{i:02d}",
        )
        for i, (text, label, topic) in enumerate(rows)
    ]


@pytest.fixture(scope="session")
def banking_train() -> list[Example]:
    """BANKING77 train split (9,003 examples), from the local archive cache."""
    return load_dataset("banking77", "train")


@pytest.fixture(scope="session")
def banking_test() -> list[Example]:
    """BANKING77 test split (3,080 examples)."""
    return load_dataset("banking77", "test")
