"""The partially observed pendulum with the Gaussian (Laplace) posterior, over several seeds.

Runs ``brainloop run pendulum-model`` with the settings below for each seed (each seed draws
its own episodes and initial weights) and prints the held-out 10-step error of the imagined
(cos, sin) against "no change", then the spread. Each run takes about 3-4 min on one CPU thread.

    python benchmarks/pendulum_laplace.py                  # seeds 0 1 2
    python benchmarks/pendulum_laplace.py --seeds 0 1 2 3 4 --out-dir runs/laplace
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sims.runner import run_simulation

SETTINGS = [
    "partial=true", "posterior=laplace", "hidden=16", "epochs=150", "lr=3e-3", "lr_schedule=cosine",
    "grad_clip=1", "precision_rate=0.01", "state_precision=100", "obs_precision=1000",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out-dir", type=Path, default=None, help="keep the recordings here (default: a temp dir)")
    parser.add_argument("--set", nargs="*", default=[], dest="extra", help="more config overrides, key=value")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="pendulum_laplace_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print("settings:", " ".join(SETTINGS + args.extra))
    print(f"{'seed':>4}  {'error_10':>9}  {'nochange_10':>11}  {'improvement':>11}  {'time':>6}")
    ratios = []
    for seed in args.seeds:
        start = time.perf_counter()
        figures = run_simulation("pendulum-model", out=out_dir / f"seed{seed}.h5", quiet=True, seed=seed,
                                 overrides=SETTINGS + args.extra)
        ratios.append(figures["improvement_10"])
        print(f"{seed:>4}  {figures['prediction_error_10']:>9.4f}  {figures['nochange_error_10']:>11.4f}  "
              f"{figures['improvement_10']:>10.2f}x  {time.perf_counter() - start:>5.0f}s", flush=True)
    if len(ratios) > 1:
        print(f"improvement: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x")
    print(f"recordings in {out_dir}")


if __name__ == "__main__":
    main()
