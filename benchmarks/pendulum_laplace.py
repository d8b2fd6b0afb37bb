"""The partially observed pendulum with the Gaussian (Laplace) posterior, over several seeds.

Runs ``brainloop run pendulum-model`` with the settings below for each seed (each seed draws
its own episodes and initial weights) and prints the held-out 10-step error of the imagined
(cos, sin) against "no change" for the epoch chosen on 64 validation episodes, the same ratio
at the last epoch, and the spread. Each run takes about 4 min on one CPU thread.

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

from analysis.recording import Recording
from sims.runner import run_simulation

SETTINGS = [
    "partial=true", "posterior=laplace", "hidden=16", "epochs=150", "lr=3e-3", "lr_schedule=cosine",
    "grad_clip=0.3", "precision_rate=0.01", "state_precision=100", "obs_precision=1000", "validation_episodes=64",
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
    print(f"{'seed':>4}  {'epoch':>5}  {'error_10':>9}  {'nochange_10':>11}  {'improvement':>11}  "
          f"{'last epoch':>10}  {'time':>6}")
    ratios, last = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        out = out_dir / f"seed{seed}.h5"
        figures = run_simulation("pendulum-model", out=out, quiet=True, seed=seed, overrides=SETTINGS + args.extra)
        with Recording(out) as rec:
            curve = rec["metrics/nochange_error_10"] / rec["metrics/prediction_error_10"]
        ratios.append(figures["improvement_10"])
        last.append(float(curve[-1]))
        print(f"{seed:>4}  {figures.get('selected_epoch', len(curve)):>5}  {figures['prediction_error_10']:>9.4f}  "
              f"{figures['nochange_error_10']:>11.4f}  {figures['improvement_10']:>10.2f}x  {last[-1]:>9.2f}x  "
              f"{time.perf_counter() - start:>5.0f}s", flush=True)
    if len(ratios) > 1:
        for name, values in (("chosen epoch", ratios), ("last epoch", last)):
            print(f"improvement, {name}: median {statistics.median(values):.2f}x, min {min(values):.2f}x, "
                  f"max {max(values):.2f}x")
    print(f"recordings in {out_dir}")


if __name__ == "__main__":
    main()
