"""Hippocampal replay memory (DESIGN.md §6).

A fixed-capacity ring buffer of transitions (x, a, r, x', terminated, truncated) written in the
order they happen. It answers three kinds of recall: uniform minibatches and prioritised
minibatches (Schaul et al. 2016, proportional variant) for critic learning, and contiguous
sequences that never cross an episode boundary for temporal world-model learning. It is saved
to and loaded from its own small HDF5 file with h5py. Sequence sampling assumes one stream of
experience (a single environment), so that consecutive slots are consecutive time steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


@dataclass(frozen=True)
class Batch:
    """A minibatch of transitions as tensors; leading axis B (or B, L for sequences).

    `next_obs` is the observation the transition led to; on truncation it is the final
    observation of the episode (the one to bootstrap from), never the reset observation.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    index: np.ndarray
    weight: torch.Tensor  # importance weights (ones for uniform sampling)


class ReplayMemory:
    """Ring buffer of transitions with uniform, prioritised and sequence sampling.

    Parameters: capacity (number of transitions kept, the oldest is overwritten first),
    obs_shape, action_shape, reward_shape (() for scalar reward, (K,) for reward bases),
    action_dtype (np.int64 for discrete actions), alpha (priority exponent; 0 = uniform).
    """

    def __init__(self, capacity: int, obs_shape: tuple, action_shape: tuple = (), *,
                 reward_shape: tuple = (), action_dtype=np.float32, alpha: float = 0.6,
                 eps: float = 1e-6):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.data = {
            "obs": np.zeros((capacity, *obs_shape), np.float32),
            "action": np.zeros((capacity, *action_shape), action_dtype),
            "reward": np.zeros((capacity, *reward_shape), np.float32),
            "next_obs": np.zeros((capacity, *obs_shape), np.float32),
            "terminated": np.zeros(capacity, bool),
            "truncated": np.zeros(capacity, bool),
        }
        self.priority = np.zeros(capacity, np.float64)
        self.pos = 0  # next slot to write
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one transition, or a batch of them (leading axis N) in time order."""
        obs = np.asarray(obs, np.float32)
        batched = obs.ndim == self.data["obs"].ndim
        values = dict(obs=obs, action=action, reward=reward, next_obs=next_obs,
                      terminated=terminated, truncated=truncated)
        if not batched:
            values = {k: np.asarray(v)[None] for k, v in values.items()}
        n = len(values["obs"])
        idx = (self.pos + np.arange(n)) % self.capacity
        for k in _FIELDS:
            self.data[k][idx] = values[k]
        # new experience gets the largest priority seen so far, so it is replayed at least once
        self.priority[idx] = self.priority[: self.size].max() if self.size else 1.0
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def _batch(self, idx: np.ndarray, weight: np.ndarray, device) -> Batch:
        t = {k: torch.as_tensor(self.data[k][idx], device=device) for k in _FIELDS}
        return Batch(**t, index=idx, weight=torch.as_tensor(weight, dtype=torch.float32,
                                                             device=device))

    def latest(self, n: int = 1, *, device=None) -> Batch:
        """The `n` most recent transitions, oldest first."""
        if not 0 < n <= self.size:
            raise ValueError(f"cannot take the latest {n} of {self.size} stored transitions")
        idx = (self.pos - n + np.arange(n)) % self.capacity
        return self._batch(idx, np.ones(n), device)

    def sample(self, batch_size: int, rng: np.random.Generator, *, device=None) -> Batch:
        """Uniform minibatch of `batch_size` transitions (with replacement)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        idx = rng.integers(0, self.size, batch_size)
        return self._batch(idx, np.ones(batch_size), device)

    def sample_prioritised(self, batch_size: int, rng: np.random.Generator, *,
                           beta: float = 0.4, device=None) -> Batch:
        """Minibatch drawn with P(i) ∝ p_i^α; `weight` = (N P(i))^-β / max_j (N P(j))^-β."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        p = self.priority[: self.size] ** self.alpha
        prob = p / p.sum()
        idx = rng.choice(self.size, batch_size, p=prob)
        w = (self.size * prob[idx]) ** (-beta)
        return self._batch(idx, w / w.max(), device)

    def update_priorities(self, index: np.ndarray, td_error) -> None:
        """Set the priorities of replayed transitions to |δ| + eps."""
        td = np.abs(np.asarray(torch.as_tensor(td_error).detach().cpu(), np.float64))
        self.priority[index] = td.reshape(-1) + self.eps

    def _chronological(self) -> np.ndarray:
        """Slot indices from the oldest transition to the newest."""
        start = self.pos if self.size == self.capacity else 0
        return (start + np.arange(self.size)) % self.capacity

    def valid_starts(self, length: int) -> np.ndarray:
        """Chronological positions where a window of `length` steps fits inside one episode.

        A window [i, i+L) is valid when none of the transitions i .. i+L-2 ends an episode
        (the last one may) and it does not run past the newest transition.
        """
        order = self._chronological()
        if length > self.size:
            return np.zeros(0, np.int64)
        done = (self.data["terminated"] | self.data["truncated"])[order].astype(np.int64)
        ends_before = np.concatenate([[0], np.cumsum(done)])  # ends among the first i steps
        starts = np.arange(self.size - length + 1)
        crossing = ends_before[starts + length - 1] - ends_before[starts]
        return starts[crossing == 0]

    def sample_sequences(self, batch_size: int, length: int, rng: np.random.Generator, *,
                         device=None) -> Batch:
        """`batch_size` contiguous windows of `length` steps; fields shaped (B, L, ...)."""
        starts = self.valid_starts(length)
        if len(starts) == 0:
            raise ValueError(f"no window of length {length} fits inside one episode "
                             f"among the {self.size} stored transitions")
        order = self._chronological()
        pick = rng.choice(starts, batch_size)
        idx = order[pick[:, None] + np.arange(length)[None, :]]
        return self._batch(idx, np.ones(idx.shape), device)

    def save(self, path: str | Path) -> None:
        """Write the buffer (in chronological order) to an HDF5 file."""
        order = self._chronological()
        with h5py.File(path, "w") as f:
            f.attrs["format"] = "brainloop-replay"
            f.attrs["capacity"] = self.capacity
            f.attrs["alpha"] = self.alpha
            f.attrs["eps"] = self.eps
            for k in _FIELDS:
                f.create_dataset(k, data=self.data[k][order])
            f.create_dataset("priority", data=self.priority[order])

    @classmethod
    def load(cls, path: str | Path) -> "ReplayMemory":
        """Read a buffer written by `save`."""
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "brainloop-replay":
                raise ValueError(f"{path} is not a brainloop replay file")
            d = {k: f[k][()] for k in _FIELDS}
            mem = cls(int(f.attrs["capacity"]), d["obs"].shape[1:], d["action"].shape[1:],
                      reward_shape=d["reward"].shape[1:], action_dtype=d["action"].dtype,
                      alpha=float(f.attrs["alpha"]), eps=float(f.attrs["eps"]))
            n = len(d["obs"])
            if n:
                mem.add(d["obs"], d["action"], d["reward"], d["next_obs"], d["terminated"],
                        d["truncated"])
                mem.priority[:n] = f["priority"][()]
        return mem
