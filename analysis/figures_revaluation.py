"""Figures of the revaluation simulations (`revaluation-salt`, `revaluation-room`):

- `revaluation_salt` — each learner's approach probability of every cue per trial, in the
  `outcome` and the `extinction` condition, with the motivational switch marked; beside it the
  published behaviour of the Dead Sea salt experiment (Robinson & Berridge 2013, as modelled by
  Millidge et al.: salt 1.0 → 3.3, juice 4.2 → 4.5 in the source's units) and the model's
  approach probabilities on the last trial before and the first trial after the switch;
- `revaluation_dopamine` — reward bases' dopamine at the onset of each cue, per basis weighed
  by α (α_i δ^i) and in total, averaged over the cue's last five trials before the switch and
  its first trial after it: the paper's prediction that dopamine follows the motivational
  weights, which change before any new learning;
- `revaluation_room` — steps per episode of each learner through the motivational timeline
  to the valued goal (the episode cap when another goal or none was reached; switches
  marked), and those of the first 5 episodes after every switch.
"""

from __future__ import annotations

import numpy as np

from analysis.plotting import figure, new_figure
from analysis.recording import Recording

LEARNER_LABELS = {"rb": "reward bases", "td": "TD", "sr": "SR"}
# Robinson & Berridge (2013), behaviour towards each CS before and after the sodium-appetite
# switch, in the units of the source (as reproduced by Millidge et al.)
PUBLISHED = {"salt": (1.0, 3.3), "juice": (4.2, 4.5)}


def _names(rec: Recording, prefix: str) -> list[str]:
    """The last path parts of the datasets directly under `prefix/`, in recorded order."""
    return [name[len(prefix) + 1:] for name in rec.datasets()
            if name.startswith(prefix + "/") and "/" not in name[len(prefix) + 1:]]


@figure("revaluation_salt")
def revaluation_salt(rec: Recording):
    conditions = [c for c in ("outcome", "extinction") if f"revaluation/{c}/cue" in rec]
    if not conditions or "revaluation/switch" not in rec:
        return None
    switch = int(rec["revaluation/switch"][0])
    cues = _names(rec, f"revaluation/{conditions[0]}/rb/p_approach")
    fig, axes = new_figure(1, len(conditions) + 1, width=4.0 * (len(conditions) + 1),
                           height=3.4, title="Revaluation after a motivational switch")
    styles = {cue: ls for cue, ls in zip(cues, ("-", "--", ":", "-."))}
    for ax, condition in zip(axes, conditions):
        # TD and SR coincide when outcomes follow cues at once: TD drawn wide beneath
        for learner, color, lw in zip(("td", "rb", "sr"), ("C3", "C0", "C2"), (3.0, 1.4, 1.4)):
            for cue in cues:
                p = rec[f"revaluation/{condition}/{learner}/p_approach/{cue}"]
                ax.plot(np.arange(len(p)), p, styles[cue], color=color, lw=lw,
                        label=f"{LEARNER_LABELS[learner]}: {cue}")
        ax.axvline(switch - 0.5, color="k", lw=0.8)
        if condition == "extinction" and "revaluation/extinction_from" in rec:
            ax.axvspan(int(rec["revaluation/extinction_from"]) - 0.5, len(p), color="0.9",
                       zorder=0)
        ax.set_xlim(max(0, switch - 20), len(p))
        ax.set_title(f"{condition} after the switch")
        ax.set_xlabel("trial")
        ax.set_ylabel("approach probability σ(β V̂)")
    axes[0].legend(fontsize=7, ncol=1)
    ax = axes[-1]
    condition = "outcome" if "outcome" in conditions else conditions[0]
    groups = [("published", None)] + [(LEARNER_LABELS[k], k) for k in LEARNER_LABELS]
    scale = max(max(v) for v in PUBLISHED.values())
    ticks = []
    for k, cue in enumerate(cues):
        for j, (label, learner) in enumerate(groups):
            if learner is None:
                if cue not in PUBLISHED:
                    continue
                before, after = np.asarray(PUBLISHED[cue]) / scale
            else:
                p = rec[f"revaluation/{condition}/{learner}/p_approach/{cue}"]
                before, after = p[switch - 1], p[switch]
            x = k * (len(groups) + 1) + j
            color = "0.3" if learner is None else f"C{(0, 3, 2)[j - 1]}"
            ax.bar(x - 0.2, before, 0.4, color=color, alpha=0.35)
            ax.bar(x + 0.2, after, 0.4, color=color)
            ticks.append((x, f"{cue}\n{label}"))
    ax.set_xticks(*zip(*ticks), fontsize=6, rotation=90)
    ax.set_ylabel("probability (published: ÷ largest)")
    ax.set_title("last trial before (light) and first after (dark)")
    return fig


@figure("revaluation_dopamine")
def revaluation_dopamine(rec: Recording):
    if "revaluation/outcome/cue" not in rec or "revaluation/switch" not in rec:
        return None
    switch = int(rec["revaluation/switch"][0])
    bases = _names(rec, "revaluation/alpha")
    cues = _names(rec, "revaluation/outcome/rb/p_approach")
    cue_of = rec["revaluation/outcome/cue"]
    alpha = np.stack([rec[f"revaluation/alpha/{b}"] for b in bases], -1)
    delta = np.stack([rec[f"revaluation/outcome/bases/{b}/dopamine_cue"] for b in bases], -1)
    weighed = alpha * delta
    fig, axes = new_figure(1, len(cues), width=3.6 * len(cues), height=3.2,
                           title="Dopamine at cue onset, reward bases: α_i δ^i and total")
    for ax, (c, cue) in zip(np.atleast_1d(axes), enumerate(cues)):
        trials = np.flatnonzero(cue_of == c)
        before = trials[trials < switch][-5:]
        after = trials[trials >= switch][:1]
        if len(before) == 0 or len(after) == 0:
            ax.set_title(f"cue {cue}: not presented on both sides of the switch")
            continue
        labels = [*bases, "total"]
        rows = [np.c_[weighed[t], weighed[t].sum(-1)] for t in (before, after)]
        x = np.arange(len(labels))
        ax.bar(x - 0.2, rows[0].mean(0), 0.4, label="before (last 5 trials)", color="0.6")
        ax.bar(x + 0.2, rows[1].mean(0), 0.4, label="first trial after", color="C0")
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(x, labels)
        ax.set_title(f"cue {cue}")
        ax.set_ylabel("δ at cue onset")
    np.atleast_1d(axes)[0].legend()
    return fig


@figure("revaluation_room")
def revaluation_room(rec: Recording):
    learners = [k for k in LEARNER_LABELS if f"revaluation/room/{k}/steps_to_goal" in rec]
    if not learners or "revaluation/switch" not in rec:
        return None
    switches = rec["revaluation/switch"]
    fig, (ax, box) = new_figure(1, 2, width=10.0, height=3.4,
                                title="Steps to the valued goal through the motivational timeline")
    firsts = []
    for learner, color in zip(learners, ("C0", "C3", "C2")):
        steps = rec[f"revaluation/room/{learner}/steps_to_goal"]
        ax.plot(np.arange(len(steps)), steps, color=color, lw=0.8, label=LEARNER_LABELS[learner])
        firsts.append(np.concatenate([steps[s:s + 5] for s in switches]))
    for s in switches:
        ax.axvline(s - 0.5, color="k", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("episode")
    ax.set_ylabel("steps to the valued goal")
    ax.legend()
    box.boxplot(firsts, tick_labels=[LEARNER_LABELS[k] for k in learners])
    box.set_yscale("log")
    box.set_ylabel("steps")
    box.set_title("first 5 episodes after each switch")
    return fig
