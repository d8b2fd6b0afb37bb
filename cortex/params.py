"""Documented, validated configuration fields, and the divergence check every loop shares.

A config is a frozen dataclass (STYLE.md); `param` declares one field with its help text and
its admissible values, and `validate(cfg)`, called from the dataclass's `__post_init__`, checks
every field at construction: the type, finiteness of numbers, ranges and choices. So a config
object that exists is a valid one, whether it came from the command line, a file or Python, and
every error names the field. `check_finite` is the run-time counterpart: a quantity that became
non-finite or exploded stops the run with the quantity, the step and the config key to look at.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Iterable

import numpy as np


def param(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None, choices: Iterable | None = None,
          finite: bool = True, allow_nan: bool = False) -> Any:
    """A config field: `default`, its one-line `help`, and what values it admits.

    ge/gt/le/lt: bounds of a number, or of every item of a tuple of numbers; choices: the
    allowed values of a string; finite: reject inf/nan (allow_nan lets nan through, for fields
    where nan means "derive it").
    """
    if isinstance(default, (list, dict, set)):
        raise TypeError("a config field default must be immutable (use a tuple)")
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "finite": finite,
            "allow_nan": allow_nan, "choices": tuple(choices) if choices is not None else None}
    return dataclasses.field(default=default, metadata=meta)


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of the dataclass instance `cfg` against its type and `param` metadata.

    Raises ValueError naming the field (dotted with `prefix` for nested sections).
    """
    hints = typing.get_type_hints(type(cfg))
    for field in dataclasses.fields(cfg):
        key = f"{prefix}{field.name}"
        value = getattr(cfg, field.name)
        _check_type(key, hints[field.name], value)
        if dataclasses.is_dataclass(value):
            continue  # a nested section validates itself in its own __post_init__
        meta = field.metadata
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            _check_value(key, item, meta)


def _check_type(key: str, typ: Any, value: Any) -> None:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(key, arg, value)
            except ValueError:
                continue
        raise ValueError(f"config key {key!r} expects {typ}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"config key {key!r} must be one of {', '.join(map(repr, args))}, "
                             f"got {value!r}")
        return
    if origin is tuple:
        if not isinstance(value, tuple):
            raise ValueError(f"config key {key!r} expects a tuple, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            item_types = (args[0],) * len(value)
        elif len(args) != len(value):
            raise ValueError(f"config key {key!r} expects {len(args)} values, got {value!r}")
        else:
            item_types = args
        for item_type, item in zip(item_types, value):
            _check_type(key, item_type, item)
        return
    ok = {bool: lambda v: isinstance(v, (bool, np.bool_)),
          int: lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float, np.floating)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}.get(typ)
    if ok is not None and not ok(value):
        raise ValueError(f"config key {key!r} expects {typ.__name__}, got {value!r}")


def _check_value(key: str, value: Any, meta) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ValueError(f"config key {key!r} must be one of {', '.join(map(str, choices))}, "
                         f"got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return
    if math.isnan(value):
        if meta.get("allow_nan"):
            return
        raise ValueError(f"config key {key!r} must be a finite number, got nan")
    if meta.get("finite", True) and math.isinf(value):
        raise ValueError(f"config key {key!r} must be a finite number, got {value}")
    for bound, holds, word in (("ge", lambda b: value >= b, ">="), ("gt", lambda b: value > b, ">"),
                               ("le", lambda b: value <= b, "<="), ("lt", lambda b: value < b, "<")):
        b = meta.get(bound)
        if b is not None and not holds(b):
            raise ValueError(f"config key {key!r} must be {word} {b}, got {value}")


def check_finite(quantity: str, value, *, step: int, key: str, where: str = "step",
                 limit: float = 1e8) -> None:
    """Stop a run whose `quantity` became non-finite or exploded (|value| > `limit`).

    Raises FloatingPointError naming the quantity, the `where` index `step` and the config
    `key` most likely responsible. `value`: a number, array or tensor (all entries checked).
    """
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        what = f"became {array[bad].flat[0]}"
    elif array.size and np.abs(array).max() > limit:
        what = f"exploded to {array.flat[np.abs(array).argmax()]:.3g} (limit {limit:.0e})"
    else:
        return
    raise FloatingPointError(f"{quantity} {what} at {where} {step}; the config key most likely "
                             f"responsible is {key!r} (try a smaller value)")
