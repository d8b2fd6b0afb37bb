"""Running one simulation: config, device, seeding and recording around a simulation's `run`.

Following Brian2, what is simulated (the `Simulation` and its config), where it runs (the torch
device) and what is recorded (the `Recorder`) are independent choices; a simulation receives the
last two, plus seeded random generators, in a `Context`. Everything a user can get wrong (an
unknown simulation or config key, a value out of range, an absent GPU, an existing or locked
output) fails in `prepare_run`, before any file is created or any step simulated. A mistake that a
simulation can only find when it starts (before it records anything) leaves `out` as it was: the
recording moves into place once the run has recorded something (see `analysis.recording`).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from analysis.recording import Recorder
from analysis.spiking import ReadoutConfig, add_spikes
from sims.config import build_config
from sims.registry import Simulation, get


@dataclass
class Context:
    """What a simulation gets besides its config.

    Attributes:
        recorder: where the run's activity goes (names from `analysis.monitors`).
        device: the torch device to compute on.
        seed: the run's seed.
        generator: a CPU `torch.Generator` seeded with `seed`; draw on the CPU and move the
            result, so that a seed gives the same draws on every device.
        rng: a numpy generator seeded with `seed` (environments, data shuffling).
        quiet: no progress bars.
    """

    recorder: Recorder
    device: torch.device
    seed: int
    generator: torch.Generator
    rng: np.random.Generator
    quiet: bool = False

    def progress(self, iterable=None, *, total=None, desc=None, unit="it"):
        """A tqdm progress bar (inert when quiet); call `.set_postfix(...)` on it to show figures."""
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=self.quiet,
                    dynamic_ncols=True)


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str) -> torch.device:
    """`"cpu"`, `"cuda"`, `"cuda:N"`, or `"auto"` (CUDA when present, else CPU) as a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"invalid device {name!r}; use cpu, cuda, cuda:N or auto") from None
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} asked for, but there are only "
                             f"{torch.cuda.device_count()} CUDA devices")
        return device
    raise ValueError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto")


class ReadoutError(ValueError):
    """The simulation finished and is recorded; the spiking readout after it failed."""


@dataclass
class PreparedRun:
    """A run whose inputs have all been checked and whose recording file is open (and locked)."""

    sim: Simulation
    config: Any
    context: Context
    readout: ReadoutConfig = dataclasses.field(default_factory=ReadoutConfig)

    @property
    def started(self) -> bool:
        """True once the simulation has recorded something: from then on, `out` holds this run."""
        return self.context.recorder.started

    def execute(self) -> dict:
        """Run the simulation, write its figures to `/summary` and close the recording.

        The runner adds `wall_time_s` to the simulation's figures. If the simulation raises, the
        exception propagates: after it started, what it recorded so far is flushed into `out`;
        before (`started` is False), the recording is discarded and `out` is left as it was.
        """
        start = time.perf_counter()
        with self.context.recorder as recorder:
            figures = self.sim.run(self.config, self.context)
            if not isinstance(figures, dict):
                raise TypeError(f"simulation {self.sim.name!r} returned {type(figures).__name__}, "
                                f"not a dict of summary figures")
            figures = {**figures, "wall_time_s": time.perf_counter() - start}
            recorder.summary(**figures)
        if self.readout.signals:  # spikes from the finished recording (analysis.spiking)
            try:
                correlations = add_spikes(recorder.path, self.readout.signals,
                                          self.readout.mapping, seed=self.context.seed,
                                          step_index=self.readout.at or None)
            except Exception as error:  # the run is recorded; only the readout failed
                raise ReadoutError(f"the run is recorded in {recorder.path}, but its readout "
                                   f"failed (the file is as the run left it): {error}") from error
            figures.update({f"rate_correlation_{p}": r for p, r in correlations.items()})
        return figures


def prepare_run(name: str, *, out, config: Any = None, config_path=None,
                overrides: Sequence[str] = (), seed: int = 0, device: str = "cpu",
                quiet: bool = False, threads: int | None = 1,
                overwrite: bool = False) -> PreparedRun:
    """Check every input, seed everything and open the recording at `out`; see `run_simulation`."""
    sim = get(name)
    readout = build_config(ReadoutConfig, config_path, overrides, section="readout")
    if config is None:
        config = build_config(sim.config, config_path, overrides, exclude="readout")
    elif config_path is not None or overrides:
        raise ValueError(f"simulation {name!r}: give a config object or config_path/overrides, "
                         f"not both")
    elif not isinstance(config, sim.config):
        raise TypeError(f"simulation {name!r} takes a {sim.config.__name__} config, got a "
                        f"{type(config).__name__}")
    if not 0 <= seed < 2**63:  # numpy's and torch's generators take non-negative 64-bit seeds
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed}")
    torch_device = resolve_device(device)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if torch_device.type == "cuda":
        # cuBLAS needs this workspace setting to be deterministic; it is read at first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(seed)
    generator, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    # the recording is opened last: nothing above may fail once the output is claimed
    recorder = Recorder(out, sim=name, seed=seed, config=dataclasses.asdict(config),
                        overwrite=overwrite)
    context = Context(recorder=recorder, device=torch_device, seed=seed, generator=generator,
                      rng=rng, quiet=quiet)
    return PreparedRun(sim=sim, config=config, context=context, readout=readout)


def run_simulation(name: str, *, out, config: Any = None, config_path=None,
                   overrides: Sequence[str] = (), seed: int = 0, device: str = "cpu",
                   quiet: bool = False, threads: int | None = 1, overwrite: bool = False) -> dict:
    """Run the simulation `name`, recording into the HDF5 file `out`; returns its summary figures.

    Args:
        name: a registered simulation (`brainloop list`).
        out: the recording to write; locked while the run writes it.
        config: an instance of the simulation's config dataclass (for sweeps), or None to build
            one from `config_path` and `overrides`; giving both is an error.
        config_path: a JSON/TOML file of config values, or None for the defaults.
        overrides: `"key=value"` strings applied after the file.
        seed: seeds python, numpy, torch and the context's generators; the same seed on the same
            device gives identical datasets.
        device: "cpu", "cuda", "cuda:N" or "auto".
        quiet: no progress bars.
        threads: CPU threads for torch (None keeps torch's default). One is the default: the
            models here are small, and on a busy machine several spinning threads per process
            slowed pc-digits fifty-fold.
        overwrite: replace a file already at `out` (once the run has recorded something);
            without it an existing file is an error.

    Raises:
        ValueError: a user mistake (unknown simulation, key or device, bad value, existing or
            locked `out`), naming the culprit; `out` is left as it was.
        TypeError: `config` is not an instance of the simulation's config class.
        FloatingPointError: the simulation diverged (its message names the quantity, the step and
            the config key most likely responsible); `out` holds what was recorded so far.
    """
    return prepare_run(name, out=out, config=config, config_path=config_path,
                       overrides=overrides, seed=seed, device=device, quiet=quiet,
                       threads=threads, overwrite=overwrite).execute()
