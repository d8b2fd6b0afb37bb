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
