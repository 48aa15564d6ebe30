"""The contract every registered selector honours, run over each of them on a hashing index."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kshot.api import select
from kshot.errors import ConfigError, FilterError, QueryError, UnknownSelectorError
from kshot.index.encoder import HashingEncoder
from kshot.index.example_index import ExampleIndex
from kshot.index.filters import normalize_text
from kshot.selector import (
    BalancedParams,
    BaseSelector,
    IndexView,
    MMRParams,
    Param,
    Ranking,
    SelectorSpec,
    available_selectors,
    build_selector,
    register,
    selector_class,
)
from kshot.selector.base import _REGISTRY
from kshot.types import Example, Scored

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

SELECTORS = sorted(available_selectors())

_TEXTS = [
    ("How do I reset my card PIN?", "change_pin", "card"),
    ("I forgot the PIN of my debit card", "change_pin", "card"),
    ("Can I change my PIN at an ATM?", "change_pin", "card"),
    ("My card has not arrived yet", "card_arrival", "card"),
    ("When will the new card be delivered?", "card_arrival", "card"),
    ("How long does card delivery take?", "card_arrival", "card"),
    ("Why was I charged a fee for the transfer?", "transfer_fee", "transfer"),
    ("How much does an international transfer cost?", "transfer_fee", "transfer"),
    ("Is there a fee for sending money abroad?", "transfer_fee", "transfer"),
    ("My transfer has been pending for days", "pending_transfer", "transfer"),
    ("The money I sent still has not arrived", "pending_transfer", "transfer"),
    ("Why is my transfer still pending?", "pending_transfer", "transfer"),
    ("Can I top up my account with cash?", "top_up", "account"),
    ("My top up failed, what happened?", "top_up", "account"),
    ("How do I top up by bank transfer?", "top_up", "account"),
    ("How do I close my account?", "terminate_account", "account"),
    ("Please delete my account and my data", "terminate_account", "account"),
    ("I want to cancel my account", "terminate_account", "account"),
    # Exact duplicates (after normalisation) of earlier inputs, with other ids.
    ("how do i reset my card   pin?", "change_pin", "card"),
    ("MY CARD HAS NOT ARRIVED YET", "card_arrival", "card"),
    ("Why is my transfer still pending?", "pending_transfer", "transfer"),
    # No label at all.
    ("What is the weather like today?", None, "other"),
]

CORPUS = [
    Example(
        input=text,
        output="" if label is None else label.replace("_", " "),
        label=label,
        metadata={"topic": topic, "n": i, "parity": i % 2},
        id=f"e{i:02d}",
    )
    for i, (text, label, topic) in enumerate(_TEXTS)
]

QUERIES = [
    "reset the PIN on my card",
    "my transfer is pending",
    "fees for transfers",
    "how to close an account",
    "top up with cash",
    "How do I reset my card PIN?",  # an input of the corpus, twice (e00 and e18)
    "zebra quantum",  # shares no word with the corpus
    "?!",  # no word at all
]

#: Parameters that make a selector's randomness explicit; every other selector is deterministic.
SEEDED: dict[str, dict[str, Any]] = {"random": {"seed": 7}}


@pytest.fixture(scope="module")
def index() -> ExampleIndex:
    return ExampleIndex.build(CORPUS, HashingEncoder(64))


def make(index: ExampleIndex, name: str, **params: Any) -> BaseSelector:
    return build_selector(index, name, {**SEEDED.get(name, {}), **params})


def ids(found: list[Scored]) -> list[str]:
    return [s.example.id for s in found]


def allowed_texts(
    query: str, keep: Any = lambda ex: True, exclude: tuple[str, ...] = ()
) -> set[str]:
    """The distinct inputs a request may return: filter, exclude and hygiene applied."""
    banned = normalize_text(query)
    return {
        normalize_text(ex.input)
        for ex in CORPUS
        if keep(ex) and ex.id not in exclude and normalize_text(ex.input) != banned
    }


def check_hygiene(query: str, found: list[Scored], k: int) -> None:
    chosen = ids(found)
    assert len(chosen) <= k
    assert len(set(chosen)) == len(chosen)
    assert set(chosen) <= {ex.id for ex in CORPUS}
    texts = [normalize_text(s.example.input) for s in found]
    assert len(set(texts)) == len(texts), "two chosen examples share an input"
    assert normalize_text(query) not in texts, "the query's own text came back"
    assert all(isinstance(s.score, float) for s in found)


# -- registry and parameters -----------------------------------------------------------------------
def test_every_strategy_of_the_issue_is_registered() -> None:
    expected = {"random", "jaccard", "similarity", "mmr", "bm25", "balanced"}
    expected |= {"coverage", "dpp", "hybrid"}
    assert expected <= set(SELECTORS)


def test_unknown_selector_lists_the_known_ones(index: ExampleIndex) -> None:
    with pytest.raises(UnknownSelectorError) as err:
        build_selector(index, SelectorSpec("nearest", {}))
    for name in SELECTORS:
        assert name in str(err.value)
    assert isinstance(err.value, ConfigError)


def test_spec_and_name_build_the_same_selector(index: ExampleIndex) -> None:
    by_spec = build_selector(index, SelectorSpec("mmr", {"lambda": 0.3, "fetch_k": 10}))
    by_name = build_selector(index, "mmr", {"lambda": 0.3, "fetch_k": 10})
    typed = build_selector(index, "mmr", MMRParams(lambda_=0.3, fetch_k=10))
    expected = {"dedupe_threshold": None, "lambda": 0.3, "fetch_k": 10}
    assert by_spec.params.to_dict() == by_name.params.to_dict() == expected
    assert typed.params == by_name.params
    q = QUERIES[0]
    assert ids(by_spec.select(q, 3)) == ids(by_name.select(q, 3))


def test_spec_validates_its_shape() -> None:
    with pytest.raises(ConfigError):
        SelectorSpec("", {})
    with pytest.raises(ConfigError):
        SelectorSpec("mmr", [("lambda", 1)])  # type: ignore[arg-type]
    params = {"lambda": 0.2}
    spec = SelectorSpec("mmr", params)
    params["lambda"] = 5.0
    assert spec.params == {"lambda": 0.2}


def test_cli_strings_are_coerced(index: ExampleIndex) -> None:
    sel = build_selector(index, "mmr", {"lambda": "0.25", "fetch_k": "12"})
    assert sel.params == MMRParams(lambda_=0.25, fetch_k=12)
    sel = build_selector(index, "balanced", {"ensure_labels": "top_up, change_pin"})
    assert sel.params == BalancedParams(ensure_labels=("top_up", "change_pin"))


@pytest.mark.parametrize("name", SELECTORS)
def test_unknown_parameter_is_rejected(index: ExampleIndex, name: str) -> None:
    with pytest.raises(ConfigError, match="no parameter 'bogus'") as err:
        build_selector(index, name, {"bogus": 1})
    for param in selector_class(name).Params.fields():
        assert param.name in str(err.value)


def _out_of_range(param: Param) -> list[Any]:
    bad: list[Any] = []
    if param.minimum is not None:
        bad.append(param.kind(param.minimum - 1))
    if param.maximum is not None:
        bad.append(param.kind(param.maximum + 1))
    if param.choices is not None:
        bad.append("not-a-choice")
    if param.kind in (int, float):
        bad.append("twelve")
    if param.kind is float:
        bad.append(float("nan"))
    return bad


PARAM_CASES = [
    (name, param, value)
    for name in SELECTORS
    for param in selector_class(name).Params.fields()
    for value in _out_of_range(param)
]


@pytest.mark.parametrize(("name", "param", "value"), PARAM_CASES, ids=repr)
def test_out_of_range_parameter_names_it_and_the_valid_range(
    index: ExampleIndex, name: str, param: Param, value: Any
) -> None:
    with pytest.raises(ConfigError) as err:
        build_selector(index, name, {param.name: value})
    message = str(err.value)
    assert repr(param.name) in message
    assert param.describe_range() in message


@pytest.mark.parametrize("name", SELECTORS)
def test_defaults_are_in_range_and_schema_describes_them(name: str) -> None:
    cls = selector_class(name)
    schema = cls.schema()
    assert schema["name"] == name and schema["description"]
    for param in cls.Params.fields():
        assert param.coerce(name, param.default) == param.default
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        assert schema["params"][param.name]["default"] == default


def test_balanced_base_must_be_another_registered_selector(index: ExampleIndex) -> None:
    with pytest.raises(UnknownSelectorError, match="'base'"):
        build_selector(index, "balanced", {"base": "nope"})
    with pytest.raises(ConfigError, match="'base'"):
        build_selector(index, "balanced", {"base": "balanced"})


def test_hybrid_needs_some_weight(index: ExampleIndex) -> None:
    with pytest.raises(ConfigError, match="bm25_weight"):
        build_selector(index, "hybrid", {"similarity_weight": 0, "bm25_weight": 0})


# -- the selection contract ---------------------------------------------------------------
@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("k", [1, 3, 6])
def test_at_most_k_unique_ids_from_the_index(index: ExampleIndex, name: str, k: int) -> None:
    selector = make(index, name)
    for query in QUERIES:
        found = selector.select(query, k)
        check_hygiene(query, found, k)
        assert len(found) == min(k, len(allowed_texts(query)))


@pytest.mark.parametrize("name", SELECTORS)
def test_exclude_is_honoured(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    for query in QUERIES:
        first = ids(selector.select(query, 4))
        again = selector.select(query, 4, exclude=first)
        assert not set(ids(again)) & set(first)
        assert len(again) == min(4, len(allowed_texts(query, exclude=tuple(first))))
        # A lone id string is one id.
        assert first[0] not in ids(selector.select(query, 4, exclude=first[0]))


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({"label": "transfer_fee"}, lambda ex: ex.label == "transfer_fee"),
    ({"label": ["top_up", "change_pin"]}, lambda ex: ex.label in {"top_up", "change_pin"}),
    ({"topic": "account"}, lambda ex: ex.metadata["topic"] == "account"),
    ({"topic": ["card", "other"]}, lambda ex: ex.metadata["topic"] in {"card", "other"}),
    (
        {"parity": 1, "topic": "card"},
        lambda ex: (
            ex.metadata["parity"] == 1 and ex.label is not None and ex.metadata["topic"] == "card"
        ),
    ),
]


@pytest.mark.parametrize("name", SELECTORS)
@pytest.mark.parametrize("case", range(len(FILTERS)))
def test_filters_apply_before_the_top_k_cut(index: ExampleIndex, name: str, case: int) -> None:
    flt, keep = FILTERS[case]
    selector = make(index, name)
    for query in QUERIES:
        for k in (2, 5):
            found = selector.select(query, k, filter=flt)
            check_hygiene(query, found, k)
            assert all(keep(s.example) for s in found)
            # Filtered requests still return k whenever k allowed examples exist.
            assert len(found) == min(k, len(allowed_texts(query, keep)))


@pytest.mark.parametrize("name", SELECTORS)
def test_k_larger_than_the_corpus_returns_everything_allowed(
    index: ExampleIndex, name: str
) -> None:
    selector = make(index, name)
    for query in QUERIES:
        found = selector.select(query, 1000)
        check_hygiene(query, found, 1000)
        assert {normalize_text(s.example.input) for s in found} == allowed_texts(query)
        flt, keep = FILTERS[1]
        found = selector.select(query, 1000, filter=flt)
        assert {normalize_text(s.example.input) for s in found} == allowed_texts(query, keep)


@pytest.mark.parametrize("name", SELECTORS)
def test_a_filter_that_matches_nothing_returns_nothing(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    assert selector.select(QUERIES[0], 3, filter={"label": "no_such_label"}) == []
    assert selector.select(QUERIES[0], 3, filter={"topic": []}) == []
    assert selector.select(QUERIES[0], 3, filter={"label": "top_up", "topic": "card"}) == []
    everyone = [ex.id for ex in CORPUS]
    assert selector.select(QUERIES[1], 3, exclude=everyone) == []
    assert selector.select_batch(QUERIES[:3], 3, filter={"label": "none"}) == [[], [], []]


@pytest.mark.parametrize("name", SELECTORS)
def test_a_filter_on_an_unknown_field_raises(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    with pytest.raises(FilterError, match="colour"):
        selector.select(QUERIES[0], 3, filter={"colour": "red"})
    with pytest.raises(FilterError):
        selector.select(QUERIES[0], 3, filter={"topic": {"nested": 1}})


@pytest.mark.parametrize("name", SELECTORS)
def test_bad_queries_and_k_raise(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    for bad_k in (0, -1, True, 2.5):
        with pytest.raises(QueryError):
            selector.select(QUERIES[0], bad_k)  # type: ignore[arg-type]
    for bad_query in ("", "   \n"):
        with pytest.raises(QueryError):
            selector.select(bad_query, 3)
    with pytest.raises(QueryError, match="query 1"):
        selector.select_batch([QUERIES[0], " "], 3)
    assert selector.select_batch([], 3) == []


@pytest.mark.parametrize("name", SELECTORS)
def test_deterministic_across_builds(index: ExampleIndex, name: str) -> None:
    first, second = make(index, name), make(index, name)
    rebuilt = make(ExampleIndex.build(CORPUS, HashingEncoder(64)), name)
    for query in QUERIES:
        expected = first.select(query, 5)
        assert ids(second.select(query, 5)) == ids(expected)
        assert ids(rebuilt.select(query, 5)) == ids(expected)
        assert [s.score for s in rebuilt.select(query, 5)] == [s.score for s in expected]


def test_random_depends_on_the_seed(index: ExampleIndex) -> None:
    draws = {
        tuple(ids(build_selector(index, "random", {"seed": seed}).select(QUERIES[0], 5)))
        for seed in range(6)
    }
    assert len(draws) > 1


@pytest.mark.parametrize("name", SELECTORS)
def test_select_batch_equals_one_by_one(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    queries = [*QUERIES, QUERIES[0]]  # a repeated query too
    for flt in (None, FILTERS[1][0], FILTERS[2][0]):
        batch = selector.select_batch(queries, 4, filter=flt, exclude=["e01", "e09"])
        single = [selector.select(q, 4, filter=flt, exclude=["e01", "e09"]) for q in queries]
        assert [ids(found) for found in batch] == [ids(found) for found in single]
        for got, want in zip(batch, single, strict=True):
            assert [s.score for s in got] == pytest.approx([s.score for s in want], abs=1e-6)


@pytest.mark.parametrize("name", SELECTORS)
def test_the_query_text_never_comes_back(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    for example in CORPUS:
        for query in (example.input, f"  {example.input.upper()} "):
            found = selector.select(query, 6)
            twins = {
                ex.id for ex in CORPUS if normalize_text(ex.input) == normalize_text(example.input)
            }
            assert not twins & set(ids(found))
            check_hygiene(query, found, 6)


@pytest.mark.parametrize("name", SELECTORS)
def test_writes_are_seen_and_deleted_examples_never_return(name: str) -> None:
    index = ExampleIndex.build(CORPUS, HashingEncoder(64))
    selector = make(index, name)
    query = "my card PIN"
    before = ids(selector.select(query, 30))
    index.delete(before[:3])
    after = ids(selector.select(query, 30))
    assert not set(before[:3]) & set(after)
    index.add([Example(input="Reset the PIN code of my bank card", label="change_pin", id="new")])
    grown = ids(selector.select(query, 30))
    assert "new" in grown
    assert len(grown) == len(after) + 1


WORDS = ["my", "card", "pin", "transfer", "fee", "pending", "top", "up", "account"]
WORDS += ["close", "cash", "money", "arrived", "the", "a", "zebra"]


@pytest.mark.parametrize("name", SELECTORS)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    query=st.lists(
        st.sampled_from(WORDS),
        min_size=1,
        max_size=6,
    ).map(" ".join),
    k=st.integers(min_value=1, max_value=30),
    labels=st.one_of(
        st.none(),
        st.lists(st.sampled_from(sorted({ex.label for ex in CORPUS if ex.label})), max_size=3),
    ),
    exclude=st.lists(st.sampled_from([ex.id for ex in CORPUS]), max_size=4),
)
def test_contract_holds_for_any_request(
    index: ExampleIndex,
    name: str,
    query: str,
    k: int,
    labels: list[str] | None,
    exclude: list[str],
) -> None:
    selector = make(index, name)
    flt = None if labels is None else {"label": labels}
    found = selector.select(query, k, filter=flt, exclude=exclude)
    check_hygiene(query, found, k)
    assert not set(ids(found)) & set(exclude)
    if labels is not None:
        assert all(s.example.label in labels for s in found)

    def keep(ex: Example) -> bool:
        return labels is None or ex.label in labels

    assert len(found) == min(k, len(allowed_texts(query, keep, tuple(exclude))))
    assert ids(selector.select_batch([query], k, filter=flt, exclude=exclude)[0]) == ids(found)


# -- near-duplicates (issue 11) ------------------------------------------------------------------
@pytest.mark.parametrize("name", SELECTORS)
def test_the_query_text_never_comes_back_whatever_its_case_spacing_and_punctuation(
    name: str,
) -> None:
    corpus = [
        Example(input="My card hasn't arrived.", label="card_arrival", id="self"),
        Example(input="my card hasn't arrived yet, why?", label="card_arrival", id="near"),
        Example(input="How do I reset my PIN?", label="change_pin", id="pin"),
        Example(input="Where is my new card?", label="card_arrival", id="where"),
    ]
    selector = make(ExampleIndex.build(corpus, HashingEncoder(64)), name)
    for query in (
        "my card hasn't arrived",
        "MY CARD -- HASN'T ARRIVED!!",
        " my card hasn't arrived .",
    ):
        found = ids(selector.select(query, 4))
        assert "self" not in found, f"{name} returned the query's own text for {query!r}"
        assert len(found) == 3


def _cosines(index: ExampleIndex, query: str, found: list[Scored]) -> tuple[list[float], float]:
    """Each pick's cosine to the query, and the largest cosine between two picks."""
    vectors = index.encoder.encode([query, *(s.example.input for s in found)])
    to_query = (vectors[1:] @ vectors[0]).tolist()
    gram = vectors[1:] @ vectors[1:].T
    between = max((gram[i, j] for i in range(len(found)) for j in range(i)), default=-1.0)
    return to_query, float(between)


NEAR = 0.8


@pytest.mark.parametrize("name", SELECTORS)
def test_dedupe_threshold_drops_near_duplicates_before_the_top_k_cut(
    index: ExampleIndex, name: str
) -> None:
    plain = make(index, name)
    deduped = make(index, name, dedupe_threshold=NEAR)
    assert plain.params.dedupe_threshold is None, "dedupe_threshold must be off by default"
    dropped = 0
    for query in QUERIES:
        found = deduped.select(query, 6)
        check_hygiene(query, found, 6)
        to_query, between = _cosines(index, query, found)
        assert all(c < NEAR for c in to_query), f"{name}: a pick is a near-duplicate of the query"
        assert between < NEAR, f"{name}: two picks are near-duplicates of each other"
        # Applied before the cut: the request still fills k from what is left.
        everything = deduped.select(query, 1000)
        assert len(found) == min(6, len(everything))
        dropped += len(plain.select(query, 1000)) - len(everything)
    assert dropped > 0, "the corpus has near-duplicates at this threshold: some must go"


def test_dedupe_threshold_is_validated_like_every_parameter(index: ExampleIndex) -> None:
    for bad in (1.5, -0.1, "high"):
        with pytest.raises(ConfigError, match=r"'dedupe_threshold'.*valid range: \[0, 1\]"):
            build_selector(index, "similarity", {"dedupe_threshold": bad})
    assert build_selector(index, "bm25", {"dedupe_threshold": "0.9"}).params.dedupe_threshold == 0.9


# -- typed parameters ------------------------------------------------------------------------
def test_typed_params_validate_on_construction_and_match_the_mapping_form(
    index: ExampleIndex,
) -> None:
    with pytest.raises(ConfigError, match=r"'lambda'.*valid range: \[0, 1\]"):
        MMRParams(lambda_=1.5)
    with pytest.raises(ConfigError, match="takes MMRParams, got BalancedParams"):
        build_selector(index, "mmr", BalancedParams())
    typed = select(index, QUERIES[0], 3, selector="mmr", params=MMRParams(lambda_=0.3))
    mapped = select(index, QUERIES[0], 3, selector="mmr", params={"lambda": 0.3})
    assert ids(typed) == ids(mapped)
    assert ids(mapped) != ids(select(index, QUERIES[0], 3, selector="mmr", params={"lambda": 0.0}))


@pytest.mark.parametrize("name", SELECTORS)
def test_the_schema_is_generated_from_the_params_dataclass(name: str) -> None:
    cls = selector_class(name)
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    schema = cls.schema()["params"]
    assert len(schema) == len(fields)
    for p in cls.Params.fields():
        assert p.attr in fields and schema[p.name]["description"] == p.help
        assert fields[p.attr].default == p.default
    assert "dedupe_threshold" in schema


# -- composition and the view ----------------------------------------------------------------
class _PublicOnly(BaseSelector):
    """A strategy with no ``_pick``: only its public interface answers."""

    description = "test strategy reachable through its public methods only"

    def rank_batch(self, queries: Sequence[str], k: int, mask: Any) -> list[Ranking]:
        inner = build_selector(self.index, "similarity", self.params)
        return inner.rank_batch(queries, k, mask)


@pytest.fixture
def public_only() -> Iterator[str]:
    name = "test-public-only"
    register(name)(_PublicOnly)
    yield name
    _REGISTRY.pop(name)


def test_balanced_uses_its_base_through_the_public_interface(
    index: ExampleIndex, public_only: str
) -> None:
    through_public = build_selector(index, "balanced", {"base": public_only})
    reference = build_selector(index, "balanced", {"base": "similarity"})
    for query in QUERIES:
        assert ids(through_public.select(query, 4)) == ids(reference.select(query, 4))
    ensured = build_selector(index, "balanced", {"base": public_only, "ensure_labels": "top_up"})
    assert "top_up" in {s.example.label for s in ensured.select(QUERIES[0], 2)}


@pytest.mark.parametrize("name", SELECTORS)
def test_rank_batch_is_select_batch_at_slot_level(index: ExampleIndex, name: str) -> None:
    selector = make(index, name)
    view = index.view
    for flt, exclude in ((None, ()), (FILTERS[1][0], ("e01", "e02"))):
        found = selector.select_batch(QUERIES, 4, filter=flt, exclude=exclude)
        with view.reading():
            ranked = selector.rank_batch(QUERIES, 4, view.resolve(flt, exclude))
        assert all(isinstance(r, Ranking) for r in ranked)
        assert [[s.example for s in f] for f in found] == [
            view.examples_at(list(r.slots)) for r in ranked
        ]
        assert [[s.score for s in f] for f in found] == [list(r.scores) for r in ranked]


@pytest.mark.parametrize("ensure", [(), ("top_up", "terminate_account")])
def test_balanced_reads_from_the_store_only_the_examples_it_returns(
    index: ExampleIndex, ensure: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    view_class = type(index.view)
    real = view_class.examples_at
    fetched: list[int] = []

    def counting(self: Any, slots: Sequence[int]) -> list[Example]:
        fetched.append(len(slots))
        return real(self, slots)

    monkeypatch.setattr(view_class, "examples_at", counting)
    selector = build_selector(index, "balanced", {"fetch_k": 5, "ensure_labels": ensure})
    found = selector.select_batch(QUERIES[:3], 3)
    # One store read for the batch, of the 3 picks per query, not of the 5 candidates each
    # (nor of each ensured label's best) that the base strategy ranked.
    assert fetched == [sum(len(f) for f in found)] == [9]
    if ensure:
        assert all({"top_up", "terminate_account"} <= {s.example.label for s in f} for f in found)


def test_the_view_gives_each_slots_label(index: ExampleIndex) -> None:
    view = index.view
    with view.reading():
        slots = [int(s) for s in view.live_slots(None)]
        labels = view.slot_labels(slots[::-1])
    assert labels == [ex.label for ex in CORPUS[::-1]] and labels[0] is None


def test_coverage_takes_document_frequencies_from_the_lexical_index(
    index: ExampleIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kshot.selector.coverage as coverage

    calls: list[str] = []
    real = coverage.tokenize
    monkeypatch.setattr(coverage, "tokenize", lambda text: calls.append(text) or real(text))
    selector = build_selector(index, "coverage", {"fetch_k": 5})
    found = selector.select(QUERIES[0], 3)
    # The query and the pool's candidates only: the corpus is never re-tokenised.
    assert len(found) == 3 and len(calls) <= 1 + 5
    live = [set(real(ex.input)) for ex in CORPUS]
    weights = selector._weights(["card", "pin", "zebra"])  # type: ignore[attr-defined]
    for token, weight in weights.items():
        df = sum(token in doc for doc in live)
        assert weight == pytest.approx(math.log(1 + (len(CORPUS) - df + 0.5) / (df + 0.5)))


class _ViewOnly:
    """Exposes only what :class:`IndexView` declares, so a selector reaching past it fails."""

    _ALLOWED = frozenset(
        name for name in dir(IndexView) if not name.startswith("_") and name != "lexical"
    )

    def __init__(self, inner: IndexView) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    @property
    def lexical(self) -> Any:
        return self._inner.lexical

    def __getattr__(self, name: str) -> Any:
        if name not in self._ALLOWED:
            raise AttributeError(f"{name!r} is not part of the selectors' view of an index")
        return getattr(self._inner, name)


def test_slot_reads_are_the_views_not_the_index(index: ExampleIndex) -> None:
    declared = {name for name in dir(IndexView) if not name.startswith("_")}
    # The index keeps only the reads a user makes too; every slot-level read moved to its view.
    assert declared & set(dir(ExampleIndex)) == {"reading", "encode_queries"}
    for gone in ("n_slots", "slot_labels", "label_name", "label_code"):
        assert not hasattr(index, gone)
    view = index.view
    assert all(hasattr(view, name) for name in declared)
    with view.reading():
        assert len(view) == len(index) == len(view.live_slots(None))


def test_a_selector_built_over_the_index_reads_its_view(index: ExampleIndex) -> None:
    from kshot.selector.mmr import MMRSelector

    built = build_selector(index, "mmr")
    assert type(built.index).__name__ == "SlotView"
    direct = MMRSelector(index)  # the constructor asks for the view too
    on_view = build_selector(index.view, "mmr")
    for query in QUERIES:
        assert (
            ids(direct.select(query, 5))
            == ids(on_view.select(query, 5))
            == ids(built.select(query, 5))
        )


@pytest.mark.parametrize("name", SELECTORS)
def test_selectors_read_the_index_through_the_view_only(index: ExampleIndex, name: str) -> None:
    on_view = make(_ViewOnly(index.view), name, dedupe_threshold=0.95)  # type: ignore[arg-type]
    direct = make(index, name, dedupe_threshold=0.95)
    for query in QUERIES:
        for flt in (None, FILTERS[1][0]):
            assert ids(on_view.select(query, 4, filter=flt)) == ids(
                direct.select(query, 4, filter=flt)
            )
