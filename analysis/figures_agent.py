"""Figures of closed-loop agent runs (`brainloop run agent`), found by dataset name:

- `dopamine_around_rewards` — mean δ (± s.e.m.) in a window of steps around the largest rewards
  (the top 1 % of `env/reward`) and around terminal steps;
- `world_model_error` — the world model's one-step prediction error of x: per environment step
  as perceived online (`cortex/prediction_error`, smoothed) and per update on the replayed
  windows (`cortex/world_model/loss/prediction_error`), against environment steps;
- `imagination` — observations imagined by the world model after filtering the start of a few
  replayed windows, against those that followed (`cortex/imagination/*`).

The learning curve is `rl_returns` (analysis.figures_rl).
"""

from __future__ import annotations

import numpy as np

from analysis.figures_rl import _smooth
from analysis.plotting import figure, finite, log_scale_if_positive, new_figure
from analysis.recording import Recording

WINDOW = 10  # steps shown before and after an event


def event_triggered(delta: np.ndarray, events: np.ndarray, window: int = WINDOW):
    """δ (T,) in the steps −window … +window around each event index, (n_events,
    2·window + 1); events too close to either end are left out (None when none is left)."""
    events = events[(events >= window) & (events < len(delta) - window)]
    return np.stack([delta[e - window:e + window + 1] for e in events]) if len(events) else None


@figure("dopamine_around_rewards")
def dopamine_around_rewards(rec: Recording):
    if not {"basal_ganglia/dopamine", "env/reward", "env/terminated"} <= set(rec.datasets()):
        return None
    delta = finite(rec["basal_ganglia/dopamine"])[:, 0]
    reward = finite(rec["env/reward"])[:, 0]
    if reward.ndim == 2:  # reward bases: the reward the agent felt, Σ_i α_i r_i
        if "basal_ganglia/alpha" not in rec:
            return None
        reward = (reward * rec["basal_ganglia/alpha"][:, 0]).sum(-1)
    panels = []
    if np.nanstd(reward) > 0:
        top = np.flatnonzero(reward >= np.nanpercentile(reward, 99))
        panels.append(("largest rewards (top 1 %)", event_triggered(delta, top)))
    panels.append(("terminal steps", event_triggered(delta, np.flatnonzero(rec["env/terminated"][:, 0]))))
    panels = [(title, aligned) for title, aligned in panels if aligned is not None]
    if not panels:
        return None
    fig, axes = new_figure(1, len(panels), width=4.0 * len(panels) + 0.5, height=3.2,
                           title="Dopamine δ around events")
    lags = np.arange(-WINDOW, WINDOW + 1)
    for ax, (title, aligned) in zip(np.atleast_1d(axes), panels):
        mean = np.nanmean(aligned, 0)
        sem = np.nanstd(aligned, 0) / np.sqrt(len(aligned))
        ax.plot(lags, mean, "o-", markersize=3)
        ax.fill_between(lags, mean - sem, mean + sem, alpha=0.3)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"{title}, n = {len(aligned)}")
        ax.set_xlabel("steps from the event")
        ax.set_ylabel("δ")
    return fig


@figure("world_model_error")
def world_model_error(rec: Recording):
    if "cortex/prediction_error" not in rec:
        return None
    online = finite(rec["cortex/prediction_error"])[:, 0]
    fig, ax = new_figure(title="World model: one-step prediction error of x")
    steps = np.arange(1, len(online) + 1)
    window = max(1, len(online) // 200)
    ax.plot(steps[window - 1:], _smooth(online, window), lw=0.8,
            label=f"online, mean of {window} steps")
    series = [online]
    if "cortex/world_model/loss/prediction_error" in rec:
        replayed = finite(rec["cortex/world_model/loss/prediction_error"])
        ax.plot(rec["cortex/world_model/env_step"][:len(replayed)], replayed, lw=0.8,
                label="replayed windows, per update")
        series.append(replayed)
    log_scale_if_positive(ax, *series)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("squared error (obs units²)")
    ax.legend()
    return fig


@figure("imagination")
def imagination(rec: Recording):
    if "cortex/imagination/imagined" not in rec:
        return None
    imagined, actual = rec["cortex/imagination/imagined"], rec["cortex/imagination/actual"]
    starts, horizon, dims = imagined.shape
    shown = min(starts, 4)
    fig, axes = new_figure(dims, shown, width=2.6 * shown + 0.5, height=1.8 * dims + 0.6,
                           title="Imagined (dashed) vs actual (solid) observations")
    axes = np.asarray(axes).reshape(dims, shown)
    steps = np.arange(1, horizon + 1)
    for j in range(shown):
        for i in range(dims):
            ax = axes[i, j]
            ax.plot(steps, actual[j, :, i], color="k", lw=1.0)
            ax.plot(steps, imagined[j, :, i], "--", color="C1", lw=1.0)
            if j == 0:
                ax.set_ylabel(f"x[{i}]")
            if i == dims - 1:
                ax.set_xlabel("steps ahead")
            if i == 0:
                ax.set_title(f"window {j}")
    return fig
