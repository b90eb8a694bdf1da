"""Options as dataclasses that validate, document themselves and generate their CLI flags.

An options class is a dataclass whose fields are declared with :func:`option`: a default, a help
text, and the type hint. From that one definition come

- :func:`from_mapping`: a TOML table (or any dict) checked key by key against the type hints;
- :func:`add_arguments` / :func:`overrides`: ``--flag`` per field for ``argparse``;
- :func:`describe`: the text of a docstring or a ``--help``.

Range checks live in the class's own ``validate()`` method, which every path calls. Every problem
raises :class:`~sslth.errors.ConfigError` naming the key (the idea follows open_lth's hparams).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from sslth.errors import ConfigError

C = TypeVar("C")
_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    help: str,
    default_factory: Any = _MISSING,
    cli: bool = True,
) -> Any:
    """A dataclass field with its help text (``cli=False`` keeps it off the command line)."""
    metadata = {"help": help, "cli": cli}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _describe_hint(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a non-empty list of {_describe_hint(typing.get_args(hint)[0])}s"
    if origin in (typing.Union, types.UnionType):
        parts = [_describe_hint(a) for a in typing.get_args(hint) if a is not type(None)]
        return " or ".join(parts)
    return {float: "number", int: "integer", bool: "true/false", str: "string"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def check_value(name: str, value: Any, hint: Any) -> Any:
    """``value`` converted to ``hint`` (int → float where a float is expected), or a
    :class:`ConfigError` naming ``name``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        # a list hint is tried only on lists (or tuples, e.g. input_shape=(1, 28, 28) or a
        # torch.Size), so that "expected an integer" is what an int field with a wrong scalar
        # reports
        for arg in args:
            sequence = isinstance(value, (list, tuple))
            if arg is type(None) or (typing.get_origin(arg) is list) != sequence:
                continue
            return check_value(name, value, arg)
        raise ConfigError(f"{name}: expected {_describe_hint(hint)}, got {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(
                f"{name}: expected a non-empty list of {_describe_hint(item)}s, got {value!r}"
            )
        return [check_value(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    if isinstance(hint, type):
        if not isinstance(value, hint):
            raise ConfigError(f"{name}: expected a {hint.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported option type {hint!r} for {name}")  # a programming error


def check_positive(name: str, value: float, *, upper: float | None = None) -> float:
    """``value`` if it is finite, > 0 and at most ``upper``; else a ConfigError naming it."""
    if not math.isfinite(value) or value <= 0 or (upper is not None and value > upper):
        bound = f" and <= {upper:g}" if upper is not None else ""
        raise ConfigError(f"{name} must be finite, > 0{bound}; got {value!r}")
    return value


def from_mapping(cls: type[C], data: Mapping[str, Any], *, where: str = "") -> C:
    """Build the options dataclass ``cls`` from ``data``, refusing unknown keys, missing
    required keys and wrong types, then run its ``validate()``.

    Args:
        cls: an options dataclass (fields declared with :func:`option`).
        data: key → value, e.g. one table of a TOML file.
        where: prefix of every message, e.g. ``"[prune] "``.

    Returns:
        The validated instance.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}{key}: unknown key (known: {', '.join(sorted(fields))})")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = check_value(f"{where}{name}", data[name], hints[name])
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise ConfigError(f"{where}{name}: missing (it has no default)")
    try:
        instance = cls(**values)  # a class may validate in __post_init__ …
        validate = getattr(instance, "validate", None)
        if validate is not None:  # … or in validate()
            validate()
    except ConfigError as error:
        raise ConfigError(f"{where}{error}") from None
    return instance


def _flag_type(hint: Any, name: str):
    """A parser for one command-line value of type ``hint`` (lists are comma-separated)."""

    def parse(text: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if type(None) in args and text.lower() in ("none", ""):
            return None
        try:
            if "," in text or origin is list:
                items = [_scalar(part.strip(), _item_type(hint)) for part in text.split(",")]
                return check_value(name, items, hint)
            return check_value(name, _scalar(text, _item_type(hint)), hint)
        except (ConfigError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = _describe_hint(hint)  # argparse names the type in its messages
    return parse


def _item_type(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        return typing.get_args(hint)[0]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None) and typing.get_origin(arg) is not list:
                return arg
        return _item_type(next(a for a in typing.get_args(hint) if a is not type(None)))
    return hint


def _scalar(text: str, kind: Any) -> Any:
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


def add_arguments(
    parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()
) -> None:
    """Add one ``--flag`` per command-line field of ``cls``; a flag left out stays unset (see
    :func:`overrides`), so it never hides a value from a config file."""
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(f"{cls.__name__} (override the config file)")
    for field in dataclasses.fields(cls):
        if not field.metadata.get("cli", True) or field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        text = field.metadata.get("help", "")
        if field.default is not _MISSING and "(default" not in text:
            text += f" (default: {field.default})"
        if hint is bool:
            group.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=text,
            )
        else:
            group.add_argument(
                flag,
                dest=field.name,
                type=_flag_type(hint, flag),
                default=argparse.SUPPRESS,
                metavar=field.name.upper(),
                help=text,
            )


def overrides(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (flags added by :func:`add_arguments`)."""
    given = vars(namespace)
    return {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}


def describe(cls: type, indent: int = 4) -> str:
    """One line per field: name, type, default and help text (for docstrings and docs)."""
    hints = typing.get_type_hints(cls)
    lines = []
    for field in dataclasses.fields(cls):
        default = (
            "required"
            if field.default is _MISSING and field.default_factory is _MISSING
            else f"default {field.default!r}"
            if field.default is not _MISSING
            else "default " + repr(field.default_factory())
        )
        lines.append(
            f"{' ' * indent}{field.name} ({_describe_hint(hints[field.name])}, {default}): "
            f"{field.metadata.get('help', '')}"
        )
    return "\n".join(lines)
