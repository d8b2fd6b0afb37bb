"""The closed loop's cost: RL steps/s and peak memory, side by side with an earlier checkout.

    git worktree add ../old <commit>                       # the code to compare against
    python benchmarks/bench_loop.py speed --old ../old     # SAC and PPO steps/s, old vs new
    python benchmarks/bench_loop.py memory --old ../old    # DQN peak RSS at 10k and 40k steps

Every measurement runs in a fresh process (one torch thread) with only that checkout on its
path, so both sides use the same driver: `make_agent(algo, env, seed=0).learn(steps)`, with or
without a Recorder, which is the API the two share. `speed` alternates old and new for each
configuration and prints steps/s and the ratio new/old; `memory` prints the peak resident set
size (ru_maxrss) of a DQN run with recording at a fixed replay capacity (100k transitions) after
10k and 40k steps, and the growth between them.
"""

from __future__ import annotations

import argparse
import json
import os
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


def measure(src: Path, algo: str, env: str, steps: int, record: bool) -> dict:
    """Run the driver with only `src` on the path; returns its JSON line."""
    environ = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", DRIVER, algo, env, str(steps), str(int(record))],
                         cwd=src, env=environ, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{src}: {algo} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def sides(old: str | None) -> list[tuple[str, Path]]:
    pairs = [("new", HERE)]
    if old:
        pairs.insert(0, ("old", Path(old).resolve()))
    return pairs


def speed(args) -> None:
    print("| algo | env steps | recorded | code | steps/s | new / old |")
    print("|---|---|---|---|---|---|")
    for algo, env, steps in (("sac", "Pendulum-v1", args.sac_steps),
                             ("ppo", "CartPole-v1", args.ppo_steps)):
        for record in (False, True):
            rates: dict[str, list[float]] = {}
            for _ in range(args.repeats):
                for name, src in sides(args.old):
                    rates.setdefault(name, []).append(
                        measure(src, algo, env, steps, record)["steps_per_s"])
            for name, values in rates.items():
                mean = sum(values) / len(values)
                ratio = ""
                if name == "new" and "old" in rates:
                    ratio = f"{mean / (sum(rates['old']) / len(rates['old'])):.3f}"
                runs = ", ".join(f"{v:.0f}" for v in values)
                print(f"| {algo} | {steps} | {'yes' if record else 'no'} | {name} | {mean:.0f} "
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("speed", "memory"))
    p.add_argument("--old", help="a checkout of the code to compare against (e.g. a worktree)")
    p.add_argument("--repeats", type=int, default=1, help="speed: runs per side, alternated")
    p.add_argument("--sac-steps", type=int, default=3000)
    p.add_argument("--ppo-steps", type=int, default=20_000)
    p.add_argument("--dqn-steps", type=int, nargs=2, default=[10_000, 40_000])
    args = p.parse_args(argv)
    (speed if args.what == "speed" else memory)(args)


if __name__ == "__main__":
    main()
