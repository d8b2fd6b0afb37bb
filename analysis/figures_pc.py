"""Figures of predictive-coding training runs, found by dataset name so that any simulation that
follows the naming gets them:

- `metrics/<name>` — one value per evaluation, against `metrics/epoch` when present;
- `cortex/free_energy_trace` — (n_rows, K+1): F before each of the K inference iterations and
  after the last, for a few recorded training batches; `cortex/free_energy_trace_step` (n_rows,)
  is the training step of each row;
- `cortex/<node>/error_rms` — RMS prediction error of each node per training step, or
  `cortex/<node>/error`, the error vectors (step, env, d), reduced to their RMS per step; and
  `cortex/free_energy` per step.
"""

from __future__ import annotations

import numpy as np
from matplotlib import cm, colors
from matplotlib.ticker import MaxNLocator

from analysis.plotting import axis_label, figure, finite, log_scale_if_positive, new_figure
from analysis.recording import Recording

_TRACE_ROWS = 6


@figure("learning_curves")
def learning_curves(rec: Recording):
    """Every `metrics/*` series against epochs: accuracies (in %) in one panel, losses in another."""
    names = [name for name in rec.datasets() if name.startswith("metrics/")
             and name != "metrics/epoch" and len(rec.shape(name)) == 1]
    if not names:
        return None
    accuracy = [name for name in names if "accuracy" in name.rsplit("/", 1)[-1]]
    other = [name for name in names if name not in accuracy]
    panels = [(group, label) for group, label in ((accuracy, "accuracy"), (other, "loss"))
              if group]
    fig, axes = new_figure(1, len(panels), width=4.0 * len(panels) + 1.0, title="Learning curves")
    axes = np.atleast_1d(axes)
    epochs = rec["metrics/epoch"] if "metrics/epoch" in rec else None
    for ax, (group, label) in zip(axes, panels):
        for name in group:
            values = finite(rec[name])
            x = epochs if epochs is not None and len(epochs) == len(values) else np.arange(len(values))
            units = rec.attrs(name).get("units")
            # Accuracies are recorded as fractions unless their units say %.
            if label == "accuracy" and units != "%":
                values = 100.0 * values
            ax.plot(x, values, marker="o", markersize=3, label=name.removeprefix("metrics/"))
        if label == "accuracy":
            ax.set_ylabel(axis_label("accuracy", "%"))
        else:
            units = {rec.attrs(name).get("units") for name in group}
            ax.set_ylabel(axis_label("loss", units.pop() if len(units) == 1 else None))
        ax.set_xlabel("epoch" if epochs is not None else "evaluation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label.capitalize())
        ax.legend()
    return fig


@figure("free_energy_trace")
def free_energy_trace(rec: Recording):
    """How far inference lowers F over its iterations, for a few training batches, early (dark)
    to late (light): F minus its value at the initial state. (Its log-normaliser is constant
    during inference, so the drop is that of the prediction-error energy, and a batch late in
    training is not flattened against the normaliser.)"""
    if "cortex/free_energy_trace" not in rec:
        return None
    trace = finite(rec["cortex/free_energy_trace"])
    if trace.ndim != 2 or len(trace) == 0:
        return None
    steps = (rec["cortex/free_energy_trace_step"] if "cortex/free_energy_trace_step" in rec
             else np.arange(len(trace)))
    rows = np.unique(np.linspace(0, len(trace) - 1, min(_TRACE_ROWS, len(trace))).round().astype(int))
    norm = colors.Normalize(vmin=float(steps[rows[0]]), vmax=float(max(steps[rows[-1]], steps[rows[0]] + 1)))
    fig, ax = new_figure(title="Free energy during inference")
    iterations = np.arange(trace.shape[1])
    drop = trace - trace[:, :1]
    for row in rows:
        ax.plot(iterations, drop[row], color=cm.viridis(norm(steps[row])))
    ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("inference iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(axis_label("F − F(initial state)", rec.attrs("cortex/free_energy_trace").get("units")))
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="training step")
    return fig


@figure("node_errors")
def node_errors(rec: Recording):
    """RMS prediction error of every node over training, and the free energy when recorded."""
    names = [name for name in rec.datasets() if name.startswith("cortex/") and name.count("/") == 2
             and name.endswith(("/error", "/error_rms"))]
    if not names:
        return None
    has_f = "cortex/free_energy" in rec
    fig, axes = new_figure(1, 2 if has_f else 1, width=10.0 if has_f else 6.0,
                           title="Prediction errors per recorded step")
    axes = np.atleast_1d(axes)
    errors = []
    for name in names:
        values = finite(rec[name])
        if values.ndim > 1:
            values = np.sqrt(np.mean(values.reshape(len(values), -1) ** 2, axis=1))
        errors.append(values)
        axes[0].plot(values, label=name.split("/")[1])
    log_scale_if_positive(axes[0], *errors)
    units = {rec.attrs(name).get("units") for name in names}
    axes[0].set_ylabel(axis_label("RMS error", units.pop() if len(units) == 1 else None))
    axes[0].set_xlabel("step (training batch or time step)")
    axes[0].set_title("Per-node error")
    axes[0].legend(title="node")
    if has_f:
        energy = finite(rec["cortex/free_energy"])
        if energy.ndim > 1:
            energy = energy.reshape(len(energy), -1).mean(axis=1)
        axes[1].plot(energy, color="black")
        log_scale_if_positive(axes[1], energy)
        axes[1].set_xlabel("step (training batch or time step)")
        axes[1].set_ylabel(axis_label("free energy F", rec.attrs("cortex/free_energy").get("units")))
        axes[1].set_title("Free energy")
    return fig
