"""`brainloop sweep`: a simulation over a grid of config values × seeds, one recording per run.

Every combination of the `--grid key=v1,v2` values, for each seed, is one run of
`sims.runner.run_simulation` with those overrides (after the fixed `--set` ones), recorded at
`DIR/<sim>_<key>-<value>_..._seed<N>.h5`. Runs go to local worker processes (one torch thread
each) or, given a Ray address, to a Ray cluster as tasks of one CPU each (`ray.init(address=...)`;
"local" starts one in this process). `DIR/index.csv` has one row per run: the grid values, the
seed, status (done, skipped, failed), the error, the recording and its `/summary` figures; it
is rewritten (atomically) after every finished run. A run whose recording is complete (it has
a summary) is skipped on a restart; a failed run is recorded with its error and does not stop
the others. `brainloop report DIR` pools the runs over seeds.
"""

from __future__ import annotations

import csv
import itertools
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from analysis.recording import Recording

INDEX = "index.csv"


@dataclass(frozen=True)
class Run:
    """One run of a sweep: its grid values, seed and recording."""

    sim: str
    values: tuple[tuple[str, str], ...]
    seed: int
    out: Path
    fixed: tuple[str, ...] = ()

    @property
    def overrides(self) -> list[str]:
        return [*self.fixed, *(f"{k}={v}" for k, v in self.values)]


@dataclass
class Result:
    run: Run
    status: str
    error: str = ""
    summary: dict = field(default_factory=dict)


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    """["key=v1,v2", ...] → {key: [v1, v2]}; ValueError naming a malformed or repeated key."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not eq or not key or not items:
            raise ValueError(f"--grid {spec!r}: write key=value1,value2,...")
        if key in grid:
            raise ValueError(f"--grid key {key!r} given twice")
        grid[key] = items
    return grid


def plan(sim: str, grid: dict[str, list[str]], seeds: Sequence[int], out_dir,
         fixed: Sequence[str] = ()) -> list[Run]:
    """Every combination of the grid's values for every seed, with its recording path."""
    out_dir = Path(out_dir)
    runs = []
    for combo in itertools.product(*grid.values()) if grid else [()]:
        values = tuple(zip(grid, combo))
        tag = "_".join(f"{k}-{v}" for k, v in values)
        for seed in seeds:
            name = re.sub(r"[^\w.=-]+", "_", f"{sim}_{tag}_seed{seed}" if tag else f"{sim}_seed{seed}")
            runs.append(Run(sim, values, int(seed), out_dir / f"{name}.h5", tuple(fixed)))
    return runs


def finished(run: Run) -> dict | None:
    """The summary of the run's recording when it is complete, else None."""
    if not run.out.is_file():
        return None
    try:
        with Recording(run.out) as rec:
            return dict(rec.summary) or None
    except (OSError, ValueError):
        return None


def execute(run: Run) -> Result:
    """One run in this process (one torch thread); never raises."""
    import torch

    from sims.runner import run_simulation

    torch.set_num_threads(1)
    try:
        summary = run_simulation(run.sim, out=run.out, overrides=run.overrides, seed=run.seed,
                                 quiet=True, overwrite=True)
    except Exception as error:  # a failed run is recorded and does not stop the others
        return Result(run, "failed", f"{type(error).__name__}: {error}")
    return Result(run, "done", summary={k: float(v) for k, v in summary.items()})


def write_index(out_dir, results: list[Result]) -> Path:
    """DIR/index.csv, one row per run (written to a temporary file, then moved into place)."""
    out_dir = Path(out_dir)
    keys = list(dict.fromkeys(k for r in results for k, _ in r.run.values))
    figures = list(dict.fromkeys(k for r in results for k in r.summary))
    path, tmp = out_dir / INDEX, out_dir / f".{INDEX}.{os.getpid()}"
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sim", *keys, "seed", "status", "error", "recording", *figures])
        for r in sorted(results, key=lambda r: (r.run.values, r.run.seed)):
            values = dict(r.run.values)
            recording = r.run.out.name if r.run.out.is_file() else ""
            writer.writerow([r.run.sim, *(values.get(k, "") for k in keys), r.run.seed, r.status,
                             r.error, recording, *(r.summary.get(k, "") for k in figures)])
    os.replace(tmp, path)
    return path


def sweep(sim: str, grid: dict[str, list[str]], seeds: Sequence[int], out_dir, *,
          fixed: Sequence[str] = (), workers: int = 1, ray_address: str | None = None,
          progress: Callable[[Result], None] | None = None) -> list[Result]:
    """Run the sweep (see the module docstring); returns every run's result."""
    from sims.config import config_keys
    from sims.registry import get

    valid = config_keys(get(sim).config)
    for key in [*grid, *(item.partition("=")[0].strip() for item in fixed)]:
        if key not in valid and not key.startswith("readout."):
            raise ValueError(f"unknown config key {key!r} for {sim}; valid keys: "
                             f"{', '.join(valid)}")
    if not seeds:
        raise ValueError("a sweep needs at least one seed")
    runs = plan(sim, grid, seeds, out_dir, fixed)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    results = []
    todo = []
    for run in runs:
        summary = finished(run)
        if summary is None:
            todo.append(run)
        else:
            results.append(Result(run, "skipped", summary=summary))
    write_index(out_dir, results + [Result(r, "pending") for r in todo])

    def done(result: Result) -> None:
        results.append(result)
        write_index(out_dir, results + [Result(r, "pending") for r in todo
                                        if r not in {x.run for x in results}])
        if progress is not None:
            progress(result)

    if ray_address is not None:
        _on_ray(todo, ray_address, done)
    elif workers <= 1:
        for run in todo:
            done(execute(run))
    else:
        import concurrent.futures
        import multiprocessing

        # fork where there is one: the workers start with torch and the simulations already
        # imported here (seconds saved per worker); spawn elsewhere
        method = "fork" if sys.platform == "linux" else "spawn"
        import sims.runner  # noqa: F401  (loaded before the fork, with the simulations)

        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            for future in concurrent.futures.as_completed([pool.submit(execute, r) for r in todo]):
                done(future.result())
    return results


def _on_ray(todo: list[Run], address: str, done: Callable[[Result], None]) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--ray-address needs Ray: pip install -e '.[sweep]'") from None
    if not ray.is_initialized():
        if address == "local":  # a cluster in this process, as a test or a laptop uses it
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address)
    remote = ray.remote(num_cpus=1)(execute)
    pending = [remote.remote(run) for run in todo]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        done(ray.get(ready[0]))
