"""Reward revaluation: reward bases against scalar TD and the successor representation.

Two simulations of Millidge, Walton & Bogacz (2022; PLoS Comput Biol 2024), each running three
learners (`basal_ganglia.reward_bases`), all tabular with one learning rate — in the salt task on
the same trials, in the room each in its own episodes (each acts, so each sees what it does):

- `rb`, reward bases: one value per basis, learned by TD from its own dopamine δ^i, read out
  as Σ_i α_i Q̂_i with the current motivational weights α;
- `td`, scalar TD: one value, learned from the reward Σ_i α_i r_i weighed by the α of the
  moment;
- `sr`, successor representation: occupancy M learned by TD, the reward of each state w
  learned from the experienced Σ_i α_i r_i, value M·w.

`revaluation-salt` — the Dead Sea salt experiment (Robinson & Berridge 2013). Pavlovian trials:
a cue (juice or salt, at random), then its outcome. Trained with α = [juice 1, salt −10], the
salty cue is aversive; the sodium-appetite switch sets α = [1, +10]. The approach probability
of a cue is σ(β V̂(cue)) (approach against staying away, worth 0), read at the start of each
trial before that trial's learning, so the first trial after the switch shows what each
learner makes of the new α with zero updates. Two conditions from the same seed: `outcome`
(outcomes still delivered after the switch) and `extinction` (no outcome from phase
`extinction_from` on, as in the experiment's test). Recorded per trial and condition: each
learner's value and approach probability per cue, the presented cue, and dopamine at cue onset
(δ of the inter-trial → cue step) for TD and for reward bases per basis. Summary:
`{learner}_p_{probe}_before_switch` (the last trial before the first switch),
`{learner}_p_{probe}_after_switch` (the first after it), the same after the switch in
extinction (`..._after_switch_extinction`) and `extinction_td_minus_rb_max`, the largest
excess of TD's approach probability over reward bases' on any extinction trial (< 0: TD never
reaches reward bases' level).

`revaluation-room` — an open grid room with a goal per basis; α picks one goal at a time and
cycles through them (`timeline`). ε-greedy agents; an episode ends at any goal. Recorded per
episode: each learner's steps, the goal reached and its steps to the valued goal (the steps
when the goal reached is the most valued one, `max_steps` otherwise: running to a goal no
longer wanted, or dithering until cut short, is no success). Summary:
`{learner}_median_steps_after_switch` (median steps to the valued goal over the first
`after_switch` episodes after every switch), `{learner}_valued_goal_after_switch` (the share
of those episodes that reached the valued goal) and `{learner}_memory` (values stored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from basal_ganglia.reward_bases import BasisQ, MotivationalTimeline, RewardBases, SuccessorQ
from cortex.params import param, validate
from sims.envs import CueOutcome, GridRoom
from sims.registry import Simulation, register

LEARNERS = ("rb", "td", "sr")


@dataclass(frozen=True)
class Learner:
    """A tabular learner behind one interface: q(s, α) → Q̂(s, ·) (A,);
    learn(s, a, r (K,), s', terminated, α) → its dopamine of the step (per basis for rb, (1,)
    for td, None for sr); size: values stored."""

    q: Callable[[int, np.ndarray], np.ndarray]
    learn: Callable[..., np.ndarray | None]
    size: int


def make_learners(n_states: int, n_actions: int, n_bases: int, *, lr: float,
                  gamma: float) -> dict[str, Learner]:
    """Reward bases, scalar TD and SR, tabular, each with learning rate `lr`."""
    eye = np.eye(n_states)
    rb = BasisQ(n_states, n_actions, n_bases, lr=lr, gamma=gamma)
    td = BasisQ(n_states, n_actions, 1, lr=lr, gamma=gamma)
    sr = SuccessorQ(n_states, n_actions, lr=lr, lr_w=lr, gamma=gamma)
    return {
        "rb": Learner(lambda s, alpha: rb.q(eye[s]) @ alpha,
                      lambda s, a, r, s2, term, alpha: rb.update(eye[s], a, r, eye[s2], term),
                      rb.size),
        "td": Learner(lambda s, alpha: td.q(eye[s])[:, 0],
                      lambda s, a, r, s2, term, alpha: td.update(eye[s], a, [alpha @ r], eye[s2],
                                                                 term),
                      td.size),
        "sr": Learner(lambda s, alpha: sr.q(s),
                      lambda s, a, r, s2, term, alpha: sr.update(s, a, alpha @ r, s2, term),
                      sr.size),
    }


def parse_pairs(entries, what: str, example: str, sep: str) -> dict[str, str]:
    """"name<sep>rest" entries → {name: rest}; ValueError naming the entry otherwise."""
    out = {}
    for entry in entries:
        name, found, rest = entry.partition(sep)
        if not found or not name.strip() or not rest.strip():
            raise ValueError(f"config key {what!r}: entry {entry!r} should read like {example}")
        if name.strip() in out:
            raise ValueError(f"config key {what!r}: {name.strip()!r} is given twice")
        out[name.strip()] = rest
    return out


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50, 50)))


# --- revaluation-salt ---------------------------------------------------------------------

@dataclass(frozen=True)
class SaltConfig:
    bases: tuple[str, ...] = param(("juice", "salt"), "names of the reward bases")
    cues: tuple[str, ...] = param(("juice:juice=1", "salt:salt=1"),
                                  "each cue and its outcome's basis rewards: cue:basis=r basis=r")
    timeline: tuple[str, ...] = param(("100:juice=1 salt=-10", "20:juice=1 salt=10"),
                                      "motivational phases in trials, LENGTH:basis=α basis=α (bases "
                                      "not named weigh 0); the second phase's start is the switch")
    probe: str = param("salt", "cue whose approach probability is the headline figure")
    extinction_from: int = param(1, "phase (0 = first) from which the extinction condition "
                                 "delivers no outcome", ge=1)
    gamma: float = param(0.95, "discount factor γ", ge=0, le=1)
    lr: float = param(0.1, "learning rate of every learner", gt=0, le=1)
    beta: float = param(1.0, "inverse temperature of approach, p = σ(β V̂(cue))", gt=0)

    def __post_init__(self) -> None:
        validate(self)
        timeline = salt_timeline(self)
        if len(timeline.phases) < 2:
            raise ValueError("config key 'timeline': give at least two phases, so that α "
                             "switches")
        if self.extinction_from >= len(timeline.phases):
            raise ValueError(f"config key 'extinction_from' = {self.extinction_from}: the "
                             f"timeline has phases 0..{len(timeline.phases) - 1}")
        if self.probe not in salt_env(self).cues:
            raise ValueError(f"config key 'probe': {self.probe!r} is not a cue; cues: "
                             f"{', '.join(salt_env(self).cues)}")


def salt_env(cfg: SaltConfig) -> CueOutcome:
    bases = RewardBases(cfg.bases)
    cues = parse_pairs(cfg.cues, "cues", "salt:salt=1", ":")
    try:
        return CueOutcome(bases, {c: bases.parse(r) for c, r in cues.items()})
    except ValueError as error:
        raise ValueError(f"config key 'cues': {error}") from None


def salt_timeline(cfg: SaltConfig) -> MotivationalTimeline:
    try:
        return MotivationalTimeline(RewardBases(cfg.bases), cfg.timeline)
    except ValueError as error:
        raise ValueError(f"config key 'timeline': {error}") from None


def record_timeline(rec, timeline: MotivationalTimeline) -> None:
    """α of every trial (episode) per basis, and the switches."""
    for b, basis in enumerate(timeline.bases.names):
        rec.write(f"revaluation/alpha/{basis}", timeline.alphas()[:, b].astype(np.float32))
    rec.write("revaluation/switch", timeline.starts[1:])


def salt_condition(cfg: SaltConfig, env: CueOutcome, timeline: MotivationalTimeline,
                   condition: str, seed: int, rec, bar) -> dict[str, np.ndarray]:
    """Train the three learners through the timeline; returns each one's approach
    probabilities per trial and cue, (trials, C)."""
    extinct_from = (timeline.starts[cfg.extinction_from] if condition == "extinction"
                    else timeline.total)
    learners = make_learners(env.n_states, 1, len(env.reward_bases), lr=cfg.lr, gamma=cfg.gamma)
    p_all = {name: np.zeros((timeline.total, len(env.cues))) for name in learners}
    root = f"revaluation/{condition}"
    env.reset(seed=seed)
    for t in range(timeline.total):
        alpha = timeline.alpha_at(t)
        for name, learner in learners.items():
            v = np.array([learner.q(env.cue_state(c), alpha)[0] for c in range(len(env.cues))])
            p_all[name][t] = sigmoid(cfg.beta * v)
            for c, cue in enumerate(env.cues):
                rec.append(f"{root}/{name}/value/{cue}", np.float32(v[c]))
                rec.append(f"{root}/{name}/p_approach/{cue}", np.float32(p_all[name][t, c]))
        s, _ = env.reset(options={"extinction": t >= extinct_from})
        rec.append(f"{root}/cue", np.int16(env.cue))
        terminated, first = False, True
        while not terminated:
            s2, _, terminated, _, info = env.step(0)
            deltas = {name: learner.learn(s, 0, info["reward_bases"], s2, terminated, alpha)
                      for name, learner in learners.items()}
            if first:  # the inter-trial → cue step: dopamine at cue onset
                for b, basis in enumerate(env.reward_bases.names):
                    rec.append(f"{root}/bases/{basis}/dopamine_cue", np.float32(deltas["rb"][b]))
                rec.append(f"{root}/rb/dopamine_cue", np.float32(alpha @ deltas["rb"]))
                rec.append(f"{root}/td/dopamine_cue", np.float32(deltas["td"][0]))
            s, first = s2, False
        bar.update(1)
    return p_all


def run_salt(cfg: SaltConfig, ctx) -> dict:
    env, timeline = salt_env(cfg), salt_timeline(cfg)
    rec = ctx.recorder
    record_timeline(rec, timeline)
    rec.write("revaluation/extinction_from", np.asarray(timeline.starts[cfg.extinction_from]))
    probe, switch = env.cues.index(cfg.probe), int(timeline.starts[1])
    summary = {}
    with ctx.progress(total=2 * timeline.total, desc="revaluation-salt", unit="trial") as bar:
        for condition in ("outcome", "extinction"):
            p = salt_condition(cfg, env, timeline, condition, int(ctx.seed), rec, bar)
            suffix = "" if condition == "outcome" else "_extinction"
            for name in LEARNERS:
                if condition == "outcome":
                    summary[f"{name}_p_{cfg.probe}_before_switch"] = p[name][switch - 1, probe]
                summary[f"{name}_p_{cfg.probe}_after_switch{suffix}"] = p[name][switch, probe]
            if condition == "extinction":
                after = slice(timeline.starts[cfg.extinction_from], None)
                summary["extinction_td_minus_rb_max"] = float(np.max(
                    p["td"][after, probe] - p["rb"][after, probe]))
    return {k: float(v) for k, v in summary.items()}


# --- revaluation-room ---------------------------------------------------------------------

def _cycle(goals: tuple[str, ...], episodes: int, cycles: int) -> tuple[str, ...]:
    return tuple(f"{episodes}:{g}=1" for _ in range(cycles) for g in goals)


@dataclass(frozen=True)
class RoomConfig:
    size: int = param(9, "the room is size × size cells", ge=3)
    goals: tuple[str, ...] = param(("A@0:0", "B@0:8", "C@8:0", "D@8:8"),
                                   "goals, one reward basis each: name@row:col")
    timeline: tuple[str, ...] = param(_cycle(("A", "B", "C", "D"), 50, 2),
                                      "motivational phases in episodes, LENGTH:goal=α goal=α")
    max_steps: int = param(100, "steps before an episode is cut short", ge=1)
    epsilon: float = param(0.1, "exploration: a random action with this probability", ge=0,
                           le=1)
    lr: float = param(0.5, "learning rate of every learner", gt=0, le=1)
    gamma: float = param(0.95, "discount factor γ", ge=0, le=1)
    after_switch: int = param(5, "episodes after each switch pooled in the headline medians",
                              ge=1)

    def __post_init__(self) -> None:
        validate(self)
        timeline = MotivationalTimeline(room_env(self).reward_bases, self.timeline)
        if len(timeline.phases) < 2:
            raise ValueError("config key 'timeline': give at least two phases, so that α "
                             "switches")


def room_env(cfg: RoomConfig) -> GridRoom:
    cells = {}
    for name, cell in parse_pairs(cfg.goals, "goals", "A@0:0", "@").items():
        try:
            cells[name] = tuple(int(v) for v in cell.split(":"))
        except ValueError:
            raise ValueError(f"config key 'goals': {name}@{cell} should give row:col") from None
    try:
        return GridRoom(cfg.size, cells, max_steps=cfg.max_steps)
    except ValueError as error:
        raise ValueError(f"config key 'goals': {error}") from None


def room_episode(env: GridRoom, learner: Learner, alpha: np.ndarray, epsilon: float,
                 rng: np.random.Generator) -> tuple[int, int]:
    """One ε-greedy episode (ties broken at random), learning at every step; returns the
    steps taken and the goal reached (−1 when cut short)."""
    s, _ = env.reset()
    while True:
        q = learner.q(s, alpha)
        best = np.flatnonzero(q >= q.max() - 1e-12)
        a = int(rng.integers(len(q))) if rng.random() < epsilon else int(rng.choice(best))
        s2, _, terminated, truncated, info = env.step(a)
        learner.learn(s, a, info["reward_bases"], s2, terminated, alpha)
        s = s2
        if terminated or truncated:
            goal = env.goal_of.get(s, -1)
            return env.t, goal


def run_room(cfg: RoomConfig, ctx) -> dict:
    env = room_env(cfg)
    timeline = MotivationalTimeline(env.reward_bases, cfg.timeline)
    rec = ctx.recorder
    record_timeline(rec, timeline)
    learners = make_learners(env.observation_space.n, 4, len(env.reward_bases), lr=cfg.lr,
                             gamma=cfg.gamma)
    summary = {}
    after = np.concatenate([np.arange(s, min(s + cfg.after_switch, timeline.total))
                            for s in timeline.starts[1:]])
    with ctx.progress(total=len(learners) * timeline.total, desc="revaluation-room",
                      unit="episode") as bar:
        for name, learner in learners.items():
            rng = np.random.default_rng([int(ctx.seed), LEARNERS.index(name)])
            to_goal = np.zeros(timeline.total, np.int64)
            for e in range(timeline.total):
                alpha = timeline.alpha_at(e)
                steps, goal = room_episode(env, learner, alpha, cfg.epsilon, rng)
                valued = goal >= 0 and alpha[goal] == alpha.max() > 0
                to_goal[e] = steps if valued else cfg.max_steps
                rec.append(f"revaluation/room/{name}/steps", np.int32(steps))
                rec.append(f"revaluation/room/{name}/goal", np.int16(goal))
                rec.append(f"revaluation/room/{name}/steps_to_goal", np.int32(to_goal[e]))
                bar.update(1)
            rec.write(f"revaluation/room/{name}/memory", np.asarray(learner.size))
            summary[f"{name}_median_steps_after_switch"] = float(np.median(to_goal[after]))
            summary[f"{name}_valued_goal_after_switch"] = float(np.mean(to_goal[after] <
                                                                        cfg.max_steps))
            summary[f"{name}_memory"] = learner.size
    return summary


register(Simulation(name="revaluation-salt", summary="Dead Sea salt revaluation: reward bases "
                    "vs TD vs SR after a sodium-appetite switch", config=SaltConfig, run=run_salt))
register(Simulation(name="revaluation-room", summary="grid room with a goal per reward basis: "
                    "steps to the newly valued goal for reward bases, TD and SR",
                    config=RoomConfig, run=run_room))
