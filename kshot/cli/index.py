"""``kshot index``: build, inspect, add to and delete from an index directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kshot.cli.options import (
    IdField,
    IndexDir,
    InputField,
    JsonFlag,
    LabelField,
    MetadataFields,
    OutputField,
    Progress,
    echo_json,
    read_corpus,
    wants_progress,
)
from kshot.distributed.commands import RayAddress, RayFlag
from kshot.errors import ConfigError

if TYPE_CHECKING:
    from kshot.corpus import Corpus
    from kshot.index import ExampleIndex

index_app = typer.Typer(help="Build, inspect and change example indexes.", no_args_is_help=True)


def _note_outputs(index: ExampleIndex, corpus: Corpus, label_field: str) -> None:
    """Record in the index that a file's labels stand in for its missing outputs."""
    if not corpus.outputs_from_label:
        return
    earlier = index.notes().get("outputs")
    text = f"the labels ({label_field!r}), as {corpus.path.name} has no 'output' field"
    index.set_note("outputs", text if earlier is None else f"{earlier}; {text}")


@index_app.command("build")
def index_build(
    source: Annotated[Path, typer.Argument(help="Corpus: .jsonl, .csv, .tsv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index directory to create.")],
    input_field: InputField = "input",
    output_field: OutputField = None,
    label_field: LabelField = "label",
    id_field: IdField = "id",
    metadata_fields: MetadataFields = "",
    model: Annotated[
        str | None,
        typer.Option(help="sentence-transformers model name or path ('hashing:DIM' for tests)."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, mps.")] = "auto",
    factory: Annotated[
        str | None,
        typer.Option(
            help="FAISS factory string (default: by corpus size): 'Flat' (exact), "
            "'IVF1024,Flat', or compressed, keeping no float32 vectors in memory: 'SQ8', "
            "'IVF4096,SQ8', 'IVF1024,PQ48' (PQ inside IVF; M must divide the dimension; "
            "'PQ48x4': 4 bits). "
            "Approximate ones get their recall@10 measured (see `index info`)."
        ),
    ] = None,
    mmap: Annotated[
        bool,
        typer.Option(
            "--mmap/--no-mmap",
            help="Loads map the vector file (paged in by the OS) instead of reading it in.",
        ),
    ] = False,
    embeddings: Annotated[
        Path | None, typer.Option(help="Precomputed embeddings (.npy, one row per example).")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing index.")] = False,
    progress: Progress = None,
    use_ray: RayFlag = False,
    ray_address: RayAddress = None,
    ray_actors: Annotated[
        int | None, typer.Option(help="Ray encoder actors (default: one per GPU, else per CPU).")
    ] = None,
) -> None:
    """Embed a corpus (.jsonl, .csv, .tsv or .parquet) and write an index directory."""
    import time

    import numpy as np

    from kshot.index import DEFAULT_MODEL, ExampleIndex, encoder_from_name

    corpus = read_corpus(source, input_field, output_field, label_field, id_field, metadata_fields)
    vectors = None if embeddings is None else np.load(embeddings, mmap_mode="r")
    encoder = encoder_from_name(model or DEFAULT_MODEL, device=device)
    started = time.perf_counter()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite to replace it")
    if use_ray or ray_address is not None:
        from kshot.distributed.commands import embed_on_ray

        vectors = embed_on_ray(
            corpus, encoder, embeddings, ray_address, device, ray_actors, progress
        )
    index = ExampleIndex.build(
        corpus.examples,
        encoder,
        embeddings=vectors,
        factory=factory,
        show_progress=wants_progress(progress, len(corpus.examples)),
        mmap=mmap,
    )
    _note_outputs(index, corpus, label_field)
    index.save(out, overwrite=overwrite)
    seconds = time.perf_counter() - started
    typer.echo(
        f"indexed {len(index)} examples into {out} in {seconds:.1f} s "
        f"({len(index) / max(seconds, 1e-9):.0f} rows/s; {index.factory}, {index.encoder_name})"
    )


@index_app.command("info")
def index_info(path: IndexDir, as_json: JsonFlag = False) -> None:
    """Show what an index holds."""
    from kshot.index import ExampleIndex

    with ExampleIndex.load(path, read_only=True) as index:
        info = index.info()
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        if key == "labels":
            top = sorted(value.items(), key=lambda item: -item[1])[:10]
            more = f" (+{len(value) - 10} more)" if len(value) > 10 else ""
            value = ", ".join(f"{k}: {v}" for k, v in top) + more
        elif key == "notes":
            if not value:
                continue
            value = "; ".join(f"{topic}: {text}" for topic, text in value.items())
        typer.echo(f"{key:14} {value}")


@index_app.command("add")
def index_add(
    path: IndexDir,
    source: Annotated[
        Path, typer.Argument(help="Corpus with the examples to add: the formats of build.")
    ],
    input_field: InputField = "input",
    output_field: OutputField = None,
    label_field: LabelField = "label",
    id_field: IdField = "id",
    metadata_fields: MetadataFields = "",
    progress: Progress = None,
) -> None:
    """Add examples from a corpus file (.jsonl, .csv, .tsv or .parquet) to an index."""
    from kshot.index import ExampleIndex

    corpus = read_corpus(source, input_field, output_field, label_field, id_field, metadata_fields)
    with ExampleIndex.load(path) as index:
        ids = index.add(
            corpus.examples, show_progress=wants_progress(progress, len(corpus.examples))
        )
        _note_outputs(index, corpus, label_field)
        index.save()
        typer.echo(f"added {len(ids)} examples; the index holds {len(index)}")


@index_app.command("delete")
def index_delete(
    path: IndexDir, ids: Annotated[list[str], typer.Argument(help="Example ids to delete.")]
) -> None:
    """Delete examples by id (no rebuild)."""
    from kshot.index import ExampleIndex

    with ExampleIndex.load(path) as index:
        removed = index.delete(ids)
        index.save()
        typer.echo(f"deleted {removed} examples; the index holds {len(index)}")


@index_app.command("tune")
def index_tune(
    path: IndexDir,
    queries: Annotated[
        Path,
        typer.Argument(
            help="Real queries, held out from the corpus (.jsonl, .csv, .tsv or .parquet)."
        ),
    ],
    input_field: Annotated[str, typer.Option(help="Column holding the query text.")] = "input",
    target: Annotated[
        float | None,
        typer.Option(help="recall@10 to reach (default: the build's, 0.95 unless set)."),
    ] = None,
) -> None:
    """Measure recall@10 on real queries and tune nprobe to the target; saved in the manifest."""
    from kshot.index import ExampleIndex

    corpus = read_corpus(queries, input_field, input_field, "label", "id", "")
    texts = [example.input for example in corpus.examples]
    with ExampleIndex.load(path) as index:
        recall = index.tune(texts, target=target)
        index.save()
        nprobe = index.info()["nprobe"]
        typer.echo(
            f"recall@10 {recall:.3f} on {len(texts)} queries ({index.factory}"
            + (f", nprobe {nprobe})" if nprobe else ")")
        )
