"""The perception slot of the closed loop (DESIGN.md §9): what the basal ganglia see.

A perception turns the observation x_t and the last action a_{t−1} (the efference copy) into
the state of named cortical columns, `{node: (B, d_node)}`; the policy and the critics read the
columns the configuration names (`basal_ganglia.striatum.read_cortex`). Its contract:

    reset(done=None)            forget the past of every stream (or of the streams where done)
    perceive(x, a_prev) -> z    {node: (B, d)}, detached
    learn(sequences) -> dict    one world-model step on replayed sequences; returns its losses
    nodes, dims                 the columns it offers and their widths
    sequence_length, layout     the replayed window its world model learns from (0: no model)
                                and which observation dimensions each observed column takes
    has_memory                  whether a state depends on the past; if not,
      replayed(batch) -> z, z'  the states of replayed transitions; if so,
      reperceive(...)           re-infers the states of the whole stored stream (the loop keeps
                                them beside the replay memory and refreshes them on schedule)

`RawPerception` is the observation itself, as the single column `x`: the agents of the RL
literature. A perception replaces its state tensors rather than mutating them, so a shallow
copy (`copy.copy`) perceives independently with the same model — evaluation episodes use one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from cortex.activations import ACTIVATIONS
from cortex.graph import hidden_names, sensory_chain
from cortex.inference import InferenceConfig, forward_fill, infer
from cortex.laplace import (filter_step, initial_belief, laplace_filter, laplace_parts,
                            learn_sequences_laplace)
from cortex.model import PCModel
from cortex.params import param, validate
from cortex.recognition import Recognizer
from cortex.temporal import learn_sequences, rollout, run_sequence


class RawPerception:
    """z = {"x": x_t}: no model, nothing to learn."""

    node = "x"
    has_memory = False   # the state of a step is the step's observation alone
    sequence_length = 0  # no world model
    layout = None

    def __init__(self, observation_space: gym.Space, device: torch.device | str = "cpu"):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"raw perception needs a 1-D Box observation space, got "
                             f"{observation_space}")
        self.dims = {self.node: int(observation_space.shape[0])}
        self.device = torch.device(device)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self.dims)

    def reset(self, done=None) -> None:
        """Nothing to forget: the raw observation has no past."""

    def perceive(self, x, a_prev=None) -> dict[str, torch.Tensor]:
        """x: (B, d_x) observations → {"x": (B, d_x)} float32 on the device."""
        z = torch.as_tensor(np.asarray(x, np.float32), device=self.device)
        if z.ndim != 2 or z.shape[1] != self.dims[self.node]:
            raise ValueError(f"raw perception expects observations of shape (B, "
                             f"{self.dims[self.node]}), got {tuple(z.shape)}")
        return {self.node: z}

    def replayed(self, batch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """States {node: (B, d)} of a replayed batch's obs and next_obs: the observations."""
        return {self.node: batch.obs}, {self.node: batch.next_obs}

    def learn(self, sequences) -> dict[str, float]:
        """No world model: nothing to learn."""
        return {}


@dataclass(frozen=True)
class CortexConfig:
    """The cortex in the perception slot: a temporal, active PC model on a chain of columns."""

    posterior: str = param(
        "laplace", "laplace: a Gaussian posterior per column, filtered by the extended Kalman "
        "step of cortex.laplace and learned by EM (one hidden column); point: the point mass, "
        "K local inference steps per env step from the temporal prior, learned by the local rule",
        choices=("laplace", "point"))
    hidden: tuple[int, ...] = param(
        (16,), "widths of the hidden columns, top first; the last, 's', predicts the observation "
        "column 'x', the others are 's2', 's3', ... above it", ge=1)
    activation: str = param("tanh", "f of the hidden columns", choices=tuple(ACTIVATIONS))
    temporal: bool = param(True, "hidden columns predict from their own past (U)")
    efference_copy: bool = param(True, "hidden columns predict from the previous action (B)")
    state_precision: float = param(100.0, "initial precision of the hidden columns", gt=0)
    obs_precision: float = param(1000.0, "initial precision of the observation column x", gt=0)
    learn_precision: bool = param(True, "learn the precisions (laplace: closed-form M-step; "
                                  "point: the local rule)")
    initial_variance: float = param(1.0, "laplace: variance of the belief at an episode's start",
                                    gt=0)
    inference_steps: int = param(20, "point: inference iterations per env step", ge=0)
    inference_init: str = param(
        "prior", "point: where each step's inference starts: prior (the temporal prediction) or "
        "amortised (a bottom-up recogniser trained on the converged states: hybrid PC)",
        choices=("prior", "amortised"))
    inference_tol: float = param(0.0, "point: stop a step's inference once an iteration lowers "
                                 "F by less than this share (0: always inference_steps)", ge=0)
    inference_lr: float = param(0.005, "point: inference step size (scale it with 1/precision)",
                                gt=0)
    learn: bool = param(True, "train the world model from replay (false: it stays at its "
                        "random initialisation)")
    lr: float = param(3e-3, "world-model learning rate (Adam)", gt=0)
    grad_clip: float = param(0.3, "laplace: clip the M-step gradient to this norm (0 = none)",
                             ge=0)
    precision_rate: float = param(0.01, "laplace: share of the way each precision moves to its "
                                  "closed-form M-step", gt=0, le=1)
    min_variance: float = param(1e-5, "laplace: floor of the learned variances", gt=0)
    sequence_length: int = param(32, "steps of each replayed window the world model learns "
                                 "from", ge=2)
    batch_size: int = param(32, "replayed windows per world-model update", ge=1)
    learn_every: int = param(16, "env steps between world-model updates", ge=1)
    warmup_updates: int = param(1500, "world-model updates when learning starts, before the "
                                "critics and the policy learn", ge=0)
    learn_for: int = param(0, "env steps after learning starts during which the world model "
                           "keeps learning every learn_every steps (0: the warm-up only; a "
                           "model that changes under the critics made SAC fail on the masked "
                           "pendulum, benchmarks/AGENT_RESULTS.md)", ge=0)
    refresh_every: int = param(1000, "env steps between re-inferences of every stored "
                               "transition's state with the current world model (the states "
                               "the critics learn from)", ge=1)
    burn_in: int = param(16, "re-inference cuts the stored stream into pieces filtered side "
                         "by side; each starts this many steps early to rebuild its belief",
                         ge=0)

    def __post_init__(self) -> None:
        validate(self)
        if self.posterior == "laplace" and len(self.hidden) != 1:
            raise ValueError(f"config key 'hidden': the laplace posterior takes one hidden "
                             f"column, got {self.hidden}; use posterior=point for a hierarchy")


def efference_dim(action_space: gym.Space) -> int:
    """Width of the efference copy: one-hot for a discrete space, the action for a Box."""
    if isinstance(action_space, gym.spaces.Discrete):
        return int(action_space.n)
    return int(np.prod(action_space.shape))


class CortexPerception:
    """Temporal, active predictive coding as perception (DESIGN.md §2–3, §8).

    The observation is clamped at the column `x`; the hidden columns (`s` and, for a
    hierarchy, `s2`, ... above it) are inferred at every environment step with the past fixed
    (filtering): their prior is the prediction from their own last state (U) and the last
    action (B, the efference copy). The world model learns from replayed windows of
    `sequence_length` steps (`learn`); the states of every stored transition are re-inferred
    with the current world model on the loop's schedule (`reperceive`), and the critics learn
    from those. Offers the columns `x` and the hidden ones.
    """

    layout = None  # one observed column, `x`, takes every observation dimension
    has_memory = True

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 cfg: CortexConfig = CortexConfig(), device: torch.device | str = "cpu", *,
                 seed: int = 0):
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ValueError(f"the cortex needs a 1-D Box observation space, got "
                             f"{observation_space}")
        self.cfg, self.device = cfg, torch.device(device)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.action_dim = efference_dim(action_space)
        names = hidden_names(len(cfg.hidden))
        g = sensory_chain(cfg.hidden, int(observation_space.shape[0]),
                          activation=cfg.activation, state_precision=cfg.state_precision,
                          obs_precision=cfg.obs_precision, learn_precision=cfg.learn_precision,
                          temporal=cfg.temporal, action=cfg.efference_copy)
        self.model = PCModel(g, action_dim=self.action_dim, temporal=True,
                             generator=torch.Generator().manual_seed(seed), device=self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.inference = InferenceConfig(
            steps=cfg.inference_steps, lr=cfg.inference_lr, tol=cfg.inference_tol,
            init="amortised" if cfg.inference_init == "amortised" else "forward")
        self.recognizer = None
        if cfg.inference_init == "amortised":
            self.recognizer = Recognizer(self.model,
                                         generator=torch.Generator().manual_seed(seed + 1))
            self.recognizer_optimizer = torch.optim.Adam(self.recognizer.parameters(), lr=cfg.lr)
        self.dims = {"x": int(observation_space.shape[0]),
                     **{n: w for n, w in zip(names, cfg.hidden)}}
        self.sequence_length = cfg.sequence_length if cfg.learn else 0
        self.burn_in = cfg.burn_in
        self.learn_every, self.batch_size = cfg.learn_every, cfg.batch_size
        self.refresh_every, self.learn_for = cfg.refresh_every, cfg.learn_for
        self.warmup_updates = cfg.warmup_updates
        self.version = 0  # world-model updates so far: stored states older than this are stale
        self._laplace = None  # the column's parameters in float64, refreshed after learning
        self._belief = None   # laplace: (mean, cov); point: the grouped state
        self._activity: dict[str, torch.Tensor] = {}

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(self.dims)

    def _parts(self):
        if self._laplace is None:
            self._laplace = laplace_parts(self.model)
        return self._laplace

    def _start(self, batch: int):
        if self.cfg.posterior == "laplace":
            return initial_belief(self._parts(), batch, self.cfg.initial_variance)
        return self.model.zeros(batch)

    def reset(self, done=None) -> None:
        """Forget the past of every stream, or of the streams where `done` (N,) is true."""
        if done is None or self._belief is None:
            self._belief = None
            return
        done = torch.as_tensor(np.asarray(done, bool), device=self.device)
        self._belief = self._where(done, self._start(len(done)), self._belief)

    def efference(self, a_prev, batch: int) -> torch.Tensor:
        """The previous actions (B, …) as the efference copy (B, action_dim); zero when None."""
        if a_prev is None:
            return torch.zeros(batch, self.action_dim, device=self.device)
        a = torch.as_tensor(np.asarray(a_prev), device=self.device)
        if self.discrete:
            return torch.nn.functional.one_hot(a.reshape(batch).long(), self.action_dim).float()
        return a.reshape(batch, self.action_dim).float()

    def perceive(self, x, a_prev=None) -> dict[str, torch.Tensor]:
        """One filtering step: x (B, d_x), a_prev (B, …) or None → {node: (B, d)}."""
        x = torch.as_tensor(np.asarray(x, np.float32), device=self.device)
        if x.ndim != 2 or x.shape[1] != self.dims["x"]:
            raise ValueError(f"the cortex expects observations of shape (B, {self.dims['x']}), "
                             f"got {tuple(x.shape)}")
        belief = self._belief
        if belief is None or self._batch(belief) != x.shape[0]:
            belief = self._start(x.shape[0])
        self._belief, z, self._activity = self._step(belief, x, self.efference(a_prev, len(x)),
                                                     activity=True)
        return z

    def _step(self, belief, x: torch.Tensor, a: torch.Tensor, *, activity: bool = False):
        """Belief after x (B, d_x) given the belief before and the efference copy a (B, A):
        returns (belief, {node: (B, d)}, {monitor name: (B, …)} or None)."""
        with torch.no_grad():
            if self.cfg.posterior == "laplace":
                p = self._parts()
                step = filter_step(p, *belief, x, a)
                z = {"x": x, p.state: step.mean.float()}
                if not activity:
                    return (step.mean, step.cov), z, None
                errors = {p.state: (step.mean - step.prior_mean).float(),
                          "x": (x - p.f.fn(step.mean) @ p.W.T - p.c).float()}
                innovation = step.innovation.float()
                extra = {"cortex/entropy": 0.5 * (torch.logdet(step.cov) + step.cov.shape[-1]
                                                   * math.log(2 * math.pi * math.e)).float()}
                new = (step.mean, step.cov)
            else:
                beliefs = infer(self.model, {"x": x}, self.inference, past=belief, action=a,
                                recognizer=self.recognizer)
                z = {name: beliefs[name] for name in self.dims}
                if not activity:
                    return beliefs.z, z, None
                errors = {name: beliefs.error(name) for name in self.dims}
                innovation = x - self._predict(belief, a)
                extra = {"cortex/inference_iterations": torch.full((len(x),), beliefs.steps)}
                new = beliefs.z
        return new, z, {**{f"cortex/{n}/z": v for n, v in z.items()},
                        **{f"cortex/{n}/error": v for n, v in errors.items()},
                        **{f"cortex/{n}/energy": self._energy(n, v) for n, v in errors.items()},
                        "cortex/prediction_error": innovation.pow(2).sum(-1), **extra}

    def _where(self, mask: torch.Tensor, fresh, belief):
        """Per sample (B,) bool: `fresh` where true, `belief` elsewhere."""
        if self.cfg.posterior == "laplace":
            return tuple(torch.where(mask.view(-1, *[1] * (old.ndim - 1)), new, old)
                         for old, new in zip(belief, fresh))
        return [torch.where(mask.view(1, -1, 1), new, old) for old, new in zip(belief, fresh)]

    def _take(self, belief, rows: torch.Tensor):
        """The beliefs of samples `rows`."""
        if self.cfg.posterior == "laplace":
            return tuple(b[rows] for b in belief)
        return [b[:, rows] for b in belief]

    def reperceive(self, obs: np.ndarray, actions: np.ndarray, first: np.ndarray,
                   next_obs: np.ndarray, last: np.ndarray, *, chunks: int = 512):
        """Re-infer, with the current world model, the states of a chronological stream of
        stored transitions: obs, next_obs (N, d_x), the actions taken (N, …), `first` (N,)
        true where an episode starts and `last` (N,) where one ends. Returns ({node: (N, d)}
        after each x_t, {node: (N, d)} after each next x), as online filtering from each
        episode's start would give them. The stream is cut into `chunks` pieces filtered side by
        side, each from `burn_in` steps before its start (an empty belief there), so a state
        more than `burn_in` steps into a cut episode is re-inferred from its recent history only.
        """
        n = len(obs)
        dev = self.device
        x = torch.as_tensor(np.asarray(obs, np.float32), device=dev)
        x_next = torch.as_tensor(np.asarray(next_obs, np.float32), device=dev)
        a = self.efference(actions, n)
        a_prev = torch.cat([torch.zeros_like(a[:1]), a[:-1]])
        first = torch.as_tensor(np.asarray(first, bool), device=dev)
        a_prev[first] = 0.0
        last = torch.as_tensor(np.asarray(last, bool), device=dev)
        # the state after next_obs is perceived from the belief at t where no stored step follows
        final = last.clone()
        final[-1] = True
        length = -(-n // chunks)
        rows = -(-n // length)
        warm = self.burn_in
        position = (torch.arange(rows, device=dev)[:, None] * length - warm
                    + torch.arange(length + warm, device=dev)[None, :])
        inside = (position >= 0) & (position < n)
        position = position.clamp(0, n - 1)
        z = {name: torch.zeros(n, d, device=dev) for name, d in self.dims.items()}
        z_next = {name: torch.zeros(n, d, device=dev) for name, d in self.dims.items()}
        empty = self._start(rows)
        belief = empty
        for j in range(length + warm):
            i = position[:, j]
            belief = self._where(first[i], empty, belief)
            belief, zj, _ = self._step(belief, x[i], a_prev[i])
            kept = inside[:, j] & (j >= warm)
            for name in z:
                z[name][i[kept]] = zj[name][kept]
            ends = torch.nonzero(kept & final[i]).squeeze(-1)
            if len(ends):
                _, zf, _ = self._step(self._take(belief, ends), x_next[i[ends]], a[i[ends]])
                for name in z_next:
                    z_next[name][i[ends]] = zf[name]
        following = ~final
        for name in z_next:
            z_next[name][following] = z[name][1:][following[:-1]]
        return z, z_next

    def _batch(self, belief) -> int:
        return belief[0].shape[0] if self.cfg.posterior == "laplace" else belief[0].shape[1]

    def _predict(self, past, action) -> torch.Tensor:
        """The observation predicted from the grouped states `past` and the actions: (B, d_x)."""
        batch = past[0].shape[1]
        prior = forward_fill(self.model, self.model.zeros(batch),
                             self.model.drive(batch, past, action))
        k, i = self.model.slot["x"]
        return prior[k][i]

    def _energy(self, node: str, error: torch.Tensor) -> torch.Tensor:
        """½ εᵀΠε + ½ log|2πΣ| of one column, (B,)."""
        k, i = self.model.slot[node]
        log_pi = self.model.log_precision[k][i].detach()
        return (0.5 * (log_pi.exp() * error.pow(2)).sum(-1)
                + 0.5 * (error.shape[-1] * math.log(2 * math.pi) - log_pi.sum()))

    def activity(self) -> dict[str, torch.Tensor]:
        """Monitor name → (B, …) of the last `perceive`: each column's z, error and energy, the
        world model's one-step prediction error of x, and the posterior entropy (laplace) or
        the inference iterations taken (point)."""
        return self._activity

    def _filter(self, obs: dict, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Filtered states {node: (T, B, d)} of windows that start from an empty belief."""
        model = self.model
        if self.cfg.posterior == "laplace":
            path = laplace_filter(model, obs, actions, initial_variance=self.cfg.initial_variance)
            return {"x": obs["x"], self._parts().state: path.mean.float()}
        with torch.no_grad():
            return run_sequence(model, obs, actions, self.inference).z

    def prediction_error(self, seq) -> float:
        """Mean squared one-step prediction error of x (summed over its dimensions) on replayed
        windows, filtering with the current model; the first step of a window, predicted from
        an empty belief, is left out."""
        with torch.no_grad():
            if self.cfg.posterior == "laplace":
                path = laplace_filter(self.model, seq.obs, seq.actions,
                                      initial_variance=self.cfg.initial_variance)
                return float(path.innovation[1:].pow(2).sum(-1).mean())
            z = run_sequence(self.model, seq.obs, seq.actions, self.inference).z
            return self._sequence_error(z, seq.obs["x"], seq.actions)

    @torch.no_grad()
    def _sequence_error(self, z: dict, x: torch.Tensor, actions: torch.Tensor) -> float:
        steps, batch = x.shape[:2]
        past = self.model.to_grouped({n: v[:-1].reshape((steps - 1) * batch, -1)
                                      for n, v in z.items()}, (steps - 1) * batch)
        pred = self._predict(past, actions[:-1].reshape((steps - 1) * batch, -1))
        return float((x[1:].reshape(pred.shape) - pred).pow(2).sum(-1).mean())

    def learn(self, seq) -> dict[str, float]:
        """One world-model step on replayed windows: laplace, an EM step (smoother, then the
        M-step on E_q[F]); point, the local rule at the filtered states. Returns the one-step
        prediction error of x before the step and the free energy (laplace: −log evidence)
        per step."""
        cfg = self.cfg
        self.version += 1
        if cfg.posterior == "laplace":
            path = learn_sequences_laplace(
                self.model, self.optimizer, seq.obs, seq.actions,
                initial_variance=cfg.initial_variance, precision_rate=cfg.precision_rate,
                min_variance=cfg.min_variance, max_grad_norm=cfg.grad_clip or None)
            self._laplace = None
            steps = path.innovation.shape[0]
            return {"prediction_error": float(path.innovation[1:].pow(2).sum(-1).mean()),
                    "free_energy": float(-path.log_evidence.mean() / steps)}
        traj = learn_sequences(self.model, self.optimizer, seq.obs, seq.actions, self.inference)
        losses = {"prediction_error": self._sequence_error(traj.z, seq.obs["x"], seq.actions),
                  "free_energy": float(sum(traj.energy.values()).mean())}
        if self.recognizer is not None:  # hybrid PC: the recogniser learns the converged states
            loss = self.recognizer.loss({n: v.reshape(-1, v.shape[-1]) for n, v in traj.z.items()})
            self.recognizer_optimizer.zero_grad()
            loss.backward()
            self.recognizer_optimizer.step()
            losses["recognition"] = loss.item()
        return losses

    def imagine(self, seq, burn_in: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter the first `burn_in` steps of each window, then imagine the rest under the
        actions taken (the prior alone, nothing clamped). Returns (imagined, actual) x of the
        steps after the burn-in, (B, T − burn_in, d_x)."""
        head = {n: v[:burn_in] for n, v in seq.obs.items()}
        z = self._filter(head, seq.actions[:burn_in])
        batch = seq.actions.shape[1]
        state = self.model.to_grouped({n: v[-1] for n, v in z.items()}, batch)
        imagined = rollout(self.model, state, seq.actions[burn_in - 1:-1])["x"]
        return imagined.transpose(0, 1), seq.obs["x"][burn_in:].transpose(0, 1)
