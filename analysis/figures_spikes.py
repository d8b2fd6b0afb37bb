"""Figures of spiking readouts (`brainloop spikes`, analysis.spiking), found by dataset name:

- `spike_raster` — for each population (up to four): a raster of its first neurons over the
  first steps of the run, and over the same steps its population rate recovered from the
  spikes (per step, mean over units) against the rate that drove it;
- `dopamine_psth` — for a `conditioning` run with a population driven by
  `basal_ganglia/dopamine`: the peri-stimulus time histogram over trial time (20 ms bins,
  mean over neurons and trials) of early trials, late trials with reward, and trials with the
  reward omitted in the second half of training, with the cue and the reward marked at the
  steps whose δ responds to them (δ of step τ − 1 leads into trial time τ).
"""

from __future__ import annotations

import numpy as np

from analysis.plotting import figure, new_figure
from analysis.recording import Recording
from analysis.spiking import spike_steps

BIN_S = 0.02
RASTER_NEURONS = 50
RASTER_STEPS = 100
EARLY_TRIALS = 10


def populations(rec: Recording) -> list[str]:
    """Spiking populations in the recording, in recorded order."""
    return [n.split("/")[1] for n in rec.datasets()
            if n.startswith("spikes/") and n.endswith("/rate")]


@figure("spike_raster")
def spike_raster(rec: Recording):
    pops = populations(rec)[:4]
    if not pops:
        return None
    fig, axes = new_figure(len(pops), 2, width=10.0, height=2.6 * len(pops),
                           title="Spiking populations driven by recorded signals")
    axes = np.atleast_2d(axes)
    for (raster, rate_ax), pop in zip(axes, pops):
        attrs = rec.attrs(f"spikes/{pop}")
        step_s, neurons = attrs["step_ms"] / 1000, int(attrs["neurons"])
        t, i = rec[f"spikes/{pop}/t"], rec[f"spikes/{pop}/i"]
        rate = rec[f"spikes/{pop}/rate"]
        shown = (i < RASTER_NEURONS) & (t < RASTER_STEPS * step_s)
        raster.plot(t[shown], i[shown], "|", color="k", markersize=3)
        raster.set_xlabel("time (s)")
        raster.set_ylabel("neuron")
        raster.set_title(f"{pop} ({attrs['signal']}), first {RASTER_STEPS} steps")
        steps, units = rate.shape
        step = np.minimum(spike_steps(t, attrs["step_ms"], attrs["dt_ms"]), steps - 1)
        counts = np.bincount(step, minlength=steps) / (neurons * units * step_s)
        window = slice(0, min(steps, RASTER_STEPS))
        x = np.arange(steps)[window] * step_s
        rate_ax.step(x, counts[window], where="post", color="C0", label="from spikes")
        rate_ax.step(x, rate.mean(1)[window], where="post", color="C3", label="driving rate")
        rate_ax.set_xlabel("time (s)")
        rate_ax.set_ylabel("rate (Hz)")
        rate_ax.set_title(f"population rate (r = {attrs['rate_correlation']:.3f} over the run)")
        rate_ax.legend()
    return fig


@figure("dopamine_psth")
def dopamine_psth(rec: Recording):
    names = set(rec.datasets())
    pop = next((p for p in populations(rec)
                if rec.attrs(f"spikes/{p}").get("signal") == "basal_ganglia/dopamine"), None)
    if pop is None or not {"conditioning/trial", "conditioning/time", "conditioning/cs_time",
                           "conditioning/us_time"} <= names:
        return None
    attrs = rec.attrs(f"spikes/{pop}")
    step_s, neurons = attrs["step_ms"] / 1000, int(attrs["neurons"])
    trial_of_step, time_of_step = rec["conditioning/trial"], rec["conditioning/time"]
    trials, length = int(trial_of_step.max()) + 1, int(time_of_step.max()) + 1
    omitted = (rec["conditioning/omitted"].astype(bool) if "conditioning/omitted" in names
               else np.zeros(trials, bool))
    t = rec[f"spikes/{pop}/t"]
    step = np.minimum(spike_steps(t, attrs["step_ms"], attrs["dt_ms"]), len(trial_of_step) - 1)
    within = time_of_step[step] * step_s + (t - step * step_s)  # time since the trial began
    trial = trial_of_step[step]
    edges = np.arange(0, length * step_s + BIN_S / 2, BIN_S)
    late = np.arange(trials) >= trials // 2
    groups = {f"first {EARLY_TRIALS} trials": (np.arange(trials) < EARLY_TRIALS) & ~omitted,
              "second half, rewarded": late & ~omitted,
              "second half, reward omitted": late & omitted}
    fig, ax = new_figure(1, 1, width=7.0, height=3.6,
                         title=f"Dopamine population PSTH ({neurons} {attrs['model']} neurons)")
    for (label, chosen), color in zip(groups.items(), ("C0", "C3", "C2")):
        if not chosen.any():
            continue
        counts, _ = np.histogram(within[chosen[trial]], edges)
        ax.step(edges[:-1], counts / (chosen.sum() * neurons * BIN_S), where="post", color=color,
                label=f"{label} (n = {chosen.sum()})")
    cs, us = int(rec["conditioning/cs_time"]), int(rec["conditioning/us_time"])
    for at, label in ((cs - 1, "cue"), (us - 1, "reward")):
        ax.axvline(at * step_s, color="k", lw=0.6, ls="--")
        ax.text(at * step_s, ax.get_ylim()[1], f" {label}", va="top", fontsize=8)
    ax.axhline(attrs["baseline"], color="0.5", lw=0.6)
    ax.set_xlabel("time in trial (s)")
    ax.set_ylabel("rate (Hz)")
    ax.legend(fontsize=7)
    return fig
