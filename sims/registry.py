"""The catalogue of runnable simulations.

Each simulation module calls `register(Simulation(...))` when imported. The modules named in
`SIMULATION_MODULES` are imported lazily, on the first `get` or `available`, so that listing the
simulations costs nothing until it is asked for and a module still being written (absent) does not
break the others.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from sims.runner import Context

SIMULATION_MODULES = ["sims.pc_digits", "sims.tracking", "sims.pendulum_model", "sims.conditioning",
                      "sims.rl", "sims.agent", "sims.revaluation", "sims.continual"]


@dataclass(frozen=True)
class Simulation:
    """A runnable experiment.

    Attributes:
        name: what `brainloop run NAME` calls it.
        summary: one line for `brainloop list`.
        config: a frozen dataclass; every field documented with field(metadata={"help": ...}),
            and checked in full in its `__post_init__` (ValueError naming the key).
        run: `run(config, context) -> figures`, the headline figures (name -> float/int) that the
            runner writes to `/summary`. It records only names of `analysis.monitors`. A mistake
            it finds in its input raises ValueError or FileNotFoundError before it records
            anything (the output is then left as it was); a divergence raises FloatingPointError
            naming the quantity, the step and the config key most likely responsible.
    """

    name: str
    summary: str
    config: type
    run: Callable[[Any, "Context"], dict]


_REGISTRY: dict[str, Simulation] = {}


def register(sim: Simulation) -> Simulation:
    """Add `sim` to the catalogue; returns it. Its config class is checked here, at import."""
    if not sim.name or any(c.isspace() for c in sim.name):
        raise ValueError(f"simulation name {sim.name!r} must be a non-empty word")
    if "\n" in sim.summary:
        raise ValueError(f"simulation {sim.name!r}: summary must be one line")
    _check_config_class(sim.name, sim.config)
    known = _REGISTRY.get(sim.name)
    # Re-importing the defining module (importlib.reload) registers the same name again: allowed.
    if known is not None and known.run.__module__ != sim.run.__module__:
        raise ValueError(f"simulation {sim.name!r} is registered twice: by {known.run.__module__} "
                         f"and by {sim.run.__module__}")
    _REGISTRY[sim.name] = sim
    return sim


def get(name: str) -> Simulation:
    """The simulation called `name`; ValueError listing the available ones if there is none."""
    sims = {sim.name: sim for sim in available()}
    if name not in sims:
        raise ValueError(f"unknown simulation {name!r}; available: {', '.join(sims) or 'none'}")
    return sims[name]


def available() -> list[Simulation]:
    """Every registered simulation, sorted by name, after importing `SIMULATION_MODULES`."""
    for module in SIMULATION_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            # Only the module itself being absent is skipped; a broken import inside it is a bug.
            if error.name != module:
                raise
    return sorted(_REGISTRY.values(), key=lambda sim: sim.name)


def _check_config_class(sim_name: str, cls: type) -> None:
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)
            and cls.__dataclass_params__.frozen):
        raise TypeError(f"simulation {sim_name!r}: config must be a frozen dataclass, got {cls!r}")
    types = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.metadata.get("help"):
            raise ValueError(f"simulation {sim_name!r}: config field {cls.__name__}.{field.name} "
                             f"has no field(metadata={{'help': ...}})")
        if isinstance(types[field.name], type) and dataclasses.is_dataclass(types[field.name]):
            _check_config_class(sim_name, types[field.name])
