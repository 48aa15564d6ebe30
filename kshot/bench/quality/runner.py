"""One quality run: prepare the data and the index, run each arm not yet finished, write reports.

Output directory::

    results.json         every number, the full config, seeds, environment (versions, machine)
    results.md           one table (one per training-set size N): arm, k, accuracy, macro-F1,
                         prompt tokens, s/query, training s
    accuracy_vs_k.png    a line per strategy; fine-tuned baselines as horizontal lines
    accuracy_vs_n.png    with ``train_sizes``: accuracy against N, a line per arm
    arms/<arm>.json      one file per finished arm (with its predictions); a rerun skips these
    run.log              appended by the command-line runner
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kshot._files import atomic_write_bytes
from kshot._version import __version__
from kshot.bench.environment import capture_environment
from kshot.bench.quality.arms import Arm, ArmRecord, ArmStore, arm_key, plan, size_prefix
from kshot.bench.quality.cache import Embedded, cache_key, cache_root, embed_cached, write_json
from kshot.bench.quality.config import FULL_SIZE, SCHEMA_VERSION, QualityConfig
from kshot.bench.quality.data import (
    class_key,
    fingerprint,
    label_space,
    load_splits,
    remove_leaks,
    stratified_limit,
)
from kshot.bench.quality.embedding import run_embedding
from kshot.bench.quality.endpoint import instructions_for, load_endpoint, model_info
from kshot.bench.quality.finetune import FineTuner
from kshot.bench.quality.icl import InContextEvaluator
from kshot.bench.quality.modes import ModeInputs, run_mode_arm
from kshot.bench.quality.plot import plot_accuracy_vs_k, plot_accuracy_vs_n
from kshot.bench.quality.report import markdown, recommendation, summary
from kshot.bench.quality.training import dev_size
from kshot.types import Example

if TYPE_CHECKING:
    from tqdm import tqdm

    from kshot.index import ExampleIndex
    from kshot.model.base import LanguageModel
    from kshot.model.transformers_lm import TransformersLM
    from kshot.prompt import PromptAssembler

__all__ = ["Pool", "Runner", "run_quality"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pool:
    """The labelled rows of one training-set size, which every arm of that size learns from.

    They are the in-context pool (the index the arms select from, the embedding baselines'
    data) and the fine-tuned baselines' data. ``size``: the ``train_sizes`` value (``None``:
    the run has no sizes).
    """

    size: int | str | None
    rows: list[Example]
    embedded: Embedded
    index: ExampleIndex
    data_key: dict[str, str]


def run_quality(config: QualityConfig) -> Path:
    """Run the quality benchmark described by ``config``; return the results directory.

    Finished arms are stored one file each under ``<out_dir>/arms/`` as they complete; a rerun
    with the same settings skips them, and trained weights are reused from the cache.
    """
    return Runner(config).run()


class Runner:
    """Runs one quality benchmark; see :func:`run_quality`."""

    def __init__(self, config: QualityConfig) -> None:
        self.config = config
        self.out = Path(config.out_dir)
        self.store = ArmStore(self.out / "arms")
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self._lm: TransformersLM | None = None
        self._icl_lm: LanguageModel | None = None
        self._assembler: PromptAssembler | None = None
        self._progress: tqdm[Any] | None = None

    # -- setup ---------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Load and limit the data, embed it (cached) and build the index."""
        c = self.config
        if c.torch_threads is not None:
            import torch

            torch.set_num_threads(c.torch_threads)
        splits = load_splits(c)
        self.data_name = splits.name
        self.data_title = splits.title
        self.full_train_size = len(splits.train)
        test = stratified_limit(splits.test, c.limit_test, c.seed)
        train, dropped = remove_leaks(splits.train, test)
        if dropped:
            logger.warning("removed %d training rows that are test rows", len(dropped))
        self.leaks_removed = dropped
        self.train = stratified_limit(train, c.limit_train, c.seed)
        self.test = test
        self.space = label_space(self.train, self.test)
        self.gold = [class_key(ex) for ex in self.test]
        self.data_key = {
            "name": self.data_name,
            "train": fingerprint(self.train),
            "test": fingerprint(self.test),
        }
        from kshot.index import DEFAULT_MODEL, encoder_from_name

        started = time.perf_counter()
        self.encoder = encoder_from_name(c.encoder or DEFAULT_MODEL, device=c.device)
        self.test_emb = self._embed(self.test, "test")
        self._pools: dict[int | str | None, Pool] = {}
        if not c.train_sizes:
            # Without sizes the one pool is the whole training split, built now (as always).
            self.pool(None)
        self.index_seconds = time.perf_counter() - started
        logger.info(
            "data %s: %d train, %d test, %d labels; index in %.1f s",
            self.data_name,
            len(self.train),
            len(self.test),
            len(self.space.labels),
            self.index_seconds,
        )

    def pool(self, size: int | str | None) -> Pool:
        """The pool of training-set size ``size`` (built once): a seeded stratified subset.

        The subsets of the sizes are nested (a smaller N keeps rows of a larger one), since
        :func:`~kshot.bench.quality.data.stratified_limit` ranks the rows the same for every N.
        """
        if size in self._pools:
            return self._pools[size]
        from kshot.index import ExampleIndex

        c = self.config
        n = None if size in (None, FULL_SIZE) else int(size)
        rows = stratified_limit(self.train, n, c.seed)
        key = {"name": self.data_name, "train": fingerprint(rows), "test": self.data_key["test"]}
        embedded = self._embed(rows, "train", key["train"])
        index = ExampleIndex.build(rows, self.encoder, embeddings=embedded.vectors)
        self._pools[size] = Pool(size, rows, embedded, index, key)
        if size is None:
            self.train_emb = embedded
        else:
            logger.info("training-set size %s: %d rows in the pool", size, len(rows))
        return self._pools[size]

    def _embed(self, rows: Sequence[Example], split: str, rows_key: str | None = None) -> Embedded:
        """Embed ``rows``, cached on disk by encoder and rows (the seconds are the first run's)."""
        key = cache_key({"encoder": self.encoder.name, "rows": rows_key or self.data_key[split]})
        path = cache_root(self.config.weights_dir) / "embeddings"
        return embed_cached(
            self.encoder,
            [ex.input for ex in rows],
            path / f"{self.data_name}-{split}-{key}.npz",
            show_progress=self.config.progress and len(rows) > 500,
        )

    def lm(self) -> TransformersLM:
        """The language model of the in-context arms, loaded once."""
        if self._lm is None:
            self._lm = self._load_lm()
        return self._lm

    def icl_lm(self) -> LanguageModel:
        """The model of the zero-shot and in-context arms: the endpoint, else :meth:`lm`."""
        if self._icl_lm is None:
            endpoint = self.config.endpoint_model is not None
            self._icl_lm = load_endpoint(self.config) if endpoint else self.lm()
        return self._icl_lm

    def _load_lm(self, dtype: str | None = None) -> TransformersLM:
        from kshot.model.transformers_lm import TransformersLM

        return TransformersLM(
            self.config.model,
            device=self.config.device,
            dtype=dtype,
            seed=self.config.seed,
            batch_size=self.config.lm_batch_size,
        )

    def assembler(self) -> PromptAssembler:
        """The prompt assembler (with the language model's token counter), built once."""
        if self._assembler is None:
            from kshot.prompt import HFTokenCounter, PromptAssembler, PromptTemplate

            c = self.config
            template = PromptTemplate(
                instructions=instructions_for(c, self.space.texts),
                example=c.example_template,
                query=c.query_template,
                separator=c.separator,
            )
            # An endpoint's tokenizer is unknown; the bundled one (the default) stands in.
            counter = None if c.endpoint_model else HFTokenCounter(self.lm().tokenizer)
            self._assembler = PromptAssembler(template, counter)
        return self._assembler

    def evaluator(self) -> InContextEvaluator:
        """The evaluation of LM arms on this run's test queries."""
        return InContextEvaluator(
            self.config, self.test, self.gold, self.space, self.assembler(), self._advance
        )

    # -- arms ----------------------------------------------------------------------------------

    def arm_key(self, arm: Arm) -> str:
        """The digest stored in the arm's file (see :func:`~kshot.bench.quality.arms.arm_key`)."""
        pool = self.pool(arm.train_size)
        return arm_key(self.config, arm, pool.data_key, len(pool.rows))

    def arm_units(self, arm: Arm) -> int:
        """Progress units of an arm: its test queries, plus training steps for LM baselines."""
        c = self.config
        n = len(self.test)
        if arm.kind == "finetune":
            rows = len(self.pool(arm.train_size).rows)
            if c.early_stopping:
                rows -= dev_size(rows, c.dev_fraction, c.dev_max)
                n += c.max_epochs * -(-rows // c.train_batch_size)
            else:
                n += c.train_steps(arm.name, rows)
        return n

    def fine_tuner(self, size: int | str | None) -> FineTuner:
        """The fine-tuned baselines of training-set size ``size`` (trained in float32)."""
        load = functools.partial(self._load_lm, dtype="float32")
        return FineTuner(self.config, self.pool(size).rows, self.assembler(), load, self._advance)

    def run(self) -> Path:
        """Run every arm not finished yet; return the results directory."""
        from tqdm.auto import tqdm

        self.prepare()
        arms = plan(self.config)
        self.store.folder.mkdir(parents=True, exist_ok=True)
        done: dict[str, ArmRecord] = {}
        todo: list[Arm] = []
        for arm in arms:
            record = self.store.load(arm, self.arm_key(arm))
            if record is None:
                todo.append(arm)
            else:
                done[arm.id] = record
        logger.info("%d arms: %d already finished, %d to run", len(arms), len(done), len(todo))
        self._progress = tqdm(
            total=sum(self.arm_units(a) for a in todo),
            desc=f"quality {self.data_name}",
            unit="step",
            disable=not self.config.progress,
            dynamic_ncols=True,
            # In a log file (nohup), one line every half minute rather than a stream of updates.
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
        )
        try:
            for arm in todo:
                record, ran = self._run_claimed(arm)
                if record is not None:
                    done[arm.id] = record
                if ran:
                    self.write_reports(arms, done, finished=False)
        finally:
            self._progress.close()
        for arm in arms:  # arms that runs sharing the folder finished while this one ran
            if arm.id not in done and (record := self.store.load(arm, self.arm_key(arm))):
                done[arm.id] = record
        return self.write_reports(arms, done, finished=True)

    def _run_claimed(self, arm: Arm) -> tuple[ArmRecord | None, bool]:
        """Run ``arm`` unless another run finished it or holds its claim.

        Returns the arm's record (``None``: another run holds it) and whether this run ran it.
        """
        assert self._progress is not None
        # Another run sharing this results folder may have finished the arm meanwhile, or be
        # running it now (it holds the arm's claim file).
        record = self.store.load(arm, self.arm_key(arm))
        claim = None if record is not None else self.store.claim(arm)
        if claim is None:
            logger.info("arm %s: finished or running in another run; skipped", arm.id)
            self._progress.update(self.arm_units(arm))
            return record, False
        try:
            self._progress.set_postfix_str(arm.id)
            logger.info("running arm %s", arm.id)
            record = self.run_arm(arm)
            record["key"] = self.arm_key(arm)
            self.store.save(arm, record)
        finally:
            claim.unlink(missing_ok=True)
        logger.info(
            "arm %s: accuracy %.3f, macro-F1 %.3f, %.3f s/query",
            arm.id,
            record["accuracy"],
            record["macro_f1"],
            record["seconds_per_query"],
        )
        return record, True

    def run_arm(self, arm: Arm) -> ArmRecord:
        """Run one arm (no file, no claim); return its record."""
        record = self._run_arm(arm)
        if arm.train_size is not None:
            record["n_train"] = len(self.pool(arm.train_size).rows)
        return record

    def _run_arm(self, arm: Arm) -> ArmRecord:
        pool = self.pool(arm.train_size)
        if arm.kind == "embedding":
            train_y = [class_key(ex) for ex in pool.rows]
            return run_embedding(
                arm, self.config, pool.embedded, train_y, self.test_emb, self.gold, self._advance
            )
        if arm.kind == "finetune":
            return self.fine_tuner(arm.train_size).run(arm, self.evaluator())
        if arm.mode is not None:
            inputs = ModeInputs(pool.rows, pool.embedded, self.test_emb)
            return run_mode_arm(self.evaluator(), arm, pool.index, self.lm(), inputs)
        return self.evaluator().run_icl(arm, pool.index, self.icl_lm())

    def _advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(n)

    # -- reports -------------------------------------------------------------------------------

    def write_reports(
        self, arms: Sequence[Arm], done: Mapping[str, ArmRecord], *, finished: bool
    ) -> Path:
        """Write ``results.json``, ``results.md`` and the plot from the finished arms."""
        c = self.config
        records = [
            {k: v for k, v in done[a.id].items() if k != "predictions"}
            for a in arms
            if a.id in done
        ]
        rows = summary(records)
        lm = self._lm
        local = c.endpoint_model is None
        if lm is None and local and finished and any(r["kind"] != "embedding" for r in records):
            lm = self.lm()  # every LM arm was resumed; load the model (cached: ~1 s) to describe it
        device = lm.device if lm is not None else getattr(self.encoder, "device", c.device)
        result: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kshot_version": __version__,
            "started": self.started,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "finished": finished and len(records) == len(arms),
            "config": c.to_dict(),
            "seeds": {
                "seed": c.seed,
                "random_seeds": list(c.random_seeds),
                "note": "seed drives the data limits, training order and initialisation",
            },
            "data": {
                "name": self.data_name,
                "title": self.data_title,
                "test_split": c.test_split if c.train_file is None else c.test_file,
                "train_rows_available": self.full_train_size,
                "train_rows": len(self.train),
                "test_rows": len(self.test),
                "labels": len(self.space.labels),
                "leakage_rows_removed": len(self.leaks_removed),
                "fingerprint": self.data_key,
                **({"train_sizes": self._size_rows()} if c.train_sizes else {}),
                "label_texts": dict(zip(self.space.labels, self.space.texts, strict=True)),
            },
            "prompt": {
                "instructions": instructions_for(c, self.space.texts),
                "format": "text" if local else "chat",
                "example_template": c.example_template,
                "query_template": c.query_template,
                "separator": c.separator,
                "label_continuation": "' ' + output",
            },
            "model": model_info(lm, c),
            "encoder": {
                "name": self.encoder.name,
                "dim": self.encoder.dim,
                "train_embed_seconds": (
                    self.train_emb.seconds
                    if not c.train_sizes
                    else sum(self.pool(s).embedded.seconds for s in c.train_sizes)
                ),
                "test_embed_seconds": self.test_emb.seconds,
                "index_seconds": self.index_seconds,
            },
            "environment": capture_environment(c.to_dict(), str(device)),
            "arms_planned": [a.id for a in arms],
            "arms": records,
            "summary": rows,
        }
        write_json(self.out / "results.json", result)
        report = markdown(result) + recommendation(result)
        atomic_write_bytes(self.out / "results.md", report.encode("utf-8"))
        try:
            # Against k: the last configured training-set size with finished arms.
            present = [s for s in c.train_sizes if any(r.get("train_size") == s for r in rows)]
            size = present[-1] if present else None
            title = self.data_title + ("" if size is None else f", N = {size}")
            chosen = [r for r in rows if r.get("train_size") == size]
            plot_accuracy_vs_k(chosen, self.out / "accuracy_vs_k.png", title=title)
            if c.train_sizes:
                plot_accuracy_vs_n(rows, self.out / "accuracy_vs_n.png", title=self.data_title)
        except ImportError:  # pragma: no cover - matplotlib is in the bench extra
            logger.warning("matplotlib is not installed; skipping the plots")
        return self.out

    def _size_rows(self) -> list[dict[str, Any]]:
        """Per training-set size: its rows, the fine-tuned arms' dev rows, the fingerprint."""
        c = self.config
        out = []
        for size in c.train_sizes:
            pool = self.pool(size)
            n_dev = dev_size(len(pool.rows), c.dev_fraction, c.dev_max) if c.early_stopping else 0
            out.append(
                {
                    "size": size,
                    "arm_prefix": size_prefix(size),
                    "rows": len(pool.rows),
                    "fine_tune_train_rows": len(pool.rows) - n_dev,
                    "fine_tune_dev_rows": n_dev,
                    "fingerprint": pool.data_key["train"],
                }
            )
        return out
