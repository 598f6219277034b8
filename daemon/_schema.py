"""Build typed, frozen dataclasses from TOML data, strictly.

The configuration is declared as dataclasses (see `_config`); this module
turns a parsed TOML mapping into them. Unknown keys, wrong types and missing
required keys are errors naming the file, the key path and what was
expected — never silently ignored. Fields needing more than a type check carry
a converter in ``Annotated`` metadata (`Convert`), e.g. durations and sizes.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .exceptions import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Convert:
    """``Annotated`` marker: convert the raw TOML value with ``function``.

    ``function(value, context)`` returns the converted value or raises
    ValueError/TypeError, whose message becomes the error's "expected" part.
    """

    function: Callable[[Any, Context], Any]


@dataclass(frozen=True)
class Context:
    """What converters may need: the config file and the key being read."""

    file: Path
    key: str

    @property
    def base_dir(self) -> Path:
        """Relative paths in the config resolve against the config file's directory."""
        return self.file.parent

    def error(self, message: str) -> ConfigError:
        """A ConfigError naming the file and, below the top level, the key."""
        where = f"{self.file}: {self.key}" if self.key else str(self.file)
        return ConfigError(f"{where}: {message}")


def build(cls: type[T], data: Any, context: Context) -> T:
    """Return an instance of dataclass ``cls`` built from ``data``.

    Raises ConfigError naming ``context.file`` and the key path.
    """
    return typing.cast(T, _convert(cls, data, context))


def _convert(annotation: Any, value: Any, context: Context) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        converter = next((e for e in extras if isinstance(e, Convert)), None)
        if converter is None:
            return _convert(base, value, context)
        try:
            return converter.function(value, context)
        except (ValueError, TypeError) as exc:
            raise context.error(str(exc)) from exc
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        return _build_dataclass(annotation, value, context)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(annotation, value, context)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise context.error(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item_type, *_) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise context.error(f"expected a list, got {_describe(value)}")
        items = [
            _convert(item_type, item, _child(context, f"[{index}]"))
            for index, item in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if origin is dict or origin is Mapping:
        _, item_type = typing.get_args(annotation)
        if not isinstance(value, dict):
            raise context.error(f"expected a table, got {_describe(value)}")
        return {
            key: _convert(item_type, item, _child(context, f".{_quote(key)}"))
            for key, item in value.items()
        }
    return _convert_plain(annotation, value, context)


def _build_dataclass(cls: type, data: Any, context: Context) -> Any:
    if not isinstance(data, dict):
        raise context.error(f"expected a table, got {_describe(data)}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _child(context, f".{_quote(unknown[0])}").error(
            f"unknown key; expected one of {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        child = _child(context, f".{name}")
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], child)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise child.error("required key is missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        # __post_init__ checks that involve several keys raise ValueError.
        raise context.error(str(exc)) from exc


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types, read once per class (resolving is slow)."""
    return typing.get_type_hints(cls, include_extras=True)


def _convert_union(annotation: Any, value: Any, context: Context) -> Any:
    options = typing.get_args(annotation)
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _convert(option, value, context)
        except ConfigError as exc:
            errors.append(exc)
    raise errors[0]


_PLAIN_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def _convert_plain(annotation: Any, value: Any, context: Context) -> Any:
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise context.error(f"expected an integer, got {value!r}")
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    expected = _PLAIN_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    raise context.error(f"expected {expected}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(value))
    return f"{kind or type(value).__name__} {value!r}"


def _child(context: Context, suffix: str) -> Context:
    return Context(file=context.file, key=f"{context.key}{suffix}" if context.key else suffix[1:])


def _quote(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else f'"{key}"'
