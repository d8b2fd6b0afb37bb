"""Spiking readouts (analysis.spiking): throughput of brian2's targets, and the dopamine PSTH of
`conditioning`.

    python benchmarks/bench_spikes.py throughput      # 1,000 neurons × 10 s, numpy vs cython
    python benchmarks/bench_spikes.py conditioning    # dopamine population PSTH, 300 trials

throughput: 10 units × 100 Poisson neurons driven for 10 s of simulated time (100 steps of
100 ms, rates 5–45 Hz varying slowly), dt = 1 ms, once per target in one process. It prints the
spikes per second of simulated time and the wall time of the first run (for cython: code
generation and compilation, unless brian2's cache already holds them) and of a second run (cached).

conditioning: `brainloop run conditioning --set omission_prob=0.1` (300 trials, seed 0), then
`brainloop spikes` on `basal_ganglia/dopamine` (50 Poisson neurons, baseline 5 Hz, gain 20 Hz,
gain_negative 5 Hz, 100 ms per step, target auto, the default: cython where it compiles). It prints the dopamine population's rate in the step of
the cue response and of the reward response for early trials (the first 10), late rewarded
trials and late omitted trials (second half), and writes the `dopamine_psth` figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RUNS = ROOT / "runs" / "bench_spikes"


def throughput() -> None:
    from analysis.spiking import SpikeMapping, simulate

    steps, units = 100, 10
    phase = np.linspace(0, 2 * np.pi, steps)[:, None] + np.linspace(0, np.pi, units)
    rates = 25 + 20 * np.sin(phase)
    print("| target | run | wall time (s) | spikes | spikes per simulated second | "
          "simulated s per wall s |\n|---|---|---|---|---|---|")
    for target in ("numpy", "cython"):
        mapping = SpikeMapping(neurons=100, target=target)
        for run in ("first", "second"):
            start = time.perf_counter()
            try:
                spikes = sum(len(t) for t, _ in simulate(rates, mapping, seed=0))
            except Exception as error:  # no compiler or Python headers here
                print(f"| {target} | {run} | failed: {error} | | | |")
                break
            wall = time.perf_counter() - start
            print(f"| {target} | {run} | {wall:.2f} | {spikes} | {spikes / 10:.0f} | "
                  f"{10 / wall:.2f} |")


def conditioning() -> None:
    from analysis.recording import Recording
    from analysis.report import write_figures
    from analysis.spiking import SpikeMapping, add_spikes
    from sims.runner import run_simulation

    out = RUNS / "conditioning.h5"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_simulation("conditioning", out=out, overrides=["omission_prob=0.1"], seed=0, quiet=True,
                   overwrite=True)
    mapping = SpikeMapping(neurons=50, baseline=5.0, gain=20.0, gain_negative=5.0)
    start = time.perf_counter()
    rho = add_spikes(out, ["basal_ganglia/dopamine=dopamine"], mapping, seed=0)["dopamine"]
    wall = time.perf_counter() - start
    with Recording(out) as rec:
        t, trial_of_step = rec["spikes/dopamine/t"], rec["conditioning/trial"]
        time_of_step, omitted = rec["conditioning/time"], rec["conditioning/omitted"].astype(bool)
        cs, us = int(rec["conditioning/cs_time"]), int(rec["conditioning/us_time"])
    step = np.minimum(mapping.steps_of(t), len(trial_of_step) - 1)
    trials = int(trial_of_step.max()) + 1
    late = np.arange(trials) >= trials // 2
    groups = {"first 10 trials (rewarded)": (np.arange(trials) < 10) & ~omitted,
              "second half, rewarded": late & ~omitted,
              "second half, omitted": late & omitted}
    print(f"{len(t)} spikes over {len(trial_of_step) * 0.1:.0f} s simulated in {wall:.1f} s; "
          f"rate_correlation {rho:.3f}\n")
    print("| trials | n | rate at the cue response (Hz) | rate at the reward response (Hz) | "
          "elsewhere (Hz) |\n|---|---|---|---|---|")
    for label, chosen in groups.items():
        in_group = chosen[trial_of_step[step]]
        rate = lambda when: (np.sum(in_group & (time_of_step[step] == when))
                             / (chosen.sum() * 50 * 0.1))
        other = [w for w in range(int(time_of_step.max()) + 1) if w not in (cs - 1, us - 1)]
        rest = np.mean([rate(w) for w in other])
        print(f"| {label} | {chosen.sum()} | {rate(cs - 1):.1f} | {rate(us - 1):.1f} | {rest:.1f} |")
    for path in write_figures(out, RUNS):
        print(f"wrote {path.relative_to(ROOT)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=("throughput", "conditioning"))
    args = parser.parse_args(argv)
    {"throughput": throughput, "conditioning": conditioning}[args.suite]()


if __name__ == "__main__":
    main()
