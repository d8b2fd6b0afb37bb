"""Reward revaluation, ≥ 10 seeds: reward bases against scalar TD and the successor representation.

    python benchmarks/bench_revaluation.py --seeds 0 1 2 3 4 5 6 7 8 9 --workers 2

Runs `brainloop run revaluation-salt` and `brainloop run revaluation-room` (sims/revaluation.py,
default configs) once per seed, one process per run with one torch thread; recordings go to
runs/bench_revaluation/, one JSON line per run to benchmarks/results/revaluation.jsonl. Prints
per-seed tables and the targets of the reward-bases issue, measured across the seeds:

- salt: on the first trial after the sodium-appetite switch the reward-bases agent approaches
  salt with probability ≥ 0.7 while TD stays ≤ 0.2 (every seed); in extinction TD's approach
  probability never reaches reward bases' on any trial (`extinction_td_minus_rb_max` < 0);
- room: over the first 5 episodes after each switch, reward bases' median steps to the valued
  goal (the episode cap when another goal or none was reached) is at most half TD's, and at
  most SR's, with less memory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "bench_revaluation"
SIMS = ("revaluation-salt", "revaluation-room")


def run_one(job: tuple[str, int, tuple[str, ...]]) -> dict:
    import torch

    torch.set_num_threads(1)
    from sims.runner import run_simulation

    sim, seed, overrides = job
    out = RUNS / f"{sim}_seed{seed}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = run_simulation(sim, out=out, overrides=list(overrides), seed=seed, quiet=True,
                             overwrite=True)
    result = dict(sim=sim, seed=seed, overrides=list(overrides),
                  recording=str(out.relative_to(ROOT)), **figures)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "revaluation.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def salt_table(rows: list[dict]) -> str:
    keys = ["rb_p_salt_before_switch", "rb_p_salt_after_switch", "td_p_salt_after_switch",
            "sr_p_salt_after_switch", "rb_p_salt_after_switch_extinction",
            "td_p_salt_after_switch_extinction", "extinction_td_minus_rb_max"]
    lines = ["| seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {r['seed']} | " + " | ".join(f"{r[k]:.4g}" for k in keys) + " |" for r in rows]
    rb = np.array([r["rb_p_salt_after_switch"] for r in rows])
    td = np.array([r["td_p_salt_after_switch"] for r in rows])
    ext = np.array([r["extinction_td_minus_rb_max"] for r in rows])
    lines += ["", f"first trial after the switch, {len(rows)} seeds: reward bases p(salt) "
              f"min {rb.min():.4f} (target ≥ 0.7: {'met' if rb.min() >= 0.7 else 'NOT met'}); "
              f"TD max {td.max():.2e} (target ≤ 0.2: {'met' if td.max() <= 0.2 else 'NOT met'})",
              f"extinction: largest excess of TD over reward bases on any trial, worst seed "
              f"{ext.max():.4f} (target < 0: {'met' if ext.max() < 0 else 'NOT met'})"]
    return "\n".join(lines)


def room_table(rows: list[dict]) -> str:
    lines = ["| seed | median steps to the valued goal: rb | td | sr | share reaching it: rb | "
             "td | sr |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | " + " | ".join(f"{r[f'{k}_median_steps_after_switch']:g}"
                                                for k in ("rb", "td", "sr")) + " | "
              + " | ".join(f"{r[f'{k}_valued_goal_after_switch']:.0%}" for k in ("rb", "td", "sr"))
              + " |" for r in rows]
    med = {k: np.array([r[f"{k}_median_steps_after_switch"] for r in rows]) for k in ("rb", "td", "sr")}
    half = np.mean(med["rb"] <= med["td"] / 2)
    as_fast = np.mean(med["rb"] <= med["sr"])
    memory = {k: rows[0][f"{k}_memory"] for k in ("rb", "td", "sr")}
    lines += ["", f"median over seeds of the per-seed medians: reward bases "
              f"{np.median(med['rb']):g}, TD {np.median(med['td']):g}, SR {np.median(med['sr']):g}",
              f"reward bases ≤ half of TD on {half:.0%} of seeds; ≤ SR on {as_fast:.0%} of seeds",
              f"memory (values stored): reward bases {memory['rb']}, TD {memory['td']}, "
              f"SR {memory['sr']}"]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--sims", nargs="+", choices=SIMS, default=list(SIMS))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run (of every sim named in --sims)")
    args = parser.parse_args(argv)
    jobs = [(sim, seed, tuple(args.set)) for sim in args.sims for seed in args.seeds]
    if args.workers == 1:
        results = [run_one(job) for job in jobs]
    else:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(run_one, jobs)
    for sim, table in (("revaluation-salt", salt_table), ("revaluation-room", room_table)):
        rows = [r for r in results if r["sim"] == sim]
        if rows:
            print(f"## {sim}\n\n{table(rows)}\n")


if __name__ == "__main__":
    main()
