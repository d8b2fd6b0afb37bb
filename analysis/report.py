"""Reports on one recording: a plain-text summary and every registered figure as PNG files.

The figure modules in `FIGURE_MODULES` are imported when figures are asked for, each adding its
figures to `analysis.plotting.FIGURES`; a module not written yet (absent) is skipped.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from analysis.recording import Recording

FIGURE_MODULES = ["analysis.figures_pc", "analysis.figures_temporal", "analysis.figures_rl",
                  "analysis.figures_agent", "analysis.figures_revaluation",
                  "analysis.figures_spikes", "analysis.figures_continual"]


def summarize(path) -> str:
    """A text report: provenance, config, the /summary figures and a table of the datasets."""
    with Recording(path) as rec:
        lines = [
            f"recording {Path(path)}",
            f"  sim      {rec.sim}",
            f"  seed     {rec.seed}",
            f"  created  {rec.created}",
            f"  format   brainloop v{rec.format_version}",
            "  versions " + ", ".join(f"{name} {version}" for name, version in rec.versions.items()),
            "",
            "config",
        ]
        lines += [f"  {key} = {json.dumps(value)}" for key, value in _flat_config(rec.config)]
        lines += ["", "summary" + ("" if rec.summary else " (none: the run did not finish)")]
        width = max((len(name) for name in rec.summary), default=0)
        lines += [f"  {name:<{width}} = {value:.6g}" for name, value in rec.summary.items()]
        rows = []
        for name in rec.datasets():
            attrs = rec.attrs(name)
            info = f"{rec.shape(name)} {rec.dtype(name)}"
            meaning = "; ".join(part for part in (
                f"[{attrs['units']}]" if "units" in attrs else "", attrs.get("description", ""))
                if part)
            rows.append((name, info, meaning))
        lines += ["", f"datasets ({len(rows)})"]
        name_width = max((len(row[0]) for row in rows), default=0)
        info_width = max((len(row[1]) for row in rows), default=0)
        lines += [f"  {name:<{name_width}}  {info:<{info_width}}  {meaning}".rstrip()
                  for name, info, meaning in rows]
    return "\n".join(lines)


def write_figures(path, out_dir=None) -> list[Path]:
    """Draw every registered figure this recording has data for, as `<stem>_<figure>.png`.

    Args:
        path: the recording.
        out_dir: where to write (created if missing); default: the recording's directory.

    Returns:
        The paths written, in figure-name order.
    """
    from analysis.plotting import FIGURES, save_figure

    for module in FIGURE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            # Only the module itself being absent is skipped; a broken import inside it is a bug.
            if error.name != module:
                raise
    path = Path(path)
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    written = []
    with Recording(path) as rec:
        for name in sorted(FIGURES):
            fig = FIGURES[name](rec)
            if fig is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                written.append(save_figure(fig, out_dir / f"{path.stem}_{name}.png"))
    return written


def _flat_config(config: dict, prefix: str = ""):
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _flat_config(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value



def mean_ci(values) -> tuple[float, float]:
    """Mean and half-width of the 95 % confidence interval (Student's t) over seeds."""
    from scipy import stats

    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def sweep_table(index_path) -> str:
    """The runs of a sweep's index.csv pooled over seeds: per combination of grid values, the
    runs done and failed and each summary figure's mean ± 95 % CI."""
    import csv

    with open(index_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return f"{index_path}: no runs"
    columns = list(rows[0])
    keys = columns[1:columns.index("seed")]
    figures = [c for c in columns[columns.index("recording") + 1:] if c != "wall_time_s"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in keys), []).append(row)
    lines = ["| " + " | ".join([*keys, "runs (done/failed)", *figures]) + " |",
             "|---" * (len(keys) + 1 + len(figures)) + "|"]
    for combo, group in groups.items():
        ok = [r for r in group if r["status"] in ("done", "skipped")]
        cells = []
        for name in figures:
            values = [float(r[name]) for r in ok if r[name] != ""]
            if values:
                m, h = mean_ci(values)
                cells.append(f"{m:.4g}" + ("" if np.isnan(h) else f" ± {h:.2g}"))
            else:
                cells.append("")
        failed = sum(r["status"] == "failed" for r in group)
        pending = len(group) - len(ok) - failed
        runs = f"{len(ok)}/{failed}" + (f" ({pending} pending)" if pending else "")
        lines.append("| " + " | ".join([*combo, runs, *cells]) + " |")
    return "\n".join(lines)


def report_directory(directory) -> tuple[str, list[Path]]:
    """A directory of runs: the sweep's index pooled over seeds (when there is one), and the
    pooled tables and figures of continual / small-batch runs."""
    from analysis.figures_continual import report_pooled

    directory = Path(directory)
    text = []
    if (directory / "index.csv").is_file():
        text.append(f"## sweep ({directory / 'index.csv'}), mean ± 95 % CI over seeds\n\n"
                    f"{sweep_table(directory / 'index.csv')}\n")
    pooled, written = report_pooled(directory)
    return "\n".join(text + ([pooled] if pooled else [])), written
