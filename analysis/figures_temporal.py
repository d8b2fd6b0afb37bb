"""Figures of temporal predictive-coding runs, found by dataset name (one section per simulation).
"""

from __future__ import annotations

import numpy as np

from analysis.plotting import figure, finite, new_figure
from analysis.recording import Recording


# ---------------------------------------------------------------------------------- tracking
# `tracking/{true_state,observation,tpc_estimate,kalman_estimate}`: (T, B, d) per time step;
# `tracking/sweep_{steps,tpc_mse,ratio}`: one value per number of inference steps K.

_TRACKING_WINDOW = 200
_TRACKING_COMPONENTS = (("position", "m"), ("velocity", "m/s"), ("acceleration", "m/s²"))
_TRACKING_RATIO_TARGET = 1.10


@figure("tracking_estimates")
def tracking_estimates(rec: Recording):
    """Position, velocity and acceleration of one sequence over the last ~200 steps: the truth,
    the observations, and the tPC and Kalman estimates (errors below each panel)."""
    names = ("tracking/true_state", "tracking/tpc_estimate", "tracking/kalman_estimate")
    if any(name not in rec for name in names):
        return None
    truth, tpc, kalman = (finite(rec[name])[:, 0] for name in names)
    observation = finite(rec["tracking/observation"])[:, 0] if "tracking/observation" in rec else None
    steps = len(truth)
    window = slice(max(0, steps - _TRACKING_WINDOW), steps)
    dt = rec.config.get("dt")
    time = np.arange(steps) * (dt if dt else 1.0)
    k = rec.config.get("inference_steps")
    prior = rec.config.get("prior_precision")
    fig, axes = new_figure(3, 2, width=10.0, height=7.0,
                           title=f"Tracking one sequence: tPC (K={k}, {prior}) vs Kalman filter")
    for row, (label, units) in enumerate(_TRACKING_COMPONENTS):
        ax, err_ax = axes[row]
        t = time[window]
        observed = observation is not None and observation.shape[1] > row
        if observed:
            ax.plot(t, observation[window, row], ".", color="0.6", markersize=2.5, label="observation")
            err_ax.plot(t, observation[window, row] - truth[window, row], ".", color="0.6", markersize=2.5)
        ax.plot(t, truth[window, row], color="black", label="truth")
        ax.plot(t, kalman[window, row], color="tab:blue", label="Kalman")
        ax.plot(t, tpc[window, row], color="tab:orange", linestyle="--", label="tPC")
        ax.set_ylabel(f"{label} ({units})")
        err_ax.plot(t, kalman[window, row] - truth[window, row], color="tab:blue")
        err_ax.plot(t, tpc[window, row] - truth[window, row], color="tab:orange", linestyle="--")
        err_ax.axhline(0.0, color="black", linewidth=0.6)
        err_ax.set_ylabel(f"error ({units})")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), markerscale=3)
    axes[0, 0].set_title("Estimates and truth")
    axes[0, 1].set_title("Minus the truth")
    for ax in axes[-1]:
        ax.set_xlabel("time (s)" if dt else "time step")
    return fig


@figure("tracking_sweep")
def tracking_sweep(rec: Recording):
    """MSE ratio tPC / Kalman against the number of inference steps per time step (log x)."""
    if "tracking/sweep_steps" not in rec or "tracking/sweep_ratio" not in rec:
        return None
    k = finite(rec["tracking/sweep_steps"])
    ratio = finite(rec["tracking/sweep_ratio"])
    order = np.argsort(k)
    fig, ax = new_figure(width=5.5, height=3.5,
                         title=f"tPC / Kalman MSE vs inference steps ({rec.config.get('prior_precision')})")
    ax.plot(k[order], ratio[order], marker="o", color="tab:orange", label="tPC / Kalman")
    ax.axhline(_TRACKING_RATIO_TARGET, color="tab:red", linestyle="--", linewidth=1.0,
               label=f"{_TRACKING_RATIO_TARGET:.2f} (target)")
    ax.axhline(1.0, color="tab:blue", linewidth=1.0, label="Kalman (optimal)")
    converged = rec.summary.get("mse_ratio_converged")
    if converged is not None:
        ax.axhline(converged, color="0.4", linestyle=":", linewidth=1.0,
                   label=f"exact minimiser of F ({converged:.3f})")
    ax.set_xscale("log")
    ax.set_xticks(k[order], [f"{int(v)}" for v in k[order]])
    ax.minorticks_off()
    if np.nanmax(ratio) / max(np.nanmin(ratio), 1e-12) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("inference steps per time step K")
    ax.set_ylabel("MSE ratio")
    ax.legend()
    return fig


# ---------------------------------------------------------------------------- pendulum-model
# `pendulum/{prediction,nochange}_error`: (horizon,) held-out MSE k = 1..horizon steps ahead;
# `pendulum/example_truth` (T, d), `pendulum/example_imagined` (horizon, starts, d),
# `pendulum/example_starts` (starts,): imagined trajectories of one held-out episode.

_PENDULUM_OBS = ("cos θ", "sin θ", "ω / 4")


@figure("pendulum_horizon")
def pendulum_horizon(rec: Recording):
    """Imagination error against the horizon k, for the world model and for "no change"."""
    names = ("pendulum/prediction_error", "pendulum/nochange_error")
    if any(name not in rec for name in names):
        return None
    model_err, still_err = (finite(rec[name]) for name in names)
    k = np.arange(1, len(model_err) + 1)
    variant = "position only" if rec.config.get("partial") else "full observation"
    fig, ax = new_figure(title=f"Pendulum world model: {len(k)}-step imagination ({variant})")
    ax.plot(k, still_err, marker="o", color="grey", label="no change")
    ax.plot(k, model_err, marker="o", color="tab:orange", label="temporal PC model")
    ax.set_yscale("log")
    ax.set_xlabel("steps ahead k")
    ax.set_ylabel("held-out MSE (obs units²)")
    ax.set_xticks(k)
    ax.legend()
    return fig


@figure("pendulum_imagination")
def pendulum_imagination(rec: Recording):
    """One held-out episode: the observations and the model's imagined futures from each start."""
    names = ("pendulum/example_truth", "pendulum/example_imagined", "pendulum/example_starts")
    if any(name not in rec for name in names):
        return None
    truth, imagined, starts = (rec[name] for name in names)
    dt = rec.config.get("dt", 1.0)
    time = np.arange(len(truth)) * dt
    horizon = imagined.shape[0]
    fig, axes = new_figure(truth.shape[1], 1, width=8.0, height=2.2 * truth.shape[1],
                           title="Imagined futures under the applied torques (held-out episode)")
    axes = np.atleast_1d(axes)
    for d, ax in enumerate(axes):
        ax.plot(time, truth[:, d], color="black", lw=1.5, label="observed")
        # A handful of start points keeps the imagined futures readable.
        for j in range(0, len(starts), max(1, len(starts) // 6)):
            t0 = starts[j]
            t = (t0 + np.arange(1, horizon + 1)) * dt
            ax.plot(t, imagined[:, j, d], color="tab:orange", lw=1.2, alpha=0.9,
                    label=f"imagined {horizon} steps from the inferred state" if j == 0 else None)
            ax.plot(t0 * dt, truth[t0, d], "o", color="tab:orange", ms=3)
        ax.set_ylabel(_PENDULUM_OBS[d] if d < len(_PENDULUM_OBS) else f"x{d}")
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(loc="lower left", fontsize="small")
    return fig
