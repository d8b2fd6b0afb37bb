"""Reward bases: one value per reward dimension, revalued at once by motivation (DESIGN.md §5).

Millidge, Walton & Bogacz (2022; PLoS Comput Biol 2024): the reward is a vector r_t ∈ R^K of
basis rewards (food, water, salt, …); each basis i has its own value V̂_i (or Q̂_i), learned by
TD from its own dopamine δ^i_t = r_{t,i} + γ V̂_i(s_{t+1}) − V̂_i(s_t); the agent values a state
by V̂ = Σ_i α_i V̂_i with motivational weights α set by its internal (physiological) state.
For policy evaluation TD is linear in the reward, so Σ_i α_i V̂_i is exactly what a scalar TD
learner trained on Σ_i α_i r_i would hold — and changing α revalues every state without a
single update.

This module holds the bookkeeping (`RewardBases`: named bases, α from names, checked reward
vectors; `MotivationalTimeline`: α over trials or episodes, from config strings) and the
tabular / linear learners of the revaluation simulations, in numpy (they step one state at a
time, where a tensor library's per-call overhead would dominate):

- `BasisQ`: linear Q̂_i(φ, a) = φ·W[:, a, i] (tabular: one-hot φ) learned by Q-learning, each
  basis with its own greedy target (off-policy, so every basis learns the best way to its own
  reward from any experience); with one action it is TD(0) on V̂_i, which is linear in the
  reward (with several actions the max is not, and Σ α_i Q̂_i is the value of the bases'
  own best ways, exact when α picks one basis);
- `SuccessorQ`: the successor-representation baseline (Dayan 1993; Russek et al. 2017):
  Q̂(s, a) = M(s, a, ·)·w, M the discounted occupancy of states entered, learned by TD, w the
  reward of entering each state, learned by a delta rule from the experienced scalar reward.

A scalar TD learner is `BasisQ` with one basis, trained on Σ_i α_i r_i. (Deep and linear
critics with eligibility traces: `striatum.VentralStriatum(n_bases)` with `td.OnlineTD`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


class RewardBases:
    """The named reward bases of a task: checks basis vectors and builds α from names.

    names: one per basis, unique, non-empty words.
    """

    def __init__(self, names: Sequence[str]):
        names = tuple(names)
        if not names:
            raise ValueError("reward bases: give at least one basis name")
        bad = [n for n in names if not n or not n.replace("_", "").isalnum()]
        if bad:
            raise ValueError(f"reward basis names must be words (letters, digits, _), got {bad}")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"reward basis name(s) {twice} given more than once")
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"RewardBases({', '.join(self.names)})"

    def index(self, name: str, what: str = "basis") -> int:
        """Position of basis `name`; ValueError naming it and the bases otherwise."""
        if name not in self.names:
            raise ValueError(f"{what} {name!r} is not a reward basis; the bases are "
                             f"{', '.join(self.names)}")
        return self.names.index(name)

    def alpha(self, weights: Mapping[str, float] | Sequence[float]) -> np.ndarray:
        """Motivational weights α (K,) from {basis name: weight} (bases not named weigh 0) or
        from a sequence of K weights."""
        if isinstance(weights, Mapping):
            alpha = np.zeros(len(self))
            for name, w in weights.items():
                alpha[self.index(name, "motivational weight for")] = float(w)
            return alpha
        return self.check(weights, "motivational weights α")

    def parse(self, text: str) -> np.ndarray:
        """α from "name=weight name=weight" (e.g. "juice=1 salt=-10"; pairs separated by
        spaces, ';' or ',')."""
        weights: dict[str, float] = {}
        for part in filter(None, re.split(r"[\s,;]+", text)):
            name, eq, value = part.partition("=")
            if name in weights:
                raise ValueError(f"motivational weights {text!r}: {name!r} is given twice")
            try:
                weights[name] = float(value)
            except ValueError:
                eq = ""
            if not eq:
                raise ValueError(f"motivational weights {text!r}: write name=weight pairs "
                                 f"separated by spaces, e.g. {self.names[0]}=1")
        return self.alpha(weights)

    def check(self, reward, what: str = "reward basis vector") -> np.ndarray:
        """A float array whose last axis has one entry per basis; ValueError otherwise."""
        r = np.asarray(reward, dtype=np.float64)
        if r.ndim == 0 or r.shape[-1] != len(self):
            raise ValueError(f"{what} of shape {r.shape} does not have one entry per reward "
                             f"basis ({len(self)}: {', '.join(self.names)}) on its last axis")
        return r


@dataclass(frozen=True)
class Phase:
    """A stretch of `length` trials (or episodes) with the motivational weights `alpha` (K,)."""

    length: int
    alpha: np.ndarray
    label: str


class MotivationalTimeline:
    """α over trials (or episodes): consecutive phases, each "LENGTH:name=w name=w".

    `alpha_at(t)` is the α of trial t; `starts` the first trial of each phase; `total` the
    number of trials. E.g. ("100:juice=1 salt=-10", "20:juice=1 salt=10").
    """

    def __init__(self, bases: RewardBases, entries: Sequence[str]):
        if not entries:
            raise ValueError("the motivational timeline needs at least one phase "
                             "'LENGTH:name=weight,...'")
        phases = []
        for entry in entries:
            length, colon, weights = entry.partition(":")
            try:
                length = int(length) if colon else 0
            except ValueError:
                length = 0
            if length < 1:
                raise ValueError(f"motivational phase {entry!r}: write LENGTH:name=weight ... "
                                 f"with LENGTH ≥ 1 trials, e.g. 50:{bases.names[0]}=1")
            phases.append(Phase(length, bases.parse(weights), weights.strip()))
        self.bases, self.phases = bases, tuple(phases)
        self.starts = np.cumsum([0] + [p.length for p in phases])[:-1]
        self.total = int(sum(p.length for p in phases))

    def phase_at(self, t: int) -> int:
        """Index of the phase trial t belongs to."""
        if not 0 <= t < self.total:
            raise IndexError(f"trial {t} is outside the timeline of {self.total} trials")
        return int(np.searchsorted(self.starts, t, side="right") - 1)

    def alpha_at(self, t: int) -> np.ndarray:
        return self.phases[self.phase_at(t)].alpha.copy()

    def alphas(self) -> np.ndarray:
        """α of every trial, (total, K)."""
        return np.concatenate([np.tile(p.alpha, (p.length, 1)) for p in self.phases])


class BasisQ:
    """Linear action values per basis, Q̂_i(φ, a) = φ·W[:, a, i], learned by Q-learning:

        δ^i = r_i + γ (1 − terminated) max_a' Q̂_i(φ', a') − Q̂_i(φ, a),   W[:, a, i] += lr δ^i φ.

    Each basis bootstraps from its own greedy action, so Q̂_i is the value of the best way to
    basis i's reward whatever the agent was doing (episodes end at whichever goal is reached).
    """

    def __init__(self, n_features: int, n_actions: int, n_bases: int, *, lr: float,
                 gamma: float):
        self.W = np.zeros((n_features, n_actions, n_bases))
        self.lr, self.gamma = lr, gamma

    @property
    def size(self) -> int:
        return self.W.size

    def q(self, phi: np.ndarray) -> np.ndarray:
        """Q̂_i(φ, ·): φ (d,) → (A, K)."""
        return np.tensordot(phi, self.W, axes=1)

    def update(self, phi, action: int, reward, phi_next, terminated: bool) -> np.ndarray:
        """reward (K,); returns δ^i (K,) before the update."""
        reward = np.asarray(reward, dtype=np.float64)
        if reward.shape != (self.W.shape[-1],):
            raise ValueError(f"BasisQ: reward basis vector of shape {reward.shape}, expected "
                             f"({self.W.shape[-1]},), one entry per basis")
        target = reward + (0.0 if terminated else self.gamma * self.q(phi_next).max(0))
        delta = target - self.q(phi)[action]
        self.W[:, action] += self.lr * np.outer(phi, delta)
        return delta


class SuccessorQ:
    """Tabular successor representation of state-action pairs (the SR baseline).

    M(s, a, s'') = E[Σ_{t≥1} γ^{t−1} 1(s_t = s'') | s_0 = s, a_0 = a], learned by TD along the
    greedy policy of the current values; w(s'') the expected reward on entering s'', learned
    from the experienced scalar reward by w(s') += lr_w (r − w(s')). Q̂(s, a) = M(s, a, ·)·w.
    A change of reward is known only once it is experienced (w), and then spreads to every
    state at once through M.
    """

    def __init__(self, n_states: int, n_actions: int, *, lr: float, lr_w: float, gamma: float):
        self.M = np.zeros((n_states, n_actions, n_states))
        self.w = np.zeros(n_states)
        self.lr, self.lr_w, self.gamma = lr, lr_w, gamma

    @property
    def size(self) -> int:
        return self.M.size + self.w.size

    def q(self, s: int) -> np.ndarray:
        """Q̂(s, ·): (A,)."""
        return self.M[s] @ self.w

    def update(self, s: int, action: int, reward: float, s_next: int, terminated: bool) -> None:
        target = np.zeros(len(self.w))
        target[s_next] = 1.0
        if not terminated:
            target += self.gamma * self.M[s_next, np.argmax(self.q(s_next))]
        self.M[s, action] += self.lr * (target - self.M[s, action])
        self.w[s_next] += self.lr_w * (reward - self.w[s_next])
