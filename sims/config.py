"""Simulation configs: frozen dataclasses filled from defaults, then a JSON/TOML file, then
`key=value` overrides.

The dataclass is the single description of a config: field types drive the parsing, defaults are
the defaults, and a field's metadata (`cortex.params.param`: its help text and admissible values)
is the documentation `describe_config` prints. The dataclass validates itself at construction
(`__post_init__`), so a value out of range fails here, naming the key, before anything runs.
A field whose type is itself a config dataclass is a nested section: a table in the file and a
dotted key (`cortex.lr=0.01`) on the command line. Every error names the offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Sequence, Union

from cortex.graph import read_config_file

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def build_config(cls: type, path=None, overrides: Sequence[str] = (), *,
                 section: str | None = None, exclude: str | None = None) -> Any:
    """An instance of the config dataclass `cls`: defaults < the file at `path` < `overrides`.

    section: use only the keys under `section.` (the prefix removed), e.g. a sim's `readout`
    table; exclude: leave out the keys under `exclude.` (read as another section).

    Args:
        cls: a (frozen) config dataclass.
        path: a `.json` or `.toml` file of values (nested sections for nested configs), or None.
        overrides: `"key=value"` strings, values written as on a command line ("256,256" for a
            tuple, "none" for None, true/false/yes/no/1/0 for a bool).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown key (listing the valid ones), a value that does not parse (naming
            the expected type), a bad file or suffix.
    """
    def chosen(key: str) -> str | None:
        """The key as `cls` names it, or None when it belongs elsewhere."""
        if exclude is not None and key.startswith(exclude + "."):
            return None
        if section is not None:
            return key[len(section) + 1:] if key.startswith(section + ".") else None
        return key

    values: dict[str, Any] = {}
    if path is not None:
        for key, value in _flatten(read_config_file(path)).items():
            if (name := chosen(key)) is not None:
                values[name] = _from_file(cls, name, value)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        if (name := chosen(key)) is not None:
            values[name] = _parse(name, _field_type(cls, name), raw.strip())
    return _instantiate(cls, values, prefix="")


def describe_config(cls: type) -> str:
    """One entry per field: `name: type = default` and its help text with the values it admits
    (e.g. "(>= 1)", "(one of: point, laplace)"), nested fields dotted."""
    lines = []
    try:  # the effective defaults: a section's factory may set its own
        defaults = cls()
    except (TypeError, ValueError):
        defaults = None
    for key, typ, field in _leaf_fields(cls):
        if defaults is None:
            shown = _format_default(field)
        else:
            value = defaults
            for part in key.split("."):
                value = getattr(value, part)
            shown = _format_value(value)
        lines.append(f"{key}: {_type_name(typ)} = {shown}")
        admits = _admissible(field.metadata, typ)
        help_text = field.metadata.get("help", "")
        lines.append(f"    {help_text} ({admits})" if admits else f"    {help_text}")
    return "\n".join(lines)


def _admissible(meta, typ: Any) -> str:
    """The range or choices of a `cortex.params.param` field as text, "" when unconstrained."""
    if meta.get("choices") is not None:
        return "one of: " + ", ".join(map(str, meta["choices"]))
    low = next(((word, meta[b]) for b, word in (("ge", "["), ("gt", "(")) if meta.get(b) is not None), None)
    high = next(((word, meta[b]) for b, word in (("le", "]"), ("lt", ")")) if meta.get(b) is not None), None)
    if low and high:
        text = f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    elif low:
        text = f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    elif high:
        text = f"{'<=' if high[0] == ']' else '<'} {high[1]}"
    else:
        return ""
    return f"each {text}" if typing.get_origin(typ) is tuple else text


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """{"cortex": {"lr": 1}} -> {"cortex.lr": 1}."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_keys(cls: type) -> list[str]:
    """Every settable (dotted) key of the config dataclass `cls`, in declaration order."""
    return [name for name, _, _ in _leaf_fields(cls)]


def _leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """(dotted key, resolved type, field) of every non-section field, in declaration order."""
    hints = typing.get_type_hints(cls)
    leaves = []
    for field in dataclasses.fields(cls):
        typ = hints[field.name]
        if _is_section(typ):
            leaves.extend(_leaf_fields(typ, f"{prefix}{field.name}."))
        else:
            leaves.append((f"{prefix}{field.name}", typ, field))
    return leaves


def _is_section(typ: Any) -> bool:
    return isinstance(typ, type) and dataclasses.is_dataclass(typ)


def _field_type(cls: type, key: str) -> Any:
    for name, typ, _ in _leaf_fields(cls):
        if name == key:
            return typ
    valid = ", ".join(name for name, _, _ in _leaf_fields(cls))
    raise ValueError(f"unknown config key {key!r} for {cls.__name__}; valid keys: {valid}")


def _instantiate(cls: type, values: dict[str, Any], prefix: str, base: Any = None) -> Any:
    """`cls` from the dotted `values` under `prefix`; unset fields keep their defaults, or those
    of `base` (a section's default instance, which its field's factory may set apart)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        key = f"{prefix}{field.name}"
        if _is_section(hints[field.name]):
            section = (None if field.default_factory is dataclasses.MISSING
                       else field.default_factory())
            try:
                kwargs[field.name] = _instantiate(hints[field.name], values, f"{key}.", section)
            except ValueError as error:  # a section validates itself without knowing its key
                raise ValueError(f"section {key!r}: {error}") from None
        elif key in values:
            kwargs[field.name] = values[key]
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"config key {key!r} of {cls.__name__} has no default and was not given")
    return cls(**kwargs) if base is None else dataclasses.replace(base, **kwargs)


def _from_file(cls: type, key: str, value: Any) -> Any:
    """A value read from JSON/TOML, checked against (and converted to) the field's type."""
    typ = _field_type(cls, key)
    if isinstance(value, str):
        return _parse(key, typ, value)
    return _coerce(key, typ, value)


def _coerce(key: str, typ: Any, value: Any) -> Any:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(key, arg, value)
                except ValueError:
                    continue
    elif origin is Literal:
        if value in args:
            return value
    elif origin is tuple and isinstance(value, (list, tuple)):
        item_types = _tuple_item_types(key, typ, len(value))
        try:
            return tuple(_coerce(key, t, v) for t, v in zip(item_types, value))
        except ValueError:
            pass  # reported below for the whole tuple, not one item
    elif typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str or typ is Path:
        if isinstance(value, str):
            return typ(value)
    raise ValueError(f"config key {key!r} expects {_type_name(typ)}, got {value!r}")


def _parse(key: str, typ: Any, raw: str) -> Any:
    """A command-line string parsed by the field's type."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (Union, types.UnionType):
        if raw.lower() == "none" and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _parse(key, arg, raw)
                except ValueError:
                    continue
    elif origin is Literal:
        for choice in args:
            if raw == str(choice):
                return choice
    elif origin is tuple:
        items = [item.strip() for item in raw.split(",")] if raw.strip() else []
        item_types = _tuple_item_types(key, typ, len(items))
        try:
            return tuple(_parse(key, t, item) for t, item in zip(item_types, items))
        except ValueError:
            pass  # reported below for the whole tuple, not one item
    elif typ is bool:
        if raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
    elif typ in (int, float):
        try:
            return typ(raw)
        except ValueError:
            pass
    elif typ is str or typ is Path:
        return typ(raw)
    else:
        raise ValueError(f"config key {key!r} has type {typ!r}, which cannot be set from text")
    raise ValueError(f"config key {key!r} expects {_type_name(typ)}, got {raw!r}")


def _tuple_item_types(key: str, typ: Any, length: int) -> tuple:
    args = typing.get_args(typ)
    if len(args) == 2 and args[1] is Ellipsis:
        return (args[0],) * length
    if len(args) != length:
        raise ValueError(f"config key {key!r} expects {_type_name(typ)}, got {length} values")
    return args


def _type_name(typ: Any) -> str:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (Union, types.UnionType):
        names = [_type_name(arg) for arg in args if arg is not type(None)]
        return " or ".join(names) + (" or none" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(choice) for choice in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"comma-separated {_type_name(args[0])}s"
        return "comma-separated (" + ", ".join(_type_name(arg) for arg in args) + ")"
    return getattr(typ, "__name__", repr(typ))


def _format_default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return "(required)"
    return _format_value(default)


def _format_value(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default)
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)
