"""Benchmark the RL family against the "must reach" thresholds and Stable-Baselines3's speed.

    python benchmarks/bench_rl.py                      # every algorithm, seeds 0 1 2
    python benchmarks/bench_rl.py --algos sac ppo --seeds 0 --steps 5000 --workers 2

Each (algorithm, seed) trains in its own process with one torch thread, then is evaluated
over 10 deterministic episodes. Results go to benchmarks/results/rl.jsonl (one JSON line per
run, with the evaluation curve) and a table with mean ± std and pass/fail is printed. The
speed comparison trains brainloop and Stable-Baselines3 (if installed) with the same
hyper-parameters for the same number of steps, one after the other in one process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESULTS = Path(__file__).resolve().parent / "results"

# algo: (env, env steps, threshold, eval_every, config overrides)
RUNS = {
    "sac": ("Pendulum-v1", 20_000, -200.0, 2000, {}),
    "ddpg": ("Pendulum-v1", 20_000, -200.0, 2000, {}),
    "svg0": ("Pendulum-v1", 20_000, -200.0, 2000, {}),
    "dqn": ("CartPole-v1", 50_000, 475.0, 5000, {}),
    "ppo": ("CartPole-v1", 100_000, 475.0, 10_000, {}),
}


def train_one(job: tuple[str, int, int | None, dict]) -> dict:
    import torch

    torch.set_num_threads(1)
    from basal_ganglia.agents import make_agent

    algo, seed, steps, params = job
    env_id, budget, threshold, eval_every, overrides = RUNS[algo]
    steps = steps or budget
    agent = make_agent(algo, env_id, seed=seed, **{**overrides, **params})
    curve_steps, curve_returns = [], []

    def evaluate_on_schedule(agent) -> None:
        # nothing is recorded, so evaluation draws from no training generator: the learning
        # run is the same as without evaluations
        if agent.num_steps // eval_every > evaluate_on_schedule.done:
            evaluate_on_schedule.done = agent.num_steps // eval_every
            curve_steps.append(agent.num_steps)
            curve_returns.append(float(agent.evaluate(5).mean()))
    evaluate_on_schedule.done = 0

    start = time.perf_counter()
    agent.learn(steps, callback=evaluate_on_schedule)
    wall = time.perf_counter() - start
    eval_returns = agent.evaluate(10)
    result = dict(algo=algo, env=env_id, seed=seed, steps=agent.num_steps, params=params,
                  best_eval_return=float(max(curve_returns + [eval_returns.mean()])),
                  final_eval_return=float(eval_returns.mean()),
                  final_eval_std=float(eval_returns.std()), threshold=threshold,
                  wall_s=wall, steps_per_s=agent.num_steps / wall,
                  eval_curve_steps=curve_steps, eval_curve_return=curve_returns)
    print(f"  done {algo} seed {seed}: eval {result['final_eval_return']:.1f}, "
          f"{result['steps_per_s']:.0f} steps/s", flush=True)
    return result


def sb3_reference(job: tuple[str, int]) -> dict:
    """Train Stable-Baselines3's DQN with the same rl-zoo settings; evaluate like ours."""
    import gymnasium as gym
    import torch

    torch.set_num_threads(1)
    import stable_baselines3 as sb3

    algo, seed = job
    if algo != "dqn":
        raise ValueError(f"no SB3 reference run defined for {algo!r}")
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_rate=2.3e-3, batch_size=64,
                    buffer_size=100_000, learning_starts=1000, gamma=0.99,
                    target_update_interval=10, train_freq=256, gradient_steps=128,
                    exploration_fraction=0.16, exploration_final_eps=0.04,
                    policy_kwargs=dict(net_arch=[256, 256]), seed=seed, device="cpu")
    model.learn(RUNS[algo][1])
    env, returns = gym.make("CartPole-v1"), []
    for i in range(10):
        obs, _ = env.reset(seed=seed + 10_000 + i)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(int(model.predict(obs, deterministic=True)[0]))
            total, done = total + r, term or trunc
        returns.append(total)
    return dict(algo=algo, impl="stable-baselines3 " + sb3.__version__, seed=seed,
                final_eval_return=float(np.mean(returns)), final_eval_std=float(np.std(returns)))


def speed_comparison(steps_sac: int, steps_ppo: int) -> list[dict]:
    """Steps/s of brainloop vs SB3 for SAC (Pendulum) and PPO (CartPole), same settings."""
    import torch

    torch.set_num_threads(1)
    from basal_ganglia.agents import make_agent

    try:
        import stable_baselines3 as sb3
        from stable_baselines3.common.env_util import make_vec_env
    except ImportError:
        print("stable-baselines3 not installed: skipping the speed comparison")
        return []
    rows = []
    t = time.perf_counter()
    make_agent("sac", "Pendulum-v1", seed=0).learn(steps_sac)
    rows.append(dict(algo="sac", impl="brainloop", steps=steps_sac,
                     steps_per_s=steps_sac / (time.perf_counter() - t)))
    model = sb3.SAC("MlpPolicy", "Pendulum-v1", learning_rate=1e-3, seed=0, device="cpu")
    t = time.perf_counter()
    model.learn(steps_sac)
    rows.append(dict(algo="sac", impl="stable-baselines3 " + sb3.__version__, steps=steps_sac,
                     steps_per_s=steps_sac / (time.perf_counter() - t)))
    t = time.perf_counter()
    make_agent("ppo", "CartPole-v1", seed=0).learn(steps_ppo)
    rows.append(dict(algo="ppo", impl="brainloop", steps=steps_ppo,
                     steps_per_s=steps_ppo / (time.perf_counter() - t)))
    lin = lambda v: (lambda p: p * v)
    model = sb3.PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=0), n_steps=32,
                    batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                    learning_rate=lin(1e-3), clip_range=lin(0.2), seed=0, device="cpu")
    t = time.perf_counter()
    model.learn(steps_ppo)
    rows.append(dict(algo="ppo", impl="stable-baselines3 " + sb3.__version__, steps=steps_ppo,
                     steps_per_s=steps_ppo / (time.perf_counter() - t)))
    return rows


def conditioning_check(out: Path) -> list[tuple[str, float, str, bool]]:
    """Run `conditioning` with its defaults and test the "must reach" conditions."""
    from analysis.recording import Recording
    from sims.runner import run_simulation

    path = out.with_name("conditioning.h5")
    run_simulation("conditioning", out=path, quiet=True, overwrite=True)
    rec = Recording(path)
    s, us, r = rec.summary, int(rec["conditioning/us_time"]), 1.0
    # δ_t of each step is the response at trial time t + 1, the state the step leads into
    first = rec["basal_ganglia/dopamine"][:, 0][rec["conditioning/trial"] == 0]
    peak = int(first.argmax()) + 1
    dip = int(rec["conditioning/omission_dopamine"].argmin()) + 1
    return [
        ("first trial: δ peaks at the US", float(peak), f"= {us}", peak == us),
        ("delta_us_first", s["delta_us_first"], f"= R = {r}", abs(s["delta_us_first"] - r) < 1e-6),
        ("delta_cs_last", s["delta_cs_last"], f"within 5% of Rγ^k = {s['delta_cs_expected']:.4f}",
         abs(s["delta_cs_last"] / s["delta_cs_expected"] - 1) <= 0.05),
        ("delta_us_last", s["delta_us_last"], "abs ≤ 0.05 R", abs(s["delta_us_last"]) <= 0.05 * r),
        ("delta_omission", s["delta_omission"], "within 0.05 R of −R",
         abs(s["delta_omission"] + r) <= 0.05 * r),
        ("omission dip at the US time", float(dip), f"= {us}", dip == us),
    ]


def plot_curves(results: list[dict], path: Path) -> None:
    """Evaluation return against env steps, one panel per algorithm, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    algos = sorted({r["algo"] for r in results})
    fig = Figure(figsize=(3.2 * len(algos), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(algos)))
    for ax, algo in zip(axes, algos):
        for r in (r for r in results if r["algo"] == algo):
            ax.plot(r["eval_curve_steps"] + [r["steps"]],
                    r["eval_curve_return"] + [r["final_eval_return"]], marker="o", ms=3,
                    label=f"seed {r['seed']}")
        ax.axhline(r["threshold"], color="k", ls=":", lw=0.8)
        ax.set_title(f"{algo} on {r['env']}")
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("deterministic evaluation return")
    fig.savefig(path, dpi=120)


def table(results: list[dict]) -> str:
    lines = ["| algo | env | seed | env steps | final eval return (10 ep.) | best periodic eval "
             "| steps/s |", "|---|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r["algo"], r["seed"])):
        best = max(r["eval_curve_return"] + [r["final_eval_return"]])
        lines.append(f"| {r['algo']} | {r['env']} | {r['seed']} | {r['steps']} | "
                     f"{r['final_eval_return']:.1f} ± {r['final_eval_std']:.1f} | {best:.1f} | "
                     f"{r['steps_per_s']:.0f} |")
    lines += ["", "| algo | env | seeds | mean ± std of final eval return | threshold | "
              "pass |", "|---|---|---|---|---|---|"]
    for algo in sorted({r["algo"] for r in results}):
        rs = [r for r in results if r["algo"] == algo]
        v = np.array([r["final_eval_return"] for r in rs])
        ok = v.mean() >= rs[0]["threshold"]
        lines.append(f"| {algo} | {rs[0]['env']} | {len(rs)} | {v.mean():.1f} ± {v.std():.1f} | "
                     f"≥ {rs[0]['threshold']:g} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="*", default=list(RUNS), choices=list(RUNS),
                   help="algorithms to train (none: only the conditioning and speed checks)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=None, help="override every env-step budget")
    p.add_argument("--params", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides for every run, e.g. advantage=truncated")
    p.add_argument("--workers", type=int, default=2, help="parallel training processes")
    p.add_argument("--speed-steps", type=int, nargs=2, default=[3000, 20_000],
                   metavar=("SAC", "PPO"), help="steps of the SB3 speed comparison (0 0 = skip)")
    p.add_argument("--sb3-reference", nargs="*", default=[], choices=["dqn"],
                   help="also train SB3 on these with the same settings and seeds")
    p.add_argument("--out", default=str(RESULTS / "rl.jsonl"))
    p.add_argument("--no-conditioning", action="store_true", help="skip the conditioning check")
    p.add_argument("--plot-only", action="store_true",
                   help="only redraw the curves and table from the existing --out file")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        results = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
        plot_curves(results, out.with_suffix(".png"))
        print(table(results))
        return
    if not args.no_conditioning:
        print("| conditioning check | value | target | pass |\n|---|---|---|---|")
        for name, value, target, ok in conditioning_check(out):
            print(f"| {name} | {value:.4f} | {target} | {'yes' if ok else 'NO'} |")
    params = {}
    for item in args.params:
        key, _, raw = item.partition("=")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw  # a bare string such as advantage=truncated
    jobs = [(a, s, args.steps, params) for s in args.seeds for a in args.algos]
    results = []
    if jobs:
        with mp.get_context("spawn").Pool(args.workers) as pool, out.open("a") as f:
            for r in pool.imap_unordered(train_one, jobs):
                results.append(r)
                f.write(json.dumps(r) + "\n")
                f.flush()
        print(table(results))
        plot_curves(results, out.with_suffix(".png"))
    if args.sb3_reference:
        jobs = [(a, s) for a in args.sb3_reference for s in args.seeds]
        with mp.get_context("spawn").Pool(args.workers) as pool, \
                out.with_name("sb3_reference.jsonl").open("a") as f:
            refs = list(pool.imap_unordered(sb3_reference, jobs))
            for r in refs:
                f.write(json.dumps(r) + "\n")
        print("\n| algo | implementation | seed | final eval return (10 ep.) |\n|---|---|---|---|")
        for r in sorted(refs, key=lambda r: (r["algo"], r["seed"])):
            print(f"| {r['algo']} | {r['impl']} | {r['seed']} | "
                  f"{r['final_eval_return']:.1f} ± {r['final_eval_std']:.1f} |")
    if args.speed_steps[0] > 0:
        rows = speed_comparison(*args.speed_steps)
        with out.with_name("speed.jsonl").open("a") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print("\n| algo | implementation | env steps | steps/s |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['algo']} | {r['impl']} | {r['steps']} | {r['steps_per_s']:.0f} |")


if __name__ == "__main__":
    main()
