"""The closed loop's cost: RL steps/s and peak memory, side by side with an earlier checkout.

    git worktree add ../old <commit>                       # the code to compare against
    python benchmarks/bench_loop.py speed --old ../old     # SAC and PPO steps/s, old vs new
    python benchmarks/bench_loop.py memory --old ../old    # DQN peak RSS at 10k and 40k steps
    python benchmarks/bench_loop.py numerics --old ../old  # same seed: the same networks?

Every measurement runs in a fresh process (one torch thread) with only that checkout on its
path, so both sides use the same driver: `make_agent(algo, env, seed=0).learn(steps)`, with or
without a Recorder, which is the API the two share. `speed` alternates old and new for each
configuration and prints the median steps/s and the ratio of the medians new/old; `memory`
prints the peak resident set size (ru_maxrss) of a DQN run with recording at a fixed replay
capacity (100k transitions) after 10k and 40k steps, and the growth between them; `numerics`
trains every algorithm for 512 steps with small networks on both sides and prints whether the
learned parameters and two evaluation returns are bit-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

DRIVER = """
import json, resource, sys, tempfile, time
import torch
torch.set_num_threads(1)
from basal_ganglia.agents import make_agent
from analysis.recording import Recorder
algo, env, steps, record = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
agent = make_agent(algo, env, seed=0)
start = time.perf_counter()
if record:
    with tempfile.TemporaryDirectory() as tmp:
        with Recorder(tmp + "/run.h5", sim="rl", seed=0, config={}) as rec:
            agent.learn(steps, recorder=rec)
else:
    agent.learn(steps)
wall = time.perf_counter() - start
print(json.dumps(dict(steps=agent.num_steps, wall_s=wall, steps_per_s=agent.num_steps / wall,
                      peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


NUMERICS = """
import json, torch
from torch import nn
torch.set_num_threads(1)
from basal_ganglia.agents import make_agent
small = {"hidden": (16, 16)}
off = dict(small, learning_starts=50, batch_size=16, buffer_size=500)
runs = {"dqn": ("CartPole-v1", dict(off, train_freq=16, gradient_steps=4)),
        "ddpg": ("Pendulum-v1", off), "svg0": ("Pendulum-v1", off),
        "sac": ("Pendulum-v1", dict(off, drift_coef=0.1)),
        "reinforce": ("CartPole-v1", dict(small, n_envs=2, n_steps=64)),
        "ppo": ("Pendulum-v1", dict(small, n_envs=2, n_steps=32, batch_size=32, n_epochs=2)),
        "td_lambda": ("CartPole-v1", dict(small, n_steps=64))}
out = {}
for algo, (env, overrides) in runs.items():
    agent = make_agent(algo, env, seed=1, **overrides)
    agent.learn(512)  # whole rollouts: the new annealing cap at progress 1 is not reached
    nets = getattr(agent, "algo", agent)  # the old agents held their networks themselves
    params = [p.detach().double() for m in vars(nets).values() if isinstance(m, nn.Module)
              for p in m.parameters()]
    out[algo] = [[float(p.sum()) for p in params], agent.evaluate(2).tolist(), agent.num_steps]
print(json.dumps(out))
"""


def run_driver(src: Path, code: str, *args) -> dict:
    """Run `code` with only the checkout `src` on the path; returns its last JSON line."""
    environ = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=src, env=environ,
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{src}: {' '.join(map(str, args))} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(src: Path, algo: str, env: str, steps: int, record: bool) -> dict:
    return run_driver(src, DRIVER, algo, env, steps, int(record))


def sides(old: str | None) -> list[tuple[str, Path]]:
    pairs = [("new", HERE)]
    if old:
        pairs.insert(0, ("old", Path(old).resolve()))
    return pairs


def speed(args) -> None:
    print("| algo | env steps | recorded | code | median steps/s (runs) | new / old |")
    print("|---|---|---|---|---|---|")
    for algo, env, steps in (("sac", "Pendulum-v1", args.sac_steps),
                             ("ppo", "CartPole-v1", args.ppo_steps)):
        if algo not in args.algos:
            continue
        for record in (False, True):
            rates: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for name, src in sides(args.old):
                    rates.setdefault(name, []).append(
                        measure(src, algo, env, steps, record)["steps_per_s"])
            for name, values in rates.items():
                # the median: a shared machine slows single runs by tens of percent
                median = statistics.median(values)
                ratio = ""
                if name == "new" and "old" in rates:
                    ratio = f"{median / statistics.median(rates['old']):.3f}"
                runs = ", ".join(f"{v:.0f}" for v in values)
                print(f"| {algo} | {steps} | {'yes' if record else 'no'} | {name} | {median:.0f} "
                      f"({runs}) | {ratio} |", flush=True)


def memory(args) -> None:
    print("| code | env steps | peak RSS (MB) |")
    print("|---|---|---|")
    for name, src in sides(args.old):
        peaks = []
        for steps in args.dqn_steps:
            peak = measure(src, "dqn", "CartPole-v1", steps, True)["peak_rss_mb"]
            peaks.append(peak)
            print(f"| {name} | {steps} | {peak:.1f} |", flush=True)
        print(f"| {name} | growth {args.dqn_steps[0]} → {args.dqn_steps[-1]} | "
              f"{peaks[-1] - peaks[0]:+.1f} |", flush=True)


def numerics(args) -> None:
    if not args.old:
        raise SystemExit("numerics compares two checkouts: give --old")
    old, new = (run_driver(src, NUMERICS) for _, src in sides(args.old))
    print("| algo | parameter sums equal | evaluation returns (old) | (new) | bit-identical |")
    print("|---|---|---|---|---|")
    for algo in new:
        same = old[algo] == new[algo]
        print(f"| {algo} | {old[algo][0] == new[algo][0]} | {old[algo][1]} | {new[algo][1]} | "
              f"{'yes' if same else 'NO'} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("speed", "memory", "numerics"))
    p.add_argument("--old", help="a checkout of the code to compare against (e.g. a worktree)")
    p.add_argument("--repeats", type=int, default=1, help="speed: runs per side, alternated")
    p.add_argument("--algos", nargs="+", default=["sac", "ppo"], choices=["sac", "ppo"],
                   help="speed: which algorithms")
    p.add_argument("--sac-steps", type=int, default=3000)
    p.add_argument("--ppo-steps", type=int, default=20_000)
    p.add_argument("--dqn-steps", type=int, nargs=2, default=[10_000, 40_000])
    args = p.parse_args(argv)
    {"speed": speed, "memory": memory, "numerics": numerics}[args.what](args)


if __name__ == "__main__":
    main()
