"""Typed selector parameters: a frozen dataclass per selector that also generates its schema.

Each selector declares its parameters as fields of a :class:`SelectorParams` subclass, each field
made with :func:`param` (default, help, range). The field types give the parameter types
(``Literal[...]`` gives the valid values), so one declaration yields the Python type, the
validation and the :class:`Param` schema that ``kshot selectors`` and ``GET /v1/selectors`` list.
Python, CLI (``--param name=value``, strings) and HTTP (``"params": {...}``, JSON) all go through
:meth:`SelectorParams.from_mapping`, so they accept and refuse the same values with the same
message.

A parameter's name is the same everywhere; the one exception is forced by Python: ``lambda`` is
a keyword, so its dataclass field is ``lambda_`` (PEP 8's trailing underscore), while mappings,
the CLI, HTTP and the schema say ``lambda``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

from kshot.errors import ConfigError

__all__ = ["Param", "SelectorParams", "param"]

_META = "kshot.param"


@dataclass(frozen=True)
class _Info:
    help: str
    name: str | None
    minimum: float | None
    maximum: float | None


def param(
    default: Any,
    help: str,
    *,
    name: str | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> Any:
    """A :class:`SelectorParams` field: its default, meaning and range.

    ``name`` overrides the external name when the field name cannot be it (``lambda_``).
    """
    return dataclasses.field(default=default, metadata={_META: _Info(help, name, minimum, maximum)})


@dataclass(frozen=True)
class Param:
    """One parameter of a selector: its name, type, default, range and meaning."""

    name: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    attr: str = ""

    def coerce(self, owner: str, value: Any) -> Any:
        """Convert ``value`` (possibly a CLI string) to this parameter's type and check range."""
        if value is None and self.nullable:
            return None
        where = f"{owner} parameter {self.name!r}"
        try:
            converted = _convert(self.kind, value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{where} must be {self.type_name()}, got {value!r}; {self.describe_range()}",
                field=self.name,
                value=value,
                valid=self.choices,
            ) from exc
        if isinstance(converted, float) and not math.isfinite(converted):
            raise ConfigError(
                f"{where} must be finite, got {value!r}; {self.describe_range()}",
                field=self.name,
                value=value,
            )
        out_of_range = (self.minimum is not None and converted < self.minimum) or (
            self.maximum is not None and converted > self.maximum
        )
        if out_of_range or (self.choices is not None and converted not in self.choices):
            raise ConfigError(
                f"{where} is {converted!r}; {self.describe_range()}",
                field=self.name,
                value=value,
                valid=self.choices,
            )
        return converted

    def type_name(self) -> str:
        """The JSON-schema name of the type (``number``, ``array``, ...)."""
        names = {int: "integer", float: "number", str: "string", bool: "boolean", tuple: "array"}
        return names.get(self.kind, self.kind.__name__)

    def describe_range(self) -> str:
        """The valid values in words."""
        if self.choices is not None:
            return f"valid values: {', '.join(self.choices)}"
        if self.kind in (int, float):
            low = "-inf" if self.minimum is None else f"{self.minimum:g}"
            high = "inf" if self.maximum is None else f"{self.maximum:g}"
            unset = " or null (off)" if self.nullable else ""
            return f"valid range: [{low}, {high}]{unset}"
        return f"expected a {self.type_name()}"

    def schema(self) -> dict[str, Any]:
        """A JSON-schema-like description, for ``kshot selectors`` and ``GET /v1/selectors``."""
        default = list(self.default) if isinstance(self.default, tuple) else self.default
        out: dict[str, Any] = {
            "type": [self.type_name(), "null"] if self.nullable else self.type_name(),
            "default": default,
            "description": self.help,
        }
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices is not None:
            out["enum"] = list(self.choices)
        return out


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
            return value.lower() in {"true", "1", "yes"}
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is tuple:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(value)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    raise TypeError(kind)


def _param_of(field: dataclasses.Field[Any], hint: Any) -> Param:
    info = field.metadata.get(_META)
    if not isinstance(info, _Info):
        raise TypeError(f"field {field.name!r} must be declared with kshot.selector.param(...)")
    nullable = False
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        nullable = True
        (hint,) = [a for a in args if a is not type(None)]
    choices: tuple[str, ...] | None = None
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = tuple(str(a) for a in typing.get_args(hint))
        kind: type = str
    elif origin is tuple:
        kind = tuple
    else:
        kind = hint
    return Param(
        name=info.name or field.name,
        kind=kind,
        default=field.default,
        help=info.help,
        minimum=info.minimum,
        maximum=info.maximum,
        choices=choices,
        nullable=nullable,
        attr=field.name,
    )


@dataclass(frozen=True)
class SelectorParams:
    """The parameters every selector takes; each selector's own class adds its fields."""

    dedupe_threshold: float | None = param(
        None,
        "drop candidates whose embedding cosine to the query or to an earlier pick is at least "
        "this, before the top-k cut (null: off)",
        minimum=0.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        # Direct construction is validated like a mapping (strings from a CLI convert too).
        owner = type(self).__name__
        for p in self.fields():
            object.__setattr__(self, p.attr, p.coerce(owner, getattr(self, p.attr)))

    @classmethod
    def fields(cls) -> tuple[Param, ...]:
        """The parameters, in declaration order."""
        return _fields_of(cls)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, selector: str) -> Self:
        """Validate ``{name: value}`` (JSON or CLI strings) for the selector named ``selector``."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"selector {selector!r} parameters must be a mapping of name to value, "
                f"got {type(values).__name__}"
            )
        known = {p.name: p for p in cls.fields()}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ConfigError(
                f"selector {selector!r} has no parameter {unknown[0]!r}; "
                f"valid parameters: {', '.join(known)}",
                field=unknown[0],
                value=next(v for key, v in values.items() if str(key) == unknown[0]),
                valid=tuple(known),
            )
        owner = f"selector {selector!r}"
        return cls(**{known[n].attr: known[n].coerce(owner, v) for n, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """The parameters by external name, JSON-ready."""
        out: dict[str, Any] = {}
        for p in self.fields():
            value = getattr(self, p.attr)
            out[p.name] = list(value) if isinstance(value, tuple) else value
        return out


_FIELDS: dict[type[SelectorParams], tuple[Param, ...]] = {}


def _fields_of(cls: type[SelectorParams]) -> tuple[Param, ...]:
    # Resolved once per class: type hints are strings under postponed evaluation.
    found = _FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        found = _FIELDS[cls] = tuple(_param_of(f, hints[f.name]) for f in dataclasses.fields(cls))
    return found
