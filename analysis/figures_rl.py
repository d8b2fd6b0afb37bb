"""Figures of basal-ganglia runs, found by dataset name (DESIGN §7):

- `conditioning_dopamine` — δ over trial time for an early, a middle and the last trial and the
  omission probe, and δ of every trial as an image (`basal_ganglia/dopamine` (step, 1) placed by
  `conditioning/trial` and `conditioning/time`);
- `rl_returns` — training episode returns and evaluation returns against env steps;
- `rl_losses` — every `rl/loss/<name>` against env steps;
- `rl_dopamine` — the dopamine δ (step, env) of a training run against environment steps;
- `action_free_energy` — the six terms under `basal_ganglia/action_free_energy/` per update.
"""

from __future__ import annotations

import numpy as np

from analysis.plotting import figure, finite, log_scale_if_positive, new_figure
from analysis.recording import Recording


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window <= 1:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


@figure("conditioning_dopamine")
def conditioning_dopamine(rec: Recording):
    """δ over trial time for the first, a middle and the last trial and the omission probe, and
    every trial as an image. Each step's δ_t is drawn at trial time t + 1, the state its
    transition leads into: the CS and US responses sit at the CS and US times."""
    names = ("basal_ganglia/dopamine", "conditioning/trial", "conditioning/time",
             "conditioning/cs_time", "conditioning/us_time")
    if any(name not in rec for name in names):
        return None
    delta = _by_trial(finite(rec["basal_ganglia/dopamine"])[:, 0], rec["conditioning/trial"],
                      rec["conditioning/time"])
    cs, us = int(rec["conditioning/cs_time"]), int(rec["conditioning/us_time"])
    t = np.arange(delta.shape[1])
    fig, (ax, im_ax) = new_figure(1, 2, width=10.0, height=3.6,
                                  title="Dopamine δ over trial time (TD learning)")
    n = len(delta)
    # the "middle" trial is where the CS response first reaches half its final size
    half = np.flatnonzero(delta[:, cs] >= 0.5 * delta[-1, cs])
    middle = int(half[0]) if len(half) and 0 < half[0] < n - 1 else n // 2
    for i, label in ((0, "first"), (middle, "middle"), (n - 1, "last")):
        ax.plot(t, delta[i], marker="o", markersize=2.5, label=f"{label} trial ({i + 1})")
    if "conditioning/omission_dopamine" in rec:
        omission = finite(rec["conditioning/omission_dopamine"])
        ax.plot(1 + np.arange(len(omission)), omission, "k--", marker="x", markersize=3,
                label="omission probe")
    for x, name in ((cs, "CS"), (us, "US")):
        ax.axvline(x, color="0.5", lw=0.8, ls=":")
        ax.text(x, ax.get_ylim()[1], name, ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("time in trial (steps)")
    ax.set_ylabel("δ")
    ax.legend(loc="lower left")
    lim = np.nanmax(np.abs(delta)) or 1.0
    image = im_ax.imshow(delta, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim,
                         origin="lower", interpolation="nearest")
    im_ax.set_xlabel("time in trial (steps)")
    im_ax.set_ylabel("trial")
    im_ax.grid(False)
    fig.colorbar(image, ax=im_ax, label="δ")
    return fig


def _by_trial(delta: np.ndarray, trial: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Per-step δ_t (step,) as (trials, trial_length): row = trial, column t + 1 = the trial
    time the step leads into; column 0 (no step leads into a trial's start) is NaN."""
    steps = min(len(delta), len(trial), len(time))  # a killed run may end between appends
    delta, trial, time = delta[:steps], trial[:steps], time[:steps]
    grid = np.full((int(trial.max()) + 1, int(time.max()) + 2), np.nan)
    grid[trial, time + 1] = delta
    return grid


@figure("rl_returns")
def rl_returns(rec: Recording):
    if "rl/episode_return" not in rec:
        return None
    fig, ax = new_figure(title="Returns")
    steps, ret = rec["rl/episode_env_step"], finite(rec["rl/episode_return"])
    ax.plot(steps, ret, ".", markersize=2, alpha=0.4, label="training episodes")
    window = max(1, len(ret) // 50)
    if window > 1:
        ax.plot(steps[window - 1:], _smooth(ret, window), label=f"mean of {window}")
    if "rl/eval_return" in rec:
        ax.plot(rec["rl/eval_env_step"], finite(rec["rl/eval_return"]), "o-", color="k",
                markersize=3, label="evaluation (deterministic)")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.legend()
    return fig


@figure("rl_losses")
def rl_losses(rec: Recording):
    names = [n for n in rec.datasets() if n.startswith("rl/loss/")]
    if not names or "rl/update_env_step" not in rec:
        return None
    steps = rec["rl/update_env_step"]
    fig, axes = new_figure(1, len(names), width=3.2 * len(names) + 0.5, height=3.0,
                           title="Training losses")
    for ax, name in zip(np.atleast_1d(axes), names):
        values = finite(rec[name])
        ax.plot(steps[: len(values)], values, lw=0.8)
        log_scale_if_positive(ax, values)
        ax.set_title(name.removeprefix("rl/loss/"))
        ax.set_xlabel("environment steps")
    return fig


@figure("rl_dopamine")
def rl_dopamine(rec: Recording):
    if "basal_ganglia/dopamine" not in rec or "rl/episode_return" not in rec:
        return None
    delta = finite(rec["basal_ganglia/dopamine"])  # (step, env)
    n_envs = delta.shape[1]
    steps = (np.arange(len(delta)) + 1) * n_envs  # environment steps taken after each row
    fig, ax = new_figure(title="Dopamine δ (TD error) during training")
    ax.plot(steps, delta[:, 0], ",", alpha=0.3,
            label="δ per step" + (" (environment 0)" if n_envs > 1 else ""))
    magnitude = np.abs(delta).mean(1)
    window = max(1, len(magnitude) // 200)
    if window > 1:
        ax.plot(steps[window - 1:], _smooth(magnitude, window),
                label=f"|δ|, mean of {window} steps" + (f" × {n_envs} envs" if n_envs > 1 else ""))
    ax.set_xlabel("environment steps")
    ax.set_ylabel("δ")
    ax.legend()
    return fig


@figure("action_free_energy")
def action_free_energy(rec: Recording):
    prefix = "basal_ganglia/action_free_energy/"
    names = [n for n in rec.datasets() if n.startswith(prefix)]
    if not names:
        return None
    # one small panel per term: their scales differ by orders of magnitude
    cols = 4
    rows = -(-len(names) // cols)
    fig, axes = new_figure(rows, cols, width=11.0, height=2.3 * rows,
                           title="Action free energy terms (seed Eq. 2), per update")
    axes = np.atleast_1d(axes).ravel()
    for ax, name in zip(axes, names):
        ax.plot(finite(rec[name]), lw=0.8)
        ax.set_title(name.removeprefix(prefix))
        ax.set_xlabel("update")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return fig
