"""Sweep overhead: a sweep of 16 tiny runs on 2 local workers against the runs' own time.

The runs are `pc-digits` with one epoch of a small network (a grid of 2 hidden widths × 2
batch sizes × 4 seeds). The runs' own time is each run's ``wall_time_s`` (the runner's clock
around the simulation, inside its worker); the sweep's is the wall clock of
``sims.sweep.sweep`` from the call to its return, worker start-up, scheduling and the index
included, with the simulations already imported in this process (as `brainloop sweep` has
them before it sweeps). With 2 workers the ideal is the runs' time / 2; the ratio says what
the sweep adds.

    python benchmarks/bench_sweep.py [--workers 2] [--epochs 1]
"""
from __future__ import annotations

import argparse
import tempfile
import time

import sims.runner  # noqa: F401  (what the command line has loaded before it sweeps)
from sims.sweep import sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    grid = {"hidden": ["32", "64"], "batch_size": ["32", "64"]}
    seeds = [0, 1, 2, 3]
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        results = sweep("pc-digits", grid, seeds, out, fixed=[f"epochs={args.epochs}"], workers=args.workers)
        wall = time.perf_counter() - t0
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} runs did not finish: {failed[0].error}")
    own = sum(r.summary["wall_time_s"] for r in results)
    ideal = own / args.workers
    print(f"{len(results)} runs of pc-digits (epochs={args.epochs}), {args.workers} local workers")
    print(f"| runs' own time, summed | ÷ {args.workers} workers | sweep wall clock | sweep / ideal |")
    print("|---|---|---|---|")
    print(f"| {own:.1f} s | {ideal:.1f} s | {wall:.1f} s | **{wall / ideal:.2f}×** |")


if __name__ == "__main__":
    main()
