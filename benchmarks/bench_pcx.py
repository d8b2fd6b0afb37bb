"""pc-digits against PCX at PCX's shape and budget, side by side on this machine.

Both train a discriminative PC network 64-128-128-128-10 (tanh) on scikit-learn's digits,
batch 64, 8 inference steps at lr 0.1, Adam 1e-3 on the weights, 30 epochs, one CPU thread.
brainloop runs `brainloop run pc-digits` with those settings, eager and compiled
(`compile=true`: each batch's inference and weight gradients as one graph); PCX runs `benchmarks/pcx_digits.py` in its own environment.
Both train 22 batches of 64 per epoch (the 29 digits left over are dropped, as PCX must: its
nodes have a fixed batch shape). The three alternate, run after run, so load on the machine
hits them alike, and each brainloop run is compared with the PCX run beside it. Seconds per
epoch are each run's median over its epochs (the first, which compiles, is never the
median); accuracy is the last epoch's on the same held-out 20 % of the digits.

    python benchmarks/bench_pcx.py --pcx-python /work/pcxenv/bin/python --seeds 0 1 2 3 4
    python benchmarks/bench_pcx.py --pcx-seconds 0.071 --pcx-accuracy 0.986   # a figure measured elsewhere

PCX's environment: ``python3 -m venv /work/pcxenv && /work/pcxenv/bin/pip install pcx==0.6.3
scikit-learn`` (add ``--install`` to have this script do it).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPE = ["hidden=128,128,128", "batch_size=64", "inference_steps=8", "inference_lr=0.1",
         "lr=0.001", "epochs=30", "drop_last=true"]


def run_brainloop(compiled: bool, seed: int, out_dir: Path) -> dict:
    out = out_dir / f"digits_{'compiled' if compiled else 'eager'}_{seed}.h5"
    cmd = [sys.executable, "-m", "sims", "run", "pc-digits", "--quiet", "--overwrite", "--seed", str(seed),
           "--out", str(out), "--set", *SHAPE, f"compile={str(compiled).lower()}"]
    subprocess.run(cmd, check=True, cwd=HERE.parent, stdout=subprocess.DEVNULL)
    from analysis.recording import Recording
    summary = Recording(out).summary
    return {"seconds_per_epoch": summary["pc_seconds_per_epoch"], "accuracy": summary["pc_test_accuracy"]}


def run_pcx(python: str, seed: int) -> dict:
    cmd = [python, str(HERE / "pcx_digits.py"), "--epochs", "30", "--seed", str(seed), "--threads", "1", "--quiet"]
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    result = json.loads(line)
    return {"seconds_per_epoch": result["seconds_per_epoch_median"], "accuracy": result["test_accuracy"]}


def install_pcx(venv: Path) -> str:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "pcx==0.6.3", "scikit-learn"], check=True)
    return str(venv / "bin" / "python")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pcx-python", help="the Python of an environment with pcx 0.6.3")
    parser.add_argument("--install", type=Path, metavar="VENV", help="create VENV and install pcx there")
    parser.add_argument("--pcx-seconds", type=float, help="PCX's seconds per epoch, measured elsewhere")
    parser.add_argument("--pcx-accuracy", type=float, help="PCX's test accuracy, measured elsewhere")
    parser.add_argument("--rounds", type=int, default=1, help="runs of every seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    pcx_python = install_pcx(args.install) if args.install else args.pcx_python
    if pcx_python is None and (args.pcx_seconds is None or args.pcx_accuracy is None):
        parser.error("give --pcx-python (or --install VENV), or both --pcx-seconds and --pcx-accuracy")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    names = ["brainloop eager", "brainloop compiled", "PCX 0.6.3 (jit)"]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for seed in args.seeds:
                runs[names[0]].append({"seed": seed, **run_brainloop(False, seed, Path(tmp))})
                runs[names[1]].append({"seed": seed, **run_brainloop(True, seed, Path(tmp))})
                runs[names[2]].append({"seed": seed, **(run_pcx(pcx_python, seed) if pcx_python else {
                    "seconds_per_epoch": args.pcx_seconds, "accuracy": args.pcx_accuracy})})
                print(f"round {r + 1}, seed {seed}: " + ", ".join(
                    f"{k} {v[-1]['seconds_per_epoch']:.3f} s/epoch, {100 * v[-1]['accuracy']:.2f} %"
                    for k, v in runs.items()), flush=True)

    # Speed: each run against the PCX run beside it (same round and seed, so the same load on
    # the machine), then the median of those ratios. Accuracy: each seed's (runs repeat it).
    print(f"\npc-digits at PCX's shape (64-128-128-128-10, batch 64, 8 inference steps, 30 epochs, "
          f"22 batches per epoch), one thread, {args.rounds} round(s) of seeds {args.seeds}"
          f"{'' if pcx_python else ' (PCX figure given)'}")
    print("| | seconds per epoch (median) | time / PCX beside it (median, range) | test accuracy per seed | mean |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        ratios = sorted(a["seconds_per_epoch"] / b["seconds_per_epoch"] for a, b in zip(rs, runs[names[2]]))
        accuracy = {r["seed"]: r["accuracy"] for r in rs}
        print(f"| {name} | {statistics.median(r['seconds_per_epoch'] for r in rs):.3f} | "
              f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f}) | "
              f"{', '.join(f'{100 * a:.2f}' for a in accuracy.values())} % | "
              f"{100 * statistics.mean(accuracy.values()):.2f} % |")


if __name__ == "__main__":
    main()
