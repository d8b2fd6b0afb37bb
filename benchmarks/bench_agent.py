"""Benchmark the agent (issue 11): the cortex perceives, the basal ganglia act, replay trains.

    python benchmarks/bench_agent.py pendulum --seeds 0 1 2 --workers 2   # masked Pendulum-v1
    python benchmarks/bench_agent.py cartpole --seeds 0 1 2 --workers 2   # CartPole-v1
    python benchmarks/bench_agent.py replay --seeds 0 --workers 2         # world model ablation
    python benchmarks/bench_agent.py speed                                # full vs raw agent

Every run is `brainloop run agent` (sims/agent.py) with the overrides below, in its own process
with one torch thread; recordings go to runs/bench_agent/<suite>/ and one JSON line per run to
benchmarks/results/agent.jsonl. Each suite prints a markdown table of what it measured:

- pendulum: Pendulum-v1 with the angular velocity hidden (observe=0,1), the full agent
  against the same agent with its temporal terms switched off (no U, no efference copy);
  final deterministic evaluation over 10 episodes, and the evaluations along the way;
- cartpole: CartPole-v1, full observation, DQN reading the temporal PC state, beside the same
  DQN reading the raw observation, and the full agent with its learning rate annealed to 0
  (anneal); the networks of the best periodic evaluation are kept (`keep_best`) and scored on
  fresh episodes, the last networks' score beside them;
- replay: the masked pendulum with world-model learning from replay on and off
  (cortex.learn): the world model's one-step prediction error over training;
- speed: environment steps per second of the full agent and of the raw-observation agent of
  the same algorithm, one after the other in one process, and the full agent's time shares.
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
RUNS = ROOT / "runs" / "bench_agent"

PENDULUM = ["algo=sac", "env=Pendulum-v1", "observe=0,1", "sac.learning_starts=2000", "sac.buffer_size=50000",
            "eval_every=5000", "eval_episodes=10"]
NO_TEMPORAL = ["cortex.temporal=false", "cortex.efference_copy=false"]
RAW = ["perception=raw", "state_nodes=x"]
# DQN's last networks swing between ~30 and 500 from one evaluation to the next (raw
# observation too): keep those of the best evaluation, scored at the end on fresh episodes
CARTPOLE = ["algo=dqn", "env=CartPole-v1", "eval_every=5000", "eval_episodes=20", "keep_best=true",
            "cortex.sequence_length=16"]
SUITES = {
    # suite: {variant: (env steps, overrides)}
    "pendulum": {"full": (50_000, PENDULUM), "no_temporal": (50_000, PENDULUM + NO_TEMPORAL)},
    "cartpole": {"full": (100_000, CARTPOLE), "raw": (100_000, CARTPOLE + RAW),
                 "anneal": (100_000, CARTPOLE + ["dqn.anneal=true"])},
    "replay": {"learning": (20_000, PENDULUM), "no_learning": (20_000, PENDULUM + ["cortex.learn=false"])},
    "speed": {"full": (5_000, PENDULUM + ["eval_every=0", "eval_episodes=1", "imagine=0"]),
              "raw": (5_000, PENDULUM + ["eval_every=0", "eval_episodes=1"] + RAW)},
}


def run_one(job: tuple[str, str, int, int | None, tuple[str, ...]]) -> dict:
    import torch

    torch.set_num_threads(1)
    from analysis.recording import Recording
    from sims.runner import run_simulation

    suite, variant, seed, steps, extra = job
    budget, overrides = SUITES[suite][variant]
    steps = steps or budget
    out = RUNS / suite / f"{variant}_seed{seed}.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = run_simulation("agent", out=out, overrides=[*overrides, f"steps={steps}", *extra],
                             seed=seed, quiet=True, overwrite=True)
    with Recording(out) as rec:
        curve = {"eval_env_step": rec["rl/eval_env_step"].tolist() if "rl/eval_env_step" in rec else [],
                 "eval_return": rec["rl/eval_return"].tolist() if "rl/eval_return" in rec else []}
        if "cortex/prediction_error" in rec:
            online = rec["cortex/prediction_error"][:, 0]
            edges = np.linspace(0, len(online), 11).astype(int)
            curve["prediction_error_step"] = edges[1:].tolist()
            curve["prediction_error"] = [float(online[a:b].mean()) for a, b in zip(edges[:-1], edges[1:])]
    result = dict(suite=suite, variant=variant, seed=seed, steps=steps, overrides=[*overrides, *extra],
                  recording=str(out.relative_to(ROOT)), **figures, **curve)
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "agent.jsonl", "a") as f:
        f.write(json.dumps(result) + "\n")
    return result


def table(results: list[dict]) -> str:
    kept = any("last_mean_return" in r for r in results)  # keep_best: kept and last networks
    extra = " kept at | last networks |" if kept else ""
    lines = ["| suite | variant | seed | env steps | final eval return | evaluations along the way "
             f"| world-model error | steps/s |{extra}", "|---|---|---|---|---|---|---|---|"
             + ("---|---|" if kept else "")]
    for r in results:
        evals = ", ".join(f"{s // 1000}k: {v:.0f}" for s, v in zip(r["eval_env_step"], r["eval_return"]))
        row = (f"| {r['suite']} | {r['variant']} | {r['seed']} | {r['env_steps']} | "
               f"{r['final_mean_return']:.1f} | {evals} | {r['world_model_error']:.4g} | "
               f"{r['steps_per_second']:.1f} |")
        if kept:
            row += (f" {r['best_env_step'] // 1000}k | {r['last_mean_return']:.1f} |"
                    if "last_mean_return" in r else " – | – |")
        lines.append(row)
    by_variant: dict[tuple, list[float]] = {}
    for r in results:
        by_variant.setdefault((r["suite"], r["variant"]), []).append(r["final_mean_return"])
    lines += ["", "| suite | variant | seeds | mean ± std of final eval return |", "|---|---|---|---|"]
    lines += [f"| {s} | {v} | {len(x)} | {np.mean(x):.1f} ± {np.std(x):.1f} |"
              for (s, v), x in by_variant.items()]
    return "\n".join(lines)


def replay_table(results: list[dict]) -> str:
    lines = ["| variant | seed | one-step prediction error of x per tenth of training (online) |",
             "|---|---|---|"]
    for r in results:
        errors = ", ".join(f"{e:.4f}" for e in r.get("prediction_error", []))
        lines.append(f"| {r['variant']} | {r['seed']} | {errors} |")
    return "\n".join(lines)


def speed_table(results: list[dict]) -> str:
    by = {r["variant"]: r for r in results}
    full, raw = by["full"], by["raw"]
    shares = ", ".join(f"{k.removeprefix('time_share_')} {v:.1%}" for k, v in sorted(full.items())
                       if k.startswith("time_share_"))
    return (f"| agent | steps/s |\n|---|---|\n| full (cortex) | {full['steps_per_second']:.1f} |\n"
            f"| raw observation | {raw['steps_per_second']:.1f} |\n\nratio full / raw: "
            f"{full['steps_per_second'] / raw['steps_per_second']:.3f}\n\n"
            f"time shares of the full agent: {shares}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=SUITES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", help="default: every variant of the suite")
    parser.add_argument("--steps", type=int, help="override the suite's env steps")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides")
    args = parser.parse_args(argv)
    variants = args.variants or list(SUITES[args.suite])
    seeds = args.seeds[:1] if args.suite == "speed" else args.seeds
    jobs = [(args.suite, v, s, args.steps, tuple(args.set)) for s in seeds for v in variants]
    if args.suite == "speed" or args.workers == 1:  # speed: one after the other, one process
        results = [run_one(job) for job in jobs]
    else:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            results = pool.map(run_one, jobs)
    print({"speed": speed_table, "replay": replay_table}.get(args.suite, table)(results))


if __name__ == "__main__":
    main()
