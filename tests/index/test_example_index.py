from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kshot.errors import ConfigError, DataError, FilterError, NotFoundError, QueryError
from kshot.index.encoder import HashingEncoder, SentenceTransformerEncoder
from kshot.index.example_index import ExampleIndex, as_example
from kshot.selector import build_selector
from kshot.types import Example, Scored


@pytest.fixture
def index(toy_examples: list[Example], hashing_encoder: HashingEncoder) -> ExampleIndex:
    return ExampleIndex.build(toy_examples, hashing_encoder)


def search(
    index: ExampleIndex,
    queries: str | list[str],
    k: int,
    *,
    filter: dict[str, object] | None = None,
    exclude: list[str] | tuple[str, ...] = (),
) -> list[list[Scored]]:
    """Nearest examples by cosine similarity, as ``ExampleIndex.search`` gave them before."""
    texts = [queries] if isinstance(queries, str) else queries
    return build_selector(index, "similarity").select_batch(
        texts, k, filter=filter, exclude=exclude
    )


def ids_of(results: list[list]) -> list[list[str]]:  # type: ignore[type-arg]
    return [[s.example.id for s in row] for row in results]


# -- build, get, len ------------------------------------------------------------------------------


def test_build_from_examples_and_dicts(hashing_encoder: HashingEncoder) -> None:
    index = ExampleIndex.build(
        [
            Example(input="first text", label="a", id="x"),
            {"input": "second text", "output": "o", "label": "b", "metadata": {"k": 1}},
            {"input": 123, "label": 7},  # coerced to strings
        ],
        hashing_encoder,
    )
    assert len(index) == 3
    assert index.dim == 64
    assert index.encoder_name == "hashing:64"
    assert index.factory == "Flat"
    assert index.labels() == {"a": 1, "b": 1, "7": 1}
    assert index.fields() == ["label", "k"]
    x, second, third = index.get(["x", "ex2", "ex3"])
    assert x == Example(input="first text", label="a", id="x")
    assert second == Example(
        input="second text", output="o", label="b", metadata={"k": 1}, id="ex2"
    )
    assert third.input == "123"
    assert third.label == "7"


def test_build_stores_normalised_precomputed_embeddings(hashing_encoder: HashingEncoder) -> None:
    raw = np.arange(1, 2 * 64 + 1, dtype=np.float64).reshape(2, 64)
    index = ExampleIndex.build(
        [{"input": "a"}, {"input": "b"}], hashing_encoder, embeddings=raw.tolist()
    )
    with index.reading():
        stored = index.view.slot_vectors([0, 1])
    np.testing.assert_allclose(stored, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
    assert stored.dtype == np.float32


def test_get_unknown_id_raises(index: ExampleIndex) -> None:
    with pytest.raises(NotFoundError, match="no example with id 'missing'"):
        index.get(["t00", "missing"])
    with pytest.raises(KeyError):
        index.get(["missing"])


def test_iteration_yields_every_live_example(index: ExampleIndex) -> None:
    index.delete(["t03"])
    got = [ex.id for ex in index]
    assert got == [f"t{i:02d}" for i in range(12) if i != 3]


def test_info(index: ExampleIndex) -> None:
    info = index.info()
    assert info["count"] == 12
    assert info["encoder"] == "hashing:64"
    assert info["path"] is None
    assert info["labels"]["change_pin"] == 2
    assert info["fields"] == ["label", "n", "topic"]


# -- add / update / delete ------------------------------------------------------------------------


def test_add_returns_ids_and_assigns_missing_ones(index: ExampleIndex) -> None:
    ids = index.add([{"input": "new one", "id": "mine"}, {"input": "another new"}])
    assert ids[0] == "mine"
    assert ids[1] and ids[1] not in {f"t{i:02d}" for i in range(12)}
    assert len(index) == 14
    assert index.get(ids)[1].input == "another new"
    assert index.add([]) == []
    # Assigned ids never collide with later assigned ids.
    more = index.add([{"input": f"extra {i}"} for i in range(5)])
    assert len(set(more) | set(ids)) == 7


def test_added_examples_are_searchable(index: ExampleIndex) -> None:
    index.add([{"input": "zebra giraffe safari", "label": "zoo", "id": "z"}])
    top = search(index, "giraffe safari zebra", 1)[0]
    assert top[0].example.id == "z"
    assert search(index, "giraffe safari", 3, filter={"label": "zoo"})[0][0].example.id == "z"


def test_update_input_re_embeds(index: ExampleIndex, hashing_encoder: HashingEncoder) -> None:
    before = search(index, "zebra giraffe safari", 1)[0][0].example.id
    assert before != "t05"
    new = index.update("t05", input="zebra giraffe safari park")
    assert new.id == "t05"
    assert new.input == "zebra giraffe safari park"
    assert new.label == "transfer_fee"  # untouched fields are kept
    assert new.metadata == {"topic": "transfer", "n": 5}
    assert search(index, "zebra giraffe safari", 1)[0][0].example.id == "t05"
    slot = index.view.slots_matching_text("zebra giraffe safari park")
    with index.reading():
        np.testing.assert_allclose(
            index.view.slot_vectors(slot)[0],
            hashing_encoder.encode(["zebra giraffe safari park"])[0],
        )
    assert len(index) == 12
    assert index.view.slots_matching_text("How much does an international transfer cost?") == []


def test_update_label_and_metadata_keeps_the_vector(index: ExampleIndex) -> None:
    class NoEncode(HashingEncoder):
        def encode(self, *args: object, **kwargs: object) -> np.ndarray:  # type: ignore[override]
            raise AssertionError("a label/metadata change must not re-embed")

    real = index._encoder
    index._encoder = NoEncode(64)
    new = index.update("t00", label="new_label", metadata={"topic": "other"}, output="x")
    # Same input text as before: an update with it is not a re-embedding either.
    index.update("t00", input="How do I reset my card PIN?")
    index._encoder = real
    assert (new.label, new.output, dict(new.metadata)) == ("new_label", "x", {"topic": "other"})
    assert index.get(["t00"])[0] == new
    assert index.labels()["change_pin"] == 1
    assert index.labels()["new_label"] == 1
    # Filters see the change at once: the old label and metadata no longer match.
    only = search(index, "reset PIN card", 12, filter={"label": "new_label"})[0]
    assert [s.example.id for s in only] == ["t00"]
    other = search(index, "reset PIN card", 12, filter={"topic": "other"})[0]
    assert [s.example.id for s in other] == ["t00"]
    card = search(index, "reset PIN card", 12, filter={"topic": "card"})[0]
    assert "t00" not in {s.example.id for s in card}


def test_update_errors(index: ExampleIndex) -> None:
    with pytest.raises(NotFoundError, match="'nope'"):
        index.update("nope", label="x")
    with pytest.raises(DataError, match=r"id 't01'\) has an empty 'input' field"):
        index.update("t01", input="   ")
    with pytest.raises(DataError, match="metadata must hold JSON"):
        index.update("t01", metadata={"bad": object()})
    # Nothing lost: the example is unchanged and still found.
    assert index.get(["t01"])[0].input == "I forgot the PIN of my debit card"
    assert len(index) == 12
    assert "t01" in {s.example.id for s in search(index, "forgot PIN debit card", 3)[0]}


def test_delete(index: ExampleIndex) -> None:
    assert index.delete(["t00", "t01", "t00"]) == 2
    assert len(index) == 10
    with pytest.raises(NotFoundError):
        index.get(["t00"])
    found = {s.example.id for s in search(index, "reset PIN debit card", 10)[0]}
    assert found.isdisjoint({"t00", "t01"})
    assert index.labels().get("change_pin") is None
    assert search(index, "reset PIN", 5, filter={"label": "change_pin"}) == [[]]


def test_delete_unknown_id_deletes_nothing(index: ExampleIndex) -> None:
    with pytest.raises(NotFoundError, match="'ghost'"):
        index.delete(["t00", "ghost"])
    assert len(index) == 12
    assert index.get(["t00"])[0].id == "t00"


def test_deleted_id_can_be_added_again(index: ExampleIndex) -> None:
    index.delete(["t02"])
    index.add([{"input": "brand new text", "id": "t02"}])
    assert index.get(["t02"])[0].input == "brand new text"


# -- search and filters ---------------------------------------------------------------------------


def test_search_ranks_by_cosine_and_respects_k(index: ExampleIndex) -> None:
    (found,) = search(index, "How do I reset my card PIN please", 3)
    assert len(found) == 3
    assert found[0].example.id == "t00"
    scores = [s.score for s in found]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)


def test_search_many_queries(index: ExampleIndex) -> None:
    results = search(index, ["card PIN reset", "top up cash account"], 2)
    assert len(results) == 2
    assert all(len(r) == 2 for r in results)


def test_search_never_returns_the_query_itself(index: ExampleIndex) -> None:
    (found,) = search(index, "how do i reset my card pin?", 12)
    assert "t00" not in {s.example.id for s in found}
    assert len(found) == 11


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"label": "top_up"}, {"t08", "t09"}),
        ({"label": ["top_up", "change_pin"]}, {"t08", "t09", "t00", "t01"}),
        ({"topic": "card"}, {"t00", "t01", "t02", "t03"}),
        ({"topic": "card", "label": "card_arrival"}, {"t02", "t03"}),
        ({"n": [1, 2]}, {"t01", "t02"}),
        ({"label": "no_such_label"}, set()),
    ],
)
def test_search_filters_apply_before_the_top_k(
    index: ExampleIndex, flt: dict[str, object], expected: set[str]
) -> None:
    (found,) = search(index, "transfer fee money sent", 12, filter=flt)
    assert {s.example.id for s in found} == expected
    # k examples come back whenever k match, however far down the unfiltered ranking they are.
    if expected:
        (one,) = search(index, "transfer fee money sent", 1, filter=flt)
        assert len(one) == 1


def test_search_exclude(index: ExampleIndex) -> None:
    (found,) = search(index, "card PIN", 12, exclude=["t00", "t01", "unknown-id"])
    ids = {s.example.id for s in found}
    assert len(ids) == 10
    assert not ids & {"t00", "t01"}


def test_search_filter_on_unknown_field(index: ExampleIndex) -> None:
    with pytest.raises(FilterError, match=r"no example has the field 'colour'.*'topic'"):
        search(index, "card", 2, filter={"colour": "red"})
    with pytest.raises(FilterError, match="must map fields to values"):
        search(index, "card", 2, filter=["label"])  # type: ignore[arg-type]


# -- bad input: a clear error, nothing lost -------------------------------------------------------


def test_empty_corpus(hashing_encoder: HashingEncoder) -> None:
    with pytest.raises(DataError, match="the corpus is empty"):
        ExampleIndex.build([], hashing_encoder)
    with pytest.raises(DataError, match="the corpus is empty"):
        ExampleIndex.build(iter(()), hashing_encoder)


def test_row_without_input_names_row_and_field(hashing_encoder: HashingEncoder) -> None:
    rows = [{"input": "fine"}, {"input": "fine too"}, {"text": "oops", "label": "x"}]
    with pytest.raises(DataError, match=r"example 2 has no 'input' field \(it has: label, text\)"):
        ExampleIndex.build(rows, hashing_encoder)


@pytest.mark.parametrize("bad", ["", "   \n\t", None])
def test_row_with_empty_input(hashing_encoder: HashingEncoder, bad: object) -> None:
    # A null input is missing text, not the string "None".
    with pytest.raises(DataError, match=r"example 1 \(id 'b'\) has an empty 'input' field"):
        ExampleIndex.build([{"input": "ok"}, {"input": bad, "id": "b"}], hashing_encoder)


def test_row_of_the_wrong_type(hashing_encoder: HashingEncoder) -> None:
    with pytest.raises(DataError, match="example 0 must be an Example or a mapping"):
        ExampleIndex.build(["just a string"], hashing_encoder)  # type: ignore[list-item]
    with pytest.raises(DataError, match="'metadata' must be an object"):
        as_example({"input": "x", "metadata": [1, 2]}, 0)


def test_duplicate_ids_in_one_build(hashing_encoder: HashingEncoder) -> None:
    rows = [{"input": "a", "id": "x"}, {"input": "b", "id": "y"}, {"input": "c", "id": "x"}]
    with pytest.raises(DataError, match=r"duplicate example id 'x' at examples 0 and 2"):
        ExampleIndex.build(rows, hashing_encoder)


def test_duplicate_ids_in_one_add(index: ExampleIndex) -> None:
    with pytest.raises(DataError, match=r"duplicate example id 'n' at examples 0 and 1"):
        index.add([{"input": "a", "id": "n"}, {"input": "b", "id": "n"}])
    assert len(index) == 12


def test_adding_an_existing_id_is_refused_and_nothing_is_lost(index: ExampleIndex) -> None:
    with pytest.raises(
        DataError, match=r"example id 't03' already exists in the index; use update"
    ):
        index.add([{"input": "fresh", "id": "fresh"}, {"input": "clash", "id": "t03"}])
    assert len(index) == 12
    assert index.get(["t03"])[0].input == "When will the new card be delivered?"
    with pytest.raises(NotFoundError):
        index.get(["fresh"])
    assert index.add([{"input": "fresh", "id": "fresh"}]) == ["fresh"]


def test_metadata_that_is_not_json_is_refused(index: ExampleIndex) -> None:
    with pytest.raises(DataError, match=r"example 1 \(id 'm'\): metadata must hold JSON values"):
        index.add([{"input": "ok"}, {"input": "x", "id": "m", "metadata": {"when": object()}}])
    assert len(index) == 12


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3"])
def test_k_below_one_or_not_an_integer(index: ExampleIndex, k: object) -> None:
    with pytest.raises(QueryError, match="k must be a whole number of at least 1"):
        search(index, "card", k)  # type: ignore[arg-type]


def test_k_larger_than_the_index_returns_what_exists(index: ExampleIndex) -> None:
    (found,) = search(index, "a query unlike any input", 1000)
    assert len(found) == 12
    assert len({s.example.id for s in found}) == 12
    (filtered,) = search(index, "card", 50, filter={"topic": "account"})
    assert len(filtered) == 4


@pytest.mark.parametrize("query", ["", "   ", "\n\t  "])
def test_whitespace_query(index: ExampleIndex, query: str) -> None:
    with pytest.raises(QueryError, match="query 0 is empty or whitespace only"):
        search(index, query, 3)
    with pytest.raises(QueryError, match="query 1 is empty or whitespace only"):
        search(index, ["fine", query], 3)
    with pytest.raises(QueryError, match="query 0 is empty"):
        index.encode_queries([query])


def test_precomputed_embeddings_of_the_wrong_shape(hashing_encoder: HashingEncoder) -> None:
    rows = [{"input": "a"}, {"input": "b"}]
    with pytest.raises(DataError, match=r"embeddings have shape \(2, 32\); expected \(2, 64\)"):
        ExampleIndex.build(rows, hashing_encoder, embeddings=np.ones((2, 32)))
    with pytest.raises(DataError, match=r"shape \(3, 64\); expected \(2, 64\) for 2 examples"):
        ExampleIndex.build(rows, hashing_encoder, embeddings=np.ones((3, 64)))
    with pytest.raises(DataError, match=r"embeddings have shape \(64,\)"):
        ExampleIndex.build(rows[:1], hashing_encoder, embeddings=np.ones(64))
    bad = np.ones((2, 64))
    bad[1, 3] = np.nan
    with pytest.raises(DataError, match="NaN or infinity"):
        ExampleIndex.build(rows, hashing_encoder, embeddings=bad)
    with pytest.raises(DataError, match="all-zero rows"):
        ExampleIndex.build(rows, hashing_encoder, embeddings=np.zeros((2, 64)))


def test_add_with_precomputed_embeddings_of_the_wrong_dimension(index: ExampleIndex) -> None:
    with pytest.raises(DataError, match=r"embeddings have shape \(1, 63\); expected \(1, 64\)"):
        index.add([{"input": "x"}], embeddings=np.ones((1, 63)))
    assert len(index) == 12
    ids = index.add([{"input": "x"}], embeddings=np.ones((1, 64)))
    assert index.get(ids)[0].input == "x"


def test_query_vectors_are_checked(index: ExampleIndex) -> None:
    ok = index.check_query_vectors(np.ones(64))
    assert ok.shape == (1, 64)
    assert ok.dtype == np.float32
    with pytest.raises(QueryError, match=r"query vectors have shape \(2, 32\); this index needs"):
        index.check_query_vectors(np.ones((2, 32)))
    with pytest.raises(QueryError, match=r"shape \(1, 2, 64\)"):
        index.check_query_vectors(np.ones((1, 2, 64)))
    with pytest.raises(QueryError, match="NaN or infinity"):
        index.check_query_vectors(np.full(64, np.inf))


def test_bad_factory_string(toy_examples: list[Example], hashing_encoder: HashingEncoder) -> None:
    with pytest.raises(ConfigError, match="FAISS cannot build factory string 'NoSuchThing'"):
        ExampleIndex.build(toy_examples, hashing_encoder, factory="NoSuchThing")


def test_save_without_a_path(index: ExampleIndex) -> None:
    with pytest.raises(ConfigError, match=r"no directory yet: pass save\(path\)"):
        index.save()


# -- other FAISS index types ----------------------------------------------------------------------


@pytest.mark.parametrize("factory", ["HNSW16,Flat", "IVF4,Flat"])
def test_approximate_factories(
    hashing_encoder: HashingEncoder, factory: str, tmp_path: Path
) -> None:
    rows = [{"input": f"item {i} word{i % 17} thing{i % 5}", "id": f"i{i}"} for i in range(300)]
    index = ExampleIndex.build(rows, hashing_encoder, factory=factory)
    assert index.factory == factory
    index.delete(["i0", "i1"])
    index.update("i2", input="completely new words here")
    (found,) = search(index, "item 0 word0 thing0", 20)
    assert {"i0", "i1"}.isdisjoint({s.example.id for s in found})
    assert len(found) == 20
    index.save(tmp_path / "idx")
    index.close()  # saving attached it to the directory, as its one writer
    with ExampleIndex.load(tmp_path / "idx") as loaded:
        assert len(loaded) == 298
        assert loaded.factory == factory


# -- concurrency ----------------------------------------------------------------------------------


def test_readers_and_a_writer_in_threads(hashing_encoder: HashingEncoder) -> None:
    """Searches run while a writer adds, updates and deletes; every read is consistent."""
    base = [
        {"input": f"base text {i} word{i % 13}", "label": f"L{i % 4}", "id": f"b{i}"}
        for i in range(400)
    ]
    index = ExampleIndex.build(base, hashing_encoder)
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = Counter[str]()

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                label = f"L{rng.randrange(4)}"
                k = rng.randrange(1, 30)
                (found,) = search(
                    index, f"word{rng.randrange(13)} text", k, filter={"label": label}
                )
                ids = [s.example.id for s in found]
                assert len(ids) == len(set(ids)) <= k
                assert all(s.example.label == label for s in found)
                scores = [s.score for s in found]
                assert scores == sorted(scores, reverse=True)
                for s in found:  # each example is whole: the id matches its text
                    number = s.example.id[1:]
                    assert number in s.example.input
                with index.reading():
                    assert len(index.view.live_slots(None)) == len(index)
                reads["search"] += 1
                got = index.get(["b0"])
                assert got[0].id == "b0"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer() -> None:
        try:
            for step in range(60):
                new = [
                    {
                        "input": f"new text {step}x{j} word{j}",
                        "label": f"L{j % 4}",
                        "id": f"n{step}x{j}",
                    }
                    for j in range(5)
                ]
                index.add(new)
                index.delete([f"n{step}x0"])
                victim = f"b{1 + step}"
                index.update(victim, input=f"updated text {1 + step} word{step % 13}")
                if step % 2:
                    index.delete([victim])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
    assert reads["search"] > 0
    assert len(index) == 400 + 60 * 4 - 30
    assert len(list(index)) == len(index)


def test_iteration_while_deleting_does_not_fail(hashing_encoder: HashingEncoder) -> None:
    rows = [{"input": f"row {i}", "id": f"r{i}"} for i in range(5000)]
    index = ExampleIndex.build(rows, hashing_encoder)
    done = threading.Event()
    errors: list[BaseException] = []

    def deleter() -> None:
        try:
            for start in range(0, 5000, 50):
                index.delete([f"r{i}" for i in range(start, start + 25)])
                time.sleep(0)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        while not done.is_set():
            seen = [ex.id for ex in index]
            assert len(seen) == len(set(seen))
    finally:
        thread.join()
    assert not errors
    assert len(list(index)) == 2500


# -- real data: embedding quality -----------------------------------------------------------------


def one_nn_accuracy(index: ExampleIndex, queries: list[Example]) -> float:
    picks = build_selector(index, "similarity").select_batch([q.input for q in queries], 1)
    hits = sum(p[0].example.label == q.label for p, q in zip(picks, queries, strict=True))
    return hits / len(queries)


@pytest.mark.slow  # embeds a few thousand rows with the real MiniLM: about 30 s
def test_banking77_subset_nearest_neighbour_accuracy(
    minilm: SentenceTransformerEncoder,
    banking_train: list[Example],
    banking_test: list[Example],
) -> None:
    by_label: dict[str, list[Example]] = {}
    for ex in banking_train:
        by_label.setdefault(str(ex.label), []).append(ex)
    assert len(by_label) == 77
    subset = [ex for members in by_label.values() for ex in members[:19]]
    assert len({ex.label for ex in subset}) == 77
    queries = banking_test[::20][:150]
    index = ExampleIndex.build(subset, minilm)
    assert len(index) == len(subset)
    assert index.encoder_name == "sentence-transformers/all-MiniLM-L6-v2"
    accuracy = one_nn_accuracy(index, queries)
    # Chance is 1/77 = 0.013; MiniLM nearest neighbours over 19 examples per intent do far better.
    assert accuracy > 0.6, accuracy


@pytest.mark.slow
def test_banking77_full_train_nearest_neighbour_accuracy(
    minilm: SentenceTransformerEncoder,
    banking_train: list[Example],
    banking_test: list[Example],
) -> None:
    index = ExampleIndex.build(banking_train, minilm, batch_size=128)
    assert len(index) == 9003
    assert len(index.labels()) == 77
    queries = banking_test[::6][:500]
    assert one_nn_accuracy(index, queries) >= 0.88


def test_default_ivf_falls_back_to_exact_on_unclustered_vectors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kshot.index.factories as factories_module

    monkeypatch.setattr(factories_module, "APPROX_THRESHOLD", 1_000)
    rng = np.random.default_rng(0)
    n, dim = 3_000, 32
    examples = [{"input": f"row {i}"} for i in range(n)]
    # Gaussian noise has no clusters: IVF would have to probe most lists to reach the target.
    noise = rng.normal(size=(n, dim)).astype(np.float32)
    index = ExampleIndex.build(examples, HashingEncoder(dim), embeddings=noise)
    assert index.factory == "Flat"
    # Well-clustered vectors keep the approximate index chosen by size.
    centres = rng.normal(size=(20, dim)).astype(np.float32)
    clustered = centres[rng.integers(0, 20, n)] + 0.05 * rng.normal(size=(n, dim))
    index = ExampleIndex.build(examples, HashingEncoder(dim), embeddings=clustered)
    assert index.factory.startswith("IVF")
    # An explicit factory is kept even on noise.
    index = ExampleIndex.build(
        examples, HashingEncoder(dim), embeddings=noise, factory="IVF16,Flat"
    )
    assert index.factory == "IVF16,Flat"


def test_text_codes_are_equal_exactly_for_the_same_normalised_text() -> None:
    from kshot.index.filters import normalize_text

    texts = ["My card hasn't arrived.", "my card hasn't  arrived", "My card arrived", "Card?"]
    index = ExampleIndex.build([{"input": t} for t in texts], HashingEncoder(16))
    index.add([{"input": "card"}, {"input": "MY CARD ARRIVED!"}])
    view = index.view
    slots = view.live_slots(None).tolist()
    for a in slots:
        for b in slots:
            same = normalize_text(view.slot_text(a)) == normalize_text(view.slot_text(b))
            assert (view.slot_text_code(a) == view.slot_text_code(b)) == same
