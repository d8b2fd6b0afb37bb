"""pc-digits against PCX at PCX's shape and budget, side by side on this machine.

Both train a discriminative PC network 64-128-128-128-10 (tanh) on scikit-learn's digits,
batch 64, 8 inference steps at lr 0.1, Adam 1e-3 on the weights, 30 epochs, one CPU thread.
brainloop runs `brainloop run pc-digits` with those settings, eager and with the inference
loop compiled (`compile=true`); PCX runs `benchmarks/pcx_digits.py` in its own environment.
The three alternate, round after round, so load on the machine hits them alike. Seconds per
epoch are each run's median over its epochs (the first, which compiles, is never the
median); accuracy is the last epoch's on each project's held-out 20 %.

    python benchmarks/bench_pcx.py --pcx-python /work/pcxenv/bin/python --rounds 3
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pcx_python = install_pcx(args.install) if args.install else args.pcx_python
    if pcx_python is None and (args.pcx_seconds is None or args.pcx_accuracy is None):
        parser.error("give --pcx-python (or --install VENV), or both --pcx-seconds and --pcx-accuracy")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    runs: dict[str, list[dict]] = {"brainloop eager": [], "brainloop compiled": [], "PCX 0.6.3 (jit)": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs["brainloop eager"].append(run_brainloop(False, args.seed, Path(tmp)))
            runs["brainloop compiled"].append(run_brainloop(True, args.seed, Path(tmp)))
            if pcx_python:
                runs["PCX 0.6.3 (jit)"].append(run_pcx(pcx_python, args.seed))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['seconds_per_epoch']:.3f} s/epoch"
                                                  for k, v in runs.items() if v), flush=True)
    if not pcx_python:
        runs["PCX 0.6.3 (jit)"] = [{"seconds_per_epoch": args.pcx_seconds, "accuracy": args.pcx_accuracy}]

    pcx_s = statistics.median(r["seconds_per_epoch"] for r in runs["PCX 0.6.3 (jit)"])
    print(f"\npc-digits at PCX's shape (64-128-128-128-10, batch 64, 8 inference steps, 30 epochs), "
          f"one thread, {args.rounds} alternating rounds{'' if pcx_python else ' (PCX figure given)'}")
    print(f"| | seconds per epoch (median of rounds) | each round | test accuracy | time / PCX |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        s = statistics.median(r["seconds_per_epoch"] for r in rs)
        each = ", ".join(f"{r['seconds_per_epoch']:.3f}" for r in rs)
        acc = ", ".join(f"{100 * r['accuracy']:.2f} %" for r in rs[:1])
        print(f"| {name} | {s:.3f} | {each} | {acc} | {s / pcx_s:.2f}× |")


if __name__ == "__main__":
    main()
