"""What the commands share: option types and the parsers of their values.

The parsers live here, below every command module, so :mod:`kshot.distributed.commands` can be
handed them and ``select-batch`` reads its options as ``kshot select`` does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kshot.errors import ConfigError
from kshot.index.filters import LABEL_FIELD

if TYPE_CHECKING:
    from kshot.corpus import Corpus

__all__ = [
    "Excludes",
    "Filters",
    "IdField",
    "IndexDir",
    "InputField",
    "JsonFlag",
    "K",
    "LabelField",
    "MetadataFields",
    "OutputField",
    "Params",
    "Progress",
    "SelectorName",
    "echo_json",
    "parse_choice",
    "read_corpus",
    "template_fields",
    "wants_progress",
]

IndexDir = Annotated[Path, typer.Argument(help="Index directory.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON, non-ASCII text as it is."""
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _parse_value(text: str) -> Any:
    """A CLI value: JSON when it parses (numbers, true, quoted strings), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {pair!r} must look like name=value")
        out[key] = value if what == "--param" else _parse_value(value)
    return out


def _parse_filter(pairs: list[str]) -> dict[str, Any] | None:
    """Repeating ``--filter field=value`` for one field means membership (any of the values)."""
    merged: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--filter {pair!r} must look like field=value")
        # Labels are always text: `label=5` means the label "5", not the number.
        merged.setdefault(key, []).append(value if key == LABEL_FIELD else _parse_value(value))
    return {k: v[0] if len(v) == 1 else v for k, v in merged.items()} or None


# How corpus messages name the field options: as the flags of this command line.
_FIELD_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in ("input_field", "output_field", "label_field", "id_field", "metadata_fields")
}


def read_corpus(
    source: Path,
    input_field: str,
    output_field: str | None,
    label_field: str,
    id_field: str,
    metadata_fields: str,
) -> Corpus:
    """The corpus in ``source``, its errors naming the field options as this CLI spells them."""
    from kshot.corpus import read_corpus

    return read_corpus(
        source,
        input_field=input_field,
        output_field=output_field,
        label_field=label_field,
        id_field=id_field,
        metadata_fields=[f for f in metadata_fields.split(",") if f] or None,
        option_names=_FIELD_FLAGS,
    )


def wants_progress(flag: bool | None, rows: int) -> bool:
    """``--progress`` / ``--no-progress``, else a bar for a few hundred rows on a terminal."""
    from kshot.index.encoder import PROGRESS_MIN_ROWS

    if flag is not None:
        return flag
    return rows > PROGRESS_MIN_ROWS and sys.stderr.isatty()


InputField = Annotated[str, typer.Option(help="Column holding the example input.")]
OutputField = Annotated[
    str | None,
    typer.Option(
        help="Column holding the example output (default: output; a file without one uses the "
        "label as the output)."
    ),
]
LabelField = Annotated[str, typer.Option(help="Column holding the label.")]
IdField = Annotated[str, typer.Option(help="Column holding the example id.")]
MetadataFields = Annotated[
    str, typer.Option(help="Comma-separated columns to keep as metadata (JSONL: plus 'metadata').")
]
Progress = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Progress bar while embedding (default: above a few hundred rows on a terminal).",
        show_default=False,
    ),
]

K = Annotated[int, typer.Option("-k", "--k", help="How many examples.")]
SelectorName = Annotated[str, typer.Option("--selector", "-s", help="A registered selector.")]
Params = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Selector parameter name=value.")
]
Filters = Annotated[
    list[str] | None,
    typer.Option("--filter", "-f", help="field=value; repeat a field for any-of."),
]
Excludes = Annotated[list[str] | None, typer.Option("--exclude", help="Example id to leave out.")]


def parse_choice(
    selector: str, param: list[str] | None, filter: list[str] | None, exclude: list[str] | None
) -> dict[str, Any]:
    """The selection options, parsed once for a local index and a server alike."""
    return {
        "selector": selector,
        "params": _parse_pairs(param or [], "--param"),
        "filter": _parse_filter(filter or []),
        "exclude": exclude or [],
    }


def template_fields(**given: str | None) -> dict[str, str]:
    r"""The template options given, as PromptTemplate fields, with \n and \t unescaped."""
    return {
        name: value.replace("\\n", "\n").replace("\\t", "\t")
        for name, value in given.items()
        if value is not None
    }
