"""Hippocampal replay memory (DESIGN.md §6).

Transitions (x, a, r, x', terminated, truncated) are written in the order they happen into one
fixed-capacity ring buffer per stream of experience (one stream per environment, so that vector
environments stepping in lock-step are kept apart). The memory answers three kinds of recall:
uniform and prioritised minibatches (Schaul et al. 2016, proportional variant) for critic
learning, and windows of consecutive steps inside one stream and one episode, returned in the
cortex's time-major layout ``{node: (T, B, d)}`` with the actions ``(T, B, d_a)``, for temporal
world-model learning (`cortex.temporal.learn_sequences`). It is saved to and loaded from its own
small HDF5 file, so that a run can be resumed with the same memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import h5py
import numpy as np
import torch

_FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
_FORMAT = "brainloop-replay"


@dataclass(frozen=True)
class Batch:
    """A minibatch of B transitions as tensors, leading axis B.

    `next_obs` is the observation the transition led to; on truncation it is the final
    observation of the episode (the one to bootstrap from), never the reset observation.
    `index` is the flat slot ``stream * per_stream + slot`` of each row, what
    `ReplayMemory.update_priorities` takes.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    index: np.ndarray
    weight: torch.Tensor  # importance weights (ones for uniform sampling)


@dataclass(frozen=True)
class Sequences:
    """B windows of T consecutive steps, time-major as `cortex.temporal.run_sequence` takes them.

    Step t of window b is the transition (x_t, a_t, r_t, x_{t+1}): `actions[t]` is the action
    taken after seeing `obs[node][t]`. Only the last step of a window may end its episode.
    """

    obs: dict[str, torch.Tensor]
    """Observed columns ``{node: (T, B, d_node)}``, float32."""
    next_obs: dict[str, torch.Tensor]
    """The observations the steps led to, ``{node: (T, B, d_node)}``."""
    actions: torch.Tensor
    """``(T, B, d_a)`` float32: continuous actions as stored, discrete ones one-hot."""
    reward: torch.Tensor
    """``(T, B)``, or ``(T, B, K)`` for K reward bases."""
    terminated: torch.Tensor
    """``(T, B)`` bool."""
    truncated: torch.Tensor
    """``(T, B)`` bool."""
    stream: np.ndarray
    """``(B,)`` int64: the stream each window was taken from."""
    start: np.ndarray
    """``(B,)`` int64: ring slot of each window's first step; step t is slot (start + t) % per_stream."""


class ReplayMemory:
    """Ring buffers of transitions, one per stream, with uniform, prioritised and window sampling.

    Parameters: capacity (total number of transitions kept; each of the `n_streams` streams
    keeps capacity // n_streams and overwrites its oldest first), obs_shape, action_shape,
    reward_shape (() for scalar reward, (K,) for reward bases), action_dtype (an integer dtype
    for discrete actions), alpha (priority exponent; 0 = uniform), eps (priority floor).

    Storage: `data[field]` is ``(n_streams, per_stream, *field_shape)``, `priority` is
    ``(n_streams, per_stream)``; `pos[k]` is the next slot stream k writes and `size[k]` how
    many transitions it holds (its stored slots are always 0 .. size[k]-1).
    """

    def __init__(self, capacity: int, obs_shape: tuple, action_shape: tuple = (), *,
                 n_streams: int = 1, reward_shape: tuple = (), action_dtype=np.float32,
                 alpha: float = 0.6, eps: float = 1e-6):
        if capacity <= 0:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        if n_streams <= 0:
            raise ValueError(f"replay n_streams must be positive, got {n_streams}")
        if capacity < n_streams:
            raise ValueError(f"replay capacity {capacity} is smaller than n_streams {n_streams}: "
                             "every stream needs at least one slot")
        action_dtype = np.dtype(action_dtype)
        if action_dtype.kind not in "iuf":
            raise ValueError(f"replay action_dtype must be an integer or float dtype, got {action_dtype}")
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"replay alpha must be finite and >= 0, got {alpha}")
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"replay eps must be finite and >= 0, got {eps}")
        self.capacity = int(capacity)
        self.n_streams = int(n_streams)
        self.per_stream = self.capacity // self.n_streams
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.shapes = {"obs": tuple(obs_shape), "action": tuple(action_shape),
                       "reward": tuple(reward_shape), "next_obs": tuple(obs_shape),
                       "terminated": (), "truncated": ()}
        self.dtypes = {"obs": np.dtype(np.float32), "action": action_dtype,
                       "reward": np.dtype(np.float32), "next_obs": np.dtype(np.float32),
                       "terminated": np.dtype(bool), "truncated": np.dtype(bool)}
        rows = (self.n_streams, self.per_stream)
        self.data = {k: np.zeros(rows + self.shapes[k], self.dtypes[k]) for k in _FIELDS}
        # views indexed by flat slot stream * per_stream + slot, for gathering minibatches
        self._flat = {k: v.reshape(-1, *self.shapes[k]) for k, v in self.data.items()}
        self.priority = np.zeros(rows, np.float64)
        self.pos = np.zeros(self.n_streams, np.int64)
        self.size = np.zeros(self.n_streams, np.int64)

    def __len__(self) -> int:
        return int(self.size.sum())

    # ---- writing -------------------------------------------------------------------------

    def add(self, obs, action, reward, next_obs, terminated, truncated, *,
            stream: int | None = None) -> None:
        """Store transitions.

        stream=k: one transition, or a time-ordered batch with a leading axis N, into stream k.
        stream=None with one stream: the same into stream 0. stream=None with n_streams = S > 1:
        one step of every stream (vector environments in lock-step), every value with a
        leading axis S.
        """
        values = dict(obs=obs, action=action, reward=reward, next_obs=next_obs,
                      terminated=terminated, truncated=truncated)
        # new experience gets the largest stored priority, so it is replayed at least once;
        # unstored slots hold 0 and priorities are >= 0, so the max over all slots is that max
        new_priority = self.priority.max() if len(self) else 1.0
        if stream is None and self.n_streams > 1:
            values = self._check(values, (self.n_streams,))
            rows = np.arange(self.n_streams)
            for k in _FIELDS:
                self.data[k][rows, self.pos] = values[k]
            self.priority[rows, self.pos] = new_priority
            self.pos = (self.pos + 1) % self.per_stream
            self.size = np.minimum(self.size + 1, self.per_stream)
            return
        k = self._check_stream(0 if stream is None else stream)
        batched = np.ndim(obs) == len(self.shapes["obs"]) + 1
        values = self._check(values, (len(obs),) if batched else ())
        if not batched:
            values = {f: v[None] for f, v in values.items()}
        n = len(values["obs"])
        kept = min(n, self.per_stream)  # of a batch longer than the ring only the newest survive
        slots = (self.pos[k] + n - kept + np.arange(kept)) % self.per_stream
        for f in _FIELDS:
            self.data[f][k, slots] = values[f][n - kept:]
        self.priority[k, slots] = new_priority
        self.pos[k] = (self.pos[k] + n) % self.per_stream
        self.size[k] = min(self.size[k] + n, self.per_stream)

    def _check(self, values: dict, lead: tuple) -> dict[str, np.ndarray]:
        """Values as arrays of the stored dtypes, each shaped lead + its field's shape."""
        out = {}
        for k in _FIELDS:
            v = np.asarray(values[k], self.dtypes[k])
            if v.shape != lead + self.shapes[k]:
                raise ValueError(f"replay add: {k} has shape {v.shape}; expected "
                                 f"{lead + self.shapes[k]}" + self._lead_hint(lead))
            out[k] = v
        return out

    def _lead_hint(self, lead: tuple) -> str:
        if self.n_streams > 1 and lead == (self.n_streams,):
            return f" (one step of each of the {self.n_streams} streams; pass stream=k to add to one)"
        return " (one transition, or a batch with a leading axis N)"

    def _check_stream(self, stream) -> int:
        if not (isinstance(stream, (int, np.integer)) and 0 <= stream < self.n_streams):
            raise ValueError(f"replay stream must be an int in [0, {self.n_streams}), got {stream!r}")
        return int(stream)

    # ---- transitions ---------------------------------------------------------------------

    def _locate(self, flat: np.ndarray) -> np.ndarray:
        """Positions in [0, len(self)) over the stored transitions, stream 0 first → flat slots.

        A flat slot is stream * per_stream + slot; stream k's stored slots are 0 .. size[k]-1,
        so for one stream this is the identity (skipped: it is on every training step's path).
        """
        if self.n_streams == 1:
            return flat
        offsets = np.concatenate([[0], np.cumsum(self.size)])
        stream = np.searchsorted(offsets, flat, side="right") - 1
        return stream * self.per_stream + flat - offsets[stream]

    def _batch(self, index: np.ndarray, weight: np.ndarray, device) -> Batch:
        t = {k: torch.as_tensor(self._flat[k][index], device=device) for k in _FIELDS}
        return Batch(**t, index=index,
                     weight=torch.as_tensor(weight, dtype=torch.float32, device=device))

    def newest(self, stream: int = 0) -> int:
        """The flat slot of a stream's newest transition."""
        k = self._check_stream(stream)
        return int(k * self.per_stream + (self.pos[k] - 1) % self.per_stream)

    def age(self, index: np.ndarray) -> np.ndarray:
        """Transitions stored since each flat slot in `index` was written (0: the newest of
        its stream)."""
        index = np.asarray(index)
        stream, slot = index // self.per_stream, index % self.per_stream
        return (self.pos[stream] - 1 - slot) % self.per_stream

    def chronological(self) -> np.ndarray:
        """Flat slots of every stored transition: stream 0 oldest to newest, then stream 1 …"""
        stream, slot = self._chronological()
        return stream * self.per_stream + slot

    def arrays(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """The stored fields at flat slots `index`, as numpy arrays (N, …)."""
        return {k: self._flat[k][index] for k in _FIELDS}

    def latest(self, n: int = 1, *, stream: int | None = None, device=None) -> Batch:
        """The `n` most recent transitions of a stream, oldest first, fields (n, ...).

        With stream=None and several streams: the latest n steps of every stream, fields
        (n * S, ...), row t * S + k being step t of stream k (n=1: the lock-step just added).
        """
        streams = (np.arange(self.n_streams) if stream is None
                   else np.array([self._check_stream(stream)]))
        have = int(self.size[streams].min())
        if not 0 < n <= have:
            raise ValueError(f"cannot take the latest {n} transitions: the stream(s) "
                             f"{streams.tolist()} hold only {have}")
        slot = (self.pos[streams] + np.arange(-n, 0)[:, None]) % self.per_stream
        index = (slot + streams * self.per_stream).reshape(-1)
        return self._batch(index, np.ones(index.size), device)

    def end_episode(self, stream: int | None = None) -> None:
        """Mark the newest transition of a stream (every stream by default) as the end of its
        episode (truncated), when the experience that follows will not continue it — e.g. a
        new learn call that resets the environment — so no sequence runs across the gap."""
        streams = (np.arange(self.n_streams) if stream is None
                   else np.array([self._check_stream(stream)]))
        streams = streams[self.size[streams] > 0]
        self.data["truncated"][streams, (self.pos[streams] - 1) % self.per_stream] = True

    def sample(self, batch_size: int, rng: np.random.Generator, *, device=None) -> Batch:
        """Uniform minibatch of `batch_size` transitions over all streams (with replacement)."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty replay memory")
        flat = rng.integers(0, len(self), batch_size)
        return self._batch(self._locate(flat), np.ones(batch_size), device)

    def sample_prioritised(self, batch_size: int, rng: np.random.Generator, *,
                           beta: float = 0.4, device=None) -> Batch:
        """Minibatch drawn with P(i) ∝ p_i^α; `weight` = (N P(i))^-β / max_j (N P(j))^-β."""
        total = len(self)
        if total == 0:
            raise ValueError("cannot sample from an empty replay memory")
        stored = np.arange(self.per_stream)[None, :] < self.size[:, None]
        p = self.priority[stored] ** self.alpha  # row-major: the flat order of `_locate`
        prob = p / p.sum()
        flat = rng.choice(total, batch_size, p=prob)
        w = (total * prob[flat]) ** (-beta)
        return self._batch(self._locate(flat), w / w.max(), device)

    def update_priorities(self, index: np.ndarray, td_error) -> None:
        """Set the priorities of replayed transitions (flat `Batch.index`) to |δ| + eps."""
        td = np.abs(np.asarray(torch.as_tensor(td_error).detach().cpu(), np.float64))
        self.priority.reshape(-1)[np.asarray(index).reshape(-1)] = td.reshape(-1) + self.eps

    # ---- windows -------------------------------------------------------------------------

    def _oldest(self) -> np.ndarray:
        """(S,) slot of each stream's oldest transition."""
        return (self.pos - self.size) % self.per_stream

    def _window_fits(self, length: int) -> np.ndarray:
        """(S, per_stream - length + 1) bool: a window of `length` steps starting at
        chronological position i of stream k lies inside one episode and the stored steps.

        The window [i, i+L) fits when none of the steps i .. i+L-2 ends an episode (the last
        may) and i + L <= size[k]; counting in chronological order keeps it from jumping
        across the ring's overwrite point.
        """
        n_starts = self.per_stream - length + 1
        if length < 1 or n_starts <= 0:
            return np.zeros((self.n_streams, 0), bool)
        chrono = (self._oldest()[:, None] + np.arange(self.per_stream)[None, :]) % self.per_stream
        rows = np.arange(self.n_streams)[:, None]
        done = (self.data["terminated"] | self.data["truncated"])[rows, chrono]
        ends_before = np.concatenate([np.zeros((self.n_streams, 1), np.int64),
                                      np.cumsum(done, axis=1)], axis=1)
        starts = np.arange(n_starts)
        crossing = ends_before[:, starts + length - 1] - ends_before[:, starts]
        return (crossing == 0) & (starts[None, :] + length <= self.size[:, None])

    def valid_starts(self, length: int, stream: int = 0) -> np.ndarray:
        """Chronological positions (0 = oldest) of `stream` where a window of `length` fits."""
        return np.flatnonzero(self._window_fits(length)[self._check_stream(stream)])

    def sequences(self, batch_size: int, length: int, rng: np.random.Generator, *,
                  layout: Mapping[str, slice | Sequence[int]] | None = None,
                  n_actions: int | None = None, device=None) -> Sequences:
        """`batch_size` windows of `length` consecutive steps, each inside one stream and one
        episode, drawn uniformly (with replacement) among all windows that fit.

        layout: node name → slice or list of the (flattened) observation dimensions that
        column observes; default ``{"x": all dimensions}``. n_actions: the number of discrete
        actions, required to one-hot encode an integer action memory.
        """
        if batch_size < 1 or length < 1:
            raise ValueError(f"sequences need batch_size >= 1 and length >= 1, "
                             f"got {batch_size} and {length}")
        total = len(self)
        if total == 0:
            raise ValueError("cannot sample sequences from an empty replay memory")
        dims = self._layout(layout)
        fits = self._window_fits(length)
        stream_of, chrono_of = np.nonzero(fits)
        if len(stream_of) == 0:
            raise ValueError(f"no window of length {length} fits inside one episode of one stream "
                             f"among the {total} stored transitions (per stream: "
                             f"{self.size.tolist()})")
        pick = rng.integers(0, len(stream_of), batch_size)
        stream = stream_of[pick]
        start = (self._oldest()[stream] + chrono_of[pick]) % self.per_stream
        slot = (start[None, :] + np.arange(length)[:, None]) % self.per_stream
        index = stream[None, :] * self.per_stream + slot  # (T, B) flat slots

        def tensor(field):
            return torch.as_tensor(self._flat[field][index], device=device)

        def columns(field):
            x = self._flat[field][index].reshape(length, batch_size, -1)
            return {node: torch.as_tensor(x[..., d], device=device) for node, d in dims.items()}

        actions = self._actions(self._flat["action"][index], n_actions)
        return Sequences(obs=columns("obs"), next_obs=columns("next_obs"),
                         actions=torch.as_tensor(actions, device=device), reward=tensor("reward"),
                         terminated=tensor("terminated"), truncated=tensor("truncated"),
                         stream=stream.astype(np.int64), start=start.astype(np.int64))

    def _layout(self, layout) -> dict[str, np.ndarray]:
        """Validated layout → node: index array into the flattened observation."""
        d = int(np.prod(self.shapes["obs"]))
        if layout is None:
            return {"x": np.arange(d)}
        if not layout:
            raise ValueError("layout is empty: map at least one node to observation dimensions")
        owner = np.full(d, "", object)
        out = {}
        for node, dims in layout.items():
            if not (isinstance(node, str) and node):
                raise ValueError(f"layout node names must be non-empty strings, got {node!r}")
            if isinstance(dims, slice):
                start = 0 if dims.start is None else dims.start
                stop = d if dims.stop is None else dims.stop
                step = 1 if dims.step is None else dims.step
                if not (0 <= start <= stop <= d and step > 0):
                    raise ValueError(f"layout node {node!r}: slice {dims} is outside the "
                                     f"{d} observation dimensions")
                idx = np.arange(start, stop, step)
            else:
                idx = np.asarray(dims)
                if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                    raise ValueError(f"layout node {node!r}: expected a slice or a list of "
                                     f"integer dimensions, got {dims!r}")
                if idx.size and (idx.min() < 0 or idx.max() >= d):
                    raise ValueError(f"layout node {node!r}: dimensions {idx.tolist()} are outside "
                                     f"the {d} observation dimensions [0, {d})")
            if idx.size == 0:
                raise ValueError(f"layout node {node!r} observes no dimension")
            if len(np.unique(idx)) != len(idx):
                raise ValueError(f"layout node {node!r} names a dimension twice: {idx.tolist()}")
            taken = owner[idx] != ""
            if taken.any():
                raise ValueError(f"layout node {node!r}: dimensions {idx[taken].tolist()} are "
                                 f"already observed by node(s) {sorted(set(owner[idx[taken]]))}")
            owner[idx] = node
            out[node] = idx.astype(np.int64)
        return out

    def _actions(self, a: np.ndarray, n_actions: int | None) -> np.ndarray:
        """(T, B, *action_shape) stored actions → (T, B, d_a) float32."""
        steps, batch = a.shape[:2]
        if self.dtypes["action"].kind in "iu":
            if n_actions is None:
                raise ValueError("this replay memory stores discrete actions: pass n_actions to "
                                 "sequences() to one-hot encode them")
            if n_actions < 1 or (a.size and (a.min() < 0 or a.max() >= n_actions)):
                raise ValueError(f"n_actions={n_actions} does not cover the stored actions "
                                 f"(range {a.min()} .. {a.max()})")
            return np.eye(n_actions, dtype=np.float32)[a].reshape(steps, batch, -1)
        if n_actions is not None:
            raise ValueError(f"n_actions={n_actions} was given but this replay memory stores "
                             "continuous actions; leave n_actions out")
        return a.astype(np.float32).reshape(steps, batch, -1)

    # ---- files ---------------------------------------------------------------------------

    def _chronological(self) -> tuple[np.ndarray, np.ndarray]:
        """(stream, slot) of every stored transition: stream 0 oldest to newest, then stream 1 …"""
        stream = np.repeat(np.arange(self.n_streams), self.size)
        offsets = np.concatenate([[0], np.cumsum(self.size)])
        step = np.arange(len(self)) - offsets[stream]
        return stream, (self._oldest()[stream] + step) % self.per_stream

    def save(self, path: str | Path) -> None:
        """Write everything needed to resume to an HDF5 file (written aside, then moved in).

        Each stream's transitions are stored oldest first, streams one after another, with
        `size` and `pos` per stream, so that `load` puts every transition back in its slot.
        An existing file is replaced only if it is a replay file.
        """
        path = Path(path)
        if path.exists() and not _is_replay_file(path):
            raise ValueError(f"{path} exists and is not a brainloop replay file; refusing to "
                             "overwrite it")
        stream, slot = self._chronological()
        tmp = path.with_name(path.name + ".tmp")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = _FORMAT
                f.attrs["capacity"] = self.capacity
                f.attrs["n_streams"] = self.n_streams
                f.attrs["alpha"] = self.alpha
                f.attrs["eps"] = self.eps
                for k in _FIELDS:
                    f.create_dataset(k, data=self.data[k][stream, slot])
                f.create_dataset("priority", data=self.priority[stream, slot])
                f.create_dataset("size", data=self.size)
                f.create_dataset("pos", data=self.pos)
            os.replace(tmp, path)  # a crash while writing never leaves a half-written file at path
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> "ReplayMemory":
        """Read a memory written by `save`; sampling from it sees the same slots as before."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such replay file")
        if not _is_replay_file(path):
            raise ValueError(f"{path} is not a brainloop replay file")
        try:
            with h5py.File(path, "r") as f:
                d = {k: f[k][()] for k in (*_FIELDS, "priority", "size", "pos")}
                mem = cls(int(f.attrs["capacity"]), d["obs"].shape[1:], d["action"].shape[1:],
                          n_streams=int(f.attrs["n_streams"]), reward_shape=d["reward"].shape[1:],
                          action_dtype=d["action"].dtype, alpha=float(f.attrs["alpha"]),
                          eps=float(f.attrs["eps"]))
            size, pos = d["size"].astype(np.int64), d["pos"].astype(np.int64)
            if (size.shape != (mem.n_streams,) or pos.shape != size.shape
                    or (size < 0).any() or (size > mem.per_stream).any()
                    or (pos < 0).any() or (pos >= mem.per_stream).any()
                    or ((size < mem.per_stream) & (pos != size)).any()
                    or any(len(d[k]) != size.sum() for k in (*_FIELDS, "priority"))):
                raise ValueError("stream sizes and positions do not match the stored data")
            mem.size, mem.pos = size, pos
            stream, slot = mem._chronological()
            for k in _FIELDS:
                mem.data[k][stream, slot] = d[k]
            mem.priority[stream, slot] = d["priority"]
        except (KeyError, OSError, TypeError, ValueError) as e:
            raise ValueError(f"{path} is not a valid brainloop replay file: {e}") from e
        return mem


def _is_replay_file(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == _FORMAT
    except OSError:
        return False


class PerceivedStates:
    """The states a perception with memory inferred for each stored transition, slot by slot
    beside a ReplayMemory: z_t (after x_t) and z_{t+1} (after the observation it led to), as
    the critics read them (B, d). The loop writes each new transition's online states and
    replaces them all when the world model has changed (`perception.reperceive`)."""

    def __init__(self, memory: ReplayMemory, dim: int):
        slots = memory.n_streams * memory.per_stream
        self.state = np.zeros((slots, dim), np.float32)
        self.next_state = np.zeros((slots, dim), np.float32)

    def write(self, index, state, next_state) -> None:
        """Set the states of flat slots `index` (an int or (N,)); state, next_state (N, d)."""
        self.state[index] = _numpy(state)
        self.next_state[index] = _numpy(next_state)

    def read(self, index: np.ndarray, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, z') of flat slots `index`, tensors (B, d)."""
        return (torch.as_tensor(self.state[index], device=device),
                torch.as_tensor(self.next_state[index], device=device))


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
