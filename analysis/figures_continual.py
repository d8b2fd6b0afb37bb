"""Figures and tables of `continual` and `small-batch` (PC against backprop), found by name:

- `continual_accuracy` — test accuracy on every task after every epoch, PC beside backprop
  (task switches marked);
- `continual_forgetting` — final accuracy and forgetting of one run, PC beside backprop;
- `small_batch_error` — test error against batch size, a line per shot count, PC and backprop.

Across seeds (`brainloop report DIR`, `benchmarks/bench_continual.py`): recordings grouped by
config (`conditions`), `continual_table` / `small_batch_table` (mean and 95 % confidence
interval, Student's t over seeds, and the paired PC − backprop difference) and `seed_figures`,
the forgetting bar chart with confidence intervals and the small-batch errors with theirs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.plotting import STYLE, figure, new_figure, save_figure
from analysis.recording import Recording
from analysis.report import mean_ci

NETS = {"pc": ("PC", "C0"), "bp": ("backprop", "C3")}
SCENARIOS = {"class_il": "class-incremental", "task_il": "task-incremental"}


def _scenario(rec: Recording) -> str:
    return SCENARIOS.get(rec.config.get("scenario", "class_il"), "class-incremental")


@figure("continual_accuracy")
def continual_accuracy(rec: Recording):
    if "continual/pc/accuracy" not in rec:
        return None
    task_of_epoch = rec["continual/epoch_task"]
    switches = np.flatnonzero(np.diff(task_of_epoch)) + 1
    fig, axes = new_figure(1, 2, width=10.0, height=3.4,
                           title=f"Test accuracy on each task while tasks are learned in turn "
                                 f"({_scenario(rec)})")
    for ax, net in zip(axes, NETS):
        acc = rec[f"continual/{net}/accuracy"]
        epochs = np.arange(1, len(acc) + 1)
        for t in range(acc.shape[1]):
            ax.plot(epochs, acc[:, t], label=f"task {t + 1}")
        for s in switches:
            ax.axvline(s + 0.5, color="k", lw=0.5)
        ax.set_title(f"{NETS[net][0]} (lr {rec.summary.get(f'{net}_lr', float('nan')):g})")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    return fig


@figure("continual_forgetting")
def continual_forgetting(rec: Recording):
    if "continual/pc/accuracy" not in rec or "pc_forgetting" not in rec.summary:
        return None
    fig, ax = new_figure(1, 1, width=5.0, height=3.2,
                         title=f"Final accuracy and forgetting ({_scenario(rec)})")
    x = np.arange(2)
    for k, net in enumerate(NETS):
        values = [rec.summary[f"{net}_final_accuracy"], rec.summary[f"{net}_forgetting"]]
        ax.bar(x + 0.4 * k - 0.2, values, 0.4, color=NETS[net][1], label=NETS[net][0])
    ax.set_xticks(x, ["final accuracy (mean over tasks)", "forgetting"])
    ax.legend()
    return fig


@figure("small_batch_error")
def small_batch_error(rec: Recording):
    if "small_batch/pc/test_error" not in rec:
        return None
    batches, shots = rec["small_batch/batch_sizes"], rec["small_batch/shots"]
    fig, ax = new_figure(1, 1, width=6.0, height=3.6,
                         title="Test error after the same examples seen")
    for net, style in zip(NETS, ("-", "--")):
        error = rec[f"small_batch/{net}/test_error"]
        for k, n in enumerate(shots):
            ax.plot(batches, error[k], style, marker="o", color=f"C{k}",
                    label=f"{NETS[net][0]}, {n} per digit")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("test error")
    ax.legend(fontsize=7, ncol=2)
    return fig


def _summaries(paths) -> list[dict]:
    out = []
    for path in paths:
        with Recording(path) as rec:
            out.append({"summary": dict(rec.summary),
                        **{name: rec[name] for name in rec.datasets()
                           if name.endswith("test_error") or name.startswith("small_batch/")
                           and "/" not in name[12:]}})
    return out


def continual_table(paths) -> str:
    """Final accuracy and forgetting of PC and backprop, and their paired difference (the same
    split and initial weights per seed), mean ± 95 % CI over the runs at `paths`."""
    runs = _summaries(paths)
    lines = ["| network | final accuracy | forgetting | learning rates chosen (* at the grid's "
             "edge) |", "|---|---|---|---|"]
    for net in NETS:
        acc = mean_ci([r["summary"][f"{net}_final_accuracy"] for r in runs])
        fgt = mean_ci([r["summary"][f"{net}_forgetting"] for r in runs])
        lrs = ", ".join(f"{r['summary'][f'{net}_lr']:g}"
                        + ("*" if r["summary"][f"{net}_lr_at_grid_edge"] else "") for r in runs)
        lines.append(f"| {NETS[net][0]} | {acc[0]:.3f} ± {acc[1]:.3f} | {fgt[0]:.3f} ± "
                     f"{fgt[1]:.3f} | {lrs} |")
    diff = {key: mean_ci([r["summary"][f"pc_{key}"] - r["summary"][f"bp_{key}"] for r in runs])
            for key in ("final_accuracy", "forgetting")}
    lines.append(f"| PC − backprop (paired) | {diff['final_accuracy'][0]:+.3f} ± "
                 f"{diff['final_accuracy'][1]:.3f} | {diff['forgetting'][0]:+.3f} ± "
                 f"{diff['forgetting'][1]:.3f} | |")
    return "\n".join(lines)


def small_batch_table(paths) -> str:
    runs = _summaries(paths)
    batches, shots = runs[0]["small_batch/batch_sizes"], runs[0]["small_batch/shots"]
    lines = ["| per digit | batch | PC test error | backprop test error | PC − backprop |",
             "|---|---|---|---|---|"]
    for k, n in enumerate(shots):
        for b, batch in enumerate(batches):
            pc = [r["small_batch/pc/test_error"][k, b] for r in runs]
            bp = [r["small_batch/bp/test_error"][k, b] for r in runs]
            (m1, h1), (m2, h2) = mean_ci(pc), mean_ci(bp)
            d = mean_ci(np.subtract(pc, bp))
            lines.append(f"| {n} | {batch} | {m1:.3f} ± {h1:.3f} | {m2:.3f} ± {h2:.3f} | "
                         f"{d[0]:+.3f} ± {d[1]:.3f} |")
    pc = mean_ci([r["summary"]["pc_test_error"] for r in runs])
    bp = mean_ci([r["summary"]["bp_test_error"] for r in runs])
    lines += ["", f"mean over the grid: PC {pc[0]:.3f} ± {pc[1]:.3f}, backprop "
              f"{bp[0]:.3f} ± {bp[1]:.3f}"]
    return "\n".join(lines)


def _leaves(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value)
    return out


def conditions(directory, sim: str) -> dict[str, list[Path]]:
    """The recordings of `sim` in `directory`, grouped by config (seeds pooled), each group
    labelled by the config values that tell it from the others."""
    groups: dict[str, list[Path]] = {}
    configs: dict[str, dict] = {}
    for path in sorted(Path(directory).glob("*.h5")):
        try:
            with Recording(path) as rec:
                if rec.sim != sim or not rec.summary:
                    continue
                key = json.dumps(rec.config, sort_keys=True)
                configs[key] = _leaves(rec.config)
        except ValueError:
            continue
        groups.setdefault(key, []).append(path)
    varying = sorted({k for c in configs.values() for k in c
                      if len({d.get(k) for d in configs.values()}) > 1})
    return {"\n".join(f"{k.split('.')[-1]}={json.loads(configs[g][k])}" for k in varying) or sim:
            paths for g, paths in groups.items()}


def report_pooled(directory) -> tuple[str, list[Path]]:
    """Tables (mean ± 95 % CI over seeds) and `seed_figures` for the continual and
    small-batch recordings in `directory`."""
    text = []
    for sim, table in (("continual", continual_table), ("small-batch", small_batch_table)):
        for label, paths in conditions(directory, sim).items():
            text.append(f"## {sim}: {label.replace(chr(10), ', ')} ({len(paths)} seeds)\n\n"
                        f"{table(paths)}\n")
    return "\n".join(text), seed_figures(directory)


def seed_figures(directory) -> list[Path]:
    """The forgetting bar chart (final accuracy and forgetting, mean ± 95 % CI over seeds, per
    condition of `conditions`) and the small-batch errors with their CIs, as PNGs in
    `directory`."""
    import matplotlib

    directory, written = Path(directory), []
    groups = conditions(directory, "continual")
    if groups:
        with matplotlib.rc_context(STYLE):
            fig, axes = new_figure(1, 2, width=11.0, height=3.8,
                                   title="PC vs backprop after learning tasks in turn "
                                         "(mean ± 95 % CI over seeds)")
            x = np.arange(len(groups))
            for k, net in enumerate(NETS):
                for ax, key in zip(axes, ("final_accuracy", "forgetting")):
                    cis = [mean_ci([r["summary"][f"{net}_{key}"] for r in _summaries(paths)])
                           for paths in groups.values()]
                    ax.bar(x + 0.4 * k - 0.2, [m for m, _ in cis], 0.4,
                           yerr=[h for _, h in cis], capsize=3, color=NETS[net][1],
                           label=NETS[net][0])
            for ax, label in zip(axes, ("final accuracy (mean over tasks)", "forgetting")):
                ax.set_xticks(x, list(groups), fontsize=7)
                ax.set_ylabel(label)
            axes[0].legend()
            written.append(save_figure(fig, directory / "forgetting.png"))
    paths = [p for group in conditions(directory, "small-batch").values() for p in group]
    if paths:
        runs = _summaries(paths)
        batches, shots = runs[0]["small_batch/batch_sizes"], runs[0]["small_batch/shots"]
        with matplotlib.rc_context(STYLE):
            fig, axes = new_figure(1, len(shots), width=3.2 * len(shots), height=3.2,
                                   title="Test error after the same examples seen "
                                                      "(mean ± 95 % CI over seeds)")
            for ax, (k, n) in zip(np.atleast_1d(axes), enumerate(shots)):
                for net in NETS:
                    stats_ = [mean_ci([r[f"small_batch/{net}/test_error"][k, b] for r in runs])
                              for b in range(len(batches))]
                    ax.errorbar(batches, [m for m, _ in stats_], [h for _, h in stats_],
                                marker="o", capsize=3, color=NETS[net][1], label=NETS[net][0])
                ax.set_xscale("log", base=2)
                ax.set_title(f"{n} per digit")
                ax.set_xlabel("batch size")
            np.atleast_1d(axes)[0].set_ylabel("test error")
            np.atleast_1d(axes)[0].legend()
            written.append(save_figure(fig, directory / "small_batch.png"))
    return written
