"""PC against backprop in continual learning and at small batch sizes, ≥ 5 seeds.

    python benchmarks/bench_continual.py --seeds 0 1 2 3 4 --workers 2
    python benchmarks/bench_continual.py --report-only      # tables and figures from the runs

Runs `brainloop run continual` (tasks split2 and pairs5, each class- and task-incremental, and
split2 class-incremental with 50 PC inference iterations instead of 8) and `brainloop run
small-batch` with their default configs, one process per run with one torch thread; recordings go to
runs/bench_continual/. Prints, per condition, the mean and 95 % confidence interval (Student's t
over seeds) of final accuracy and forgetting, with the paired PC − backprop difference, and of
the small-batch test errors, and draws runs/bench_continual/forgetting.png and small_batch.png
(analysis.figures_continual).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "runs" / "bench_continual"
JOBS = {f"continual-{tasks}-{scenario}": ("continual", [f"tasks={tasks}", f"scenario={scenario}"])
        for tasks in ("split2", "pairs5") for scenario in ("class_il", "task_il")}
# PC inferring for longer moves its hidden states further from the feed-forward pass (the
# regime of prospective configuration); backprop is the same as in split2-class_il
JOBS["continual-split2-class_il-inference50"] = (
    "continual", ["tasks=split2", "scenario=class_il", "networks.inference_steps=50"])
JOBS["small-batch"] = ("small-batch", [])


def run_one(job: tuple[str, int]) -> str:
    import torch

    torch.set_num_threads(1)
    from sims.runner import run_simulation

    name, seed = job
    sim, overrides = JOBS[name]
    out = RUNS / f"{name}_seed{seed}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_simulation(sim, out=out, overrides=overrides, seed=seed, quiet=True, overwrite=True)
    return str(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", nargs="+", choices=JOBS, default=list(JOBS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--report-only", action="store_true", help="use the recordings there")
    args = parser.parse_args(argv)
    if not args.report_only:
        jobs = [(name, seed) for name in args.jobs for seed in args.seeds]
        if args.workers == 1:
            [run_one(job) for job in jobs]
        else:
            with mp.get_context("spawn").Pool(args.workers) as pool:
                pool.map(run_one, jobs)
    from analysis.figures_continual import continual_table, small_batch_table, seed_figures

    for name in args.jobs:
        paths = sorted(RUNS.glob(f"{name}_seed*.h5"))
        if not paths:
            continue
        table = small_batch_table if name == "small-batch" else continual_table
        print(f"## {name} ({len(paths)} seeds)\n\n{table(paths)}\n")
    for path in seed_figures(RUNS):
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
