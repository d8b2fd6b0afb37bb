"""The figure registry and the one plotting style every brainloop figure uses.

A figure module decorates `fn(rec: Recording) -> Figure | None` with `@figure("name")`; it
returns None when the recording lacks the datasets it needs, so `analysis.report` can offer every
registered figure to every recording. Figures are built as `matplotlib.figure.Figure` objects (no
pyplot, so no global figure state and no display needed; PNGs render through Agg), inside the
shared `STYLE`, and saved at 150 dpi by `save_figure`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from analysis.recording import Recording

DPI = 150
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}

FigureFn = Callable[[Recording], "Figure | None"]
FIGURES: dict[str, FigureFn] = {}


def figure(name: str) -> Callable[[FigureFn], FigureFn]:
    """Register a figure function under `name` (the suffix of its PNG file); it draws in STYLE."""
    def register(fn: FigureFn) -> FigureFn:
        if name in FIGURES and FIGURES[name].__module__ != fn.__module__:
            raise ValueError(f"figure {name!r} is registered twice: by "
                             f"{FIGURES[name].__module__} and by {fn.__module__}")

        @functools.wraps(fn)
        def styled(rec: Recording) -> Figure | None:
            with matplotlib.rc_context(STYLE):
                return fn(rec)

        FIGURES[name] = styled
        return styled
    return register


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float = 3.5,
               title: str | None = None):
    """A styled figure and its axes (an array when there are several), laid out automatically."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=True)
    if title:
        fig.suptitle(title)
    return fig, axes


def axis_label(quantity: str, units: str | None = None) -> str:
    """'free energy (nats)' — the quantity with its units when the recording gives them."""
    return f"{quantity} ({units})" if units else quantity


def finite(values: np.ndarray) -> np.ndarray:
    """`values` as floats with non-finite entries as NaN, which matplotlib leaves as gaps."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def log_scale_if_positive(ax, *series: np.ndarray) -> None:
    """Log y axis when every finite value is positive (errors and energies span decades)."""
    values = np.concatenate([np.ravel(s) for s in series]) if series else np.array([])
    values = values[np.isfinite(values)]
    if values.size and np.all(values > 0):
        ax.set_yscale("log")


def save_figure(fig: Figure, path) -> Path:
    """Write `fig` as a PNG at `DPI`; returns the path."""
    path = Path(path)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path
