"""What every agent shares: environment plumbing, the off-policy loop, the log.

Two loops cover the appendix. `OffPolicyAgent.learn` — act, store the transition in the
hippocampal replay memory, every `train_freq` steps replay `gradient_steps` minibatches into
`update` (DQN, DDPG, SVG(0), SAC). `OnPolicyAgent.learn` (basal_ganglia.agents.onpolicy) —
collect a rollout from vector environments, compute advantages, `update` (REINFORCE, PPO).
Each algorithm supplies its networks, `td` (its dopamine δ on a batch of transitions) and
`update`; the loops, the replay, δ and the recording are written once.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from hippocampus.replay import ReplayMemory


def _f(default, help: str):
    """A documented config field (the help doubles as the command-line description)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default")
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class AgentConfig:
    """Fields every algorithm has."""

    gamma: float = _f(0.99, "discount factor γ")
    learning_rate: float = _f(3e-4, "Adam learning rate")
    hidden: tuple[int, ...] = _f((256, 256), "hidden layer widths of every network")
    eval_every: int = _f(0, "evaluate every this many env steps (0 = only when asked)")
    eval_episodes: int = _f(5, "episodes per evaluation (deterministic actions)")


@dataclass(frozen=True)
class OffPolicyConfig(AgentConfig):
    """Fields of the replay-based algorithms."""

    buffer_size: int = _f(1_000_000, "replay memory capacity (transitions)")
    batch_size: int = _f(256, "replayed minibatch size")
    learning_starts: int = _f(100, "env steps of uniformly random actions before learning")
    train_freq: int = _f(1, "env steps between training phases")
    gradient_steps: int = _f(1, "gradient steps per training phase")
    tau: float = _f(0.005, "Polyak rate of the target networks")


EnvLike = "str | gym.Env | Callable[[], gym.Env]"


def env_factory(env) -> Callable[[], gym.Env]:
    """A callable making fresh copies of `env` (an id, an instance or a factory)."""
    if isinstance(env, str):
        return lambda: gym.make(env)
    if isinstance(env, gym.Env):
        return lambda: copy.deepcopy(env)
    if callable(env):
        return env
    raise ValueError(f"env must be an environment id, a gymnasium.Env or a factory, got {env!r}")


def flat_dim(space: gym.Space, what: str) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{what} must be a 1-D Box, got {space}")
    return int(space.shape[0])


class History:
    """In-memory log of a run, mirrored into a Recorder when one is given."""

    def __init__(self, recorder=None):
        self.recorder = recorder
        self.series: dict[str, list] = {}

    def log(self, name: str, value, description: str, units: str | None = None) -> None:
        value = np.asarray(value)
        if value.dtype.kind == "f":  # scalars stay exact, per-step arrays are compact
            value = value.astype(np.float32 if value.ndim else np.float64)
        self.series.setdefault(name, []).append(value)
        if self.recorder is not None:
            self.recorder.append(name, value, units=units, description=description)

    def __getitem__(self, name: str) -> np.ndarray:
        return np.asarray(self.series.get(name, []))


class Agent:
    """Base of every algorithm: construction checks, `act`, `evaluate`, the shared log.

    Subclasses set `name`, `config_cls`, `action_kind` ("discrete", "continuous" or "any"),
    build their networks in `build()` and implement `act` and `learn`.
    """

    name = "agent"
    config_cls: type = AgentConfig
    action_kind = "any"

    def __init__(self, cfg, env, *, seed: int = 0, device: str | torch.device = "cpu",
                 state_dim: int | None = None):
        if not isinstance(cfg, self.config_cls):
            raise ValueError(f"{self.name} needs a {self.config_cls.__name__}, got "
                             f"{type(cfg).__name__}")
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.make_env = env_factory(env)
        self.env = self.make_env()
        self.obs_space, self.action_space = self.env.observation_space, self.env.action_space
        self.state_dim = flat_dim(self.obs_space, "the observation space")
        if state_dim is not None and state_dim != self.state_dim:
            raise ValueError(f"{self.name}: configured state dimension {state_dim} does not match "
                             f"the observation dimension {self.state_dim} of the environment")
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"{self.name}: unsupported action space {self.action_space}")
        if self.action_kind == "continuous" and self.discrete:
            raise ValueError(f"{self.name} needs a continuous (Box) action space; this "
                             f"environment has {self.action_space}. Use dqn, ppo or reinforce.")
        if self.action_kind == "discrete" and not self.discrete:
            raise ValueError(f"{self.name} needs a Discrete action space; this environment "
                             f"has {self.action_space}. Use sac, ddpg, svg0 or ppo.")
        self.action_dim = (int(self.action_space.n) if self.discrete
                           else flat_dim(self.action_space, "the action space"))
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(seed)
        self.num_steps = 0
        self.history = History()
        self.build()

    @classmethod
    def from_config(cls, cfg=None, env="CartPole-v1", **kwargs):
        """Build from a config (defaults when None) and an environment id/instance/factory."""
        return cls(cfg if cfg is not None else cls.config_cls(), env, **kwargs)

    def build(self) -> None:
        raise NotImplementedError

    def obs_tensor(self, obs) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        if z.shape[-1] != self.state_dim:
            raise ValueError(f"{self.name} expects states of dimension {self.state_dim}, got "
                             f"shape {tuple(z.shape)}")
        return z

    def act(self, obs, deterministic: bool = False):
        """Action for one observation (state_dim,) or a batch (B, state_dim)."""
        raise NotImplementedError

    def evaluate(self, episodes: int | None = None, *, seed: int | None = None) -> np.ndarray:
        """Returns of `episodes` episodes with deterministic actions on a fresh env copy."""
        env = self.make_env()
        episodes = episodes or self.cfg.eval_episodes
        base = (self.seed + 10_000) if seed is None else seed
        returns = []
        for i in range(episodes):
            obs, _ = env.reset(seed=base + i)
            total, done = 0.0, False
            while not done:
                obs, r, term, trunc, _ = env.step(self.act(obs, deterministic=True))
                total += float(r)
                done = term or trunc
            returns.append(total)
        env.close()
        return np.asarray(returns)

    def _maybe_evaluate(self, previous_steps: int) -> None:
        every = self.cfg.eval_every
        if every and self.num_steps // every > previous_steps // every:
            returns = self.evaluate()
            self.history.log("rl/eval_return", returns.mean(), "mean return of deterministic "
                             "evaluation episodes")
            self.history.log("rl/eval_env_step", self.num_steps, "env steps at evaluation",
                             units="steps")

    def _log_episode(self, episode_return: float) -> None:
        self.history.log("rl/episode_return", episode_return, "undiscounted training episode "
                         "return")
        self.history.log("rl/episode_env_step", self.num_steps, "env steps when the episode "
                         "ended", units="steps")

    def _log_losses(self, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            self.history.log(f"rl/loss/{k}", v, f"training loss {k}, one entry per update")
        self.history.log("rl/update_env_step", self.num_steps, "env steps at each update",
                         units="steps")

    def _log_env(self, obs, action, reward, terminated, truncated) -> None:
        """The environment's side of a step (or of a rollout, with leading (T, N) axes)."""
        h = self.history
        h.log("env/obs", np.asarray(obs, np.float32), "observation x_t the action was taken in")
        h.log("env/action", np.asarray(action, np.int64 if self.discrete else np.float32),
              "action a_t")
        h.log("env/reward", np.asarray(reward, np.float32), "reward r_t")
        h.log("env/terminated", np.asarray(terminated, np.int8), "1 when step t ended the "
              "episode in a terminal state")
        h.log("env/truncated", np.asarray(truncated, np.int8), "1 when step t ended the episode "
              "by a time limit")

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)


def to_env_action(space: gym.Space, a: np.ndarray):
    """Tensor-side action → what env.step takes (int for Discrete, clipped array for Box)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(a)
    return np.clip(a, space.low, space.high).astype(space.dtype)


class OffPolicyAgent(Agent):
    """The replay loop: act → store in the replay memory → every train_freq steps, update."""

    config_cls = OffPolicyConfig

    def build_memory(self) -> None:
        self.memory = ReplayMemory(
            self.cfg.buffer_size, self.obs_space.shape,
            () if self.discrete else self.action_space.shape,
            action_dtype=np.int64 if self.discrete else np.float32)

    def explore(self, obs: np.ndarray):
        """Behaviour action for one observation once learning has started."""
        return self.act(obs, deterministic=False)

    def q_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Dorsal striatum Q̂(z, a) of the algorithm, (B,)."""
        raise NotImplementedError

    def td_target(self, batch) -> torch.Tensor:
        """The algorithm's bootstrapped target r + γ (1 − terminated) V̂'(z'), (B,), no grad."""
        raise NotImplementedError

    def td(self, batch) -> torch.Tensor:
        """Dopamine δ = target − Q̂(z, a) of a batch of transitions, (B,)."""
        return self.td_target(batch) - self.q_value(batch.obs, batch.action)

    def update(self, batch) -> dict[str, float]:
        raise NotImplementedError

    def after_env_step(self) -> None:
        """Per env step bookkeeping (schedules, hard target syncs)."""

    def learn(self, steps: int, *, recorder=None, callback=None, progress=None):
        """Run `steps` environment steps of training; returns self.

        recorder: an analysis.recording.Recorder (or None) that receives returns, losses and the
        dopamine δ of every env step; callback(agent) is called after every env step and may
        return False to stop; progress: a tqdm-like bar updated once per env step.
        """
        cfg = self.cfg
        self.history.recorder = recorder
        self.total_steps = self.num_steps + steps
        obs, _ = self.env.reset(seed=self.seed) if self.num_steps == 0 else (self._obs, None)
        episode_return = getattr(self, "_episode_return", 0.0)
        for _ in range(steps):
            self.num_steps += 1
            if self.num_steps <= cfg.learning_starts:
                action = self.action_space.sample()
            else:
                action = self.explore(obs)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            # without autoreset, next_obs is the final observation on truncation: bootstrap from it
            self.memory.add(obs, action, reward, next_obs, terminated, truncated)
            episode_return += float(reward)
            if recorder is not None:
                with torch.no_grad():
                    last = self.memory.latest(device=self.device)
                    q = self.q_value(last.obs, last.action)
                    delta = self.td_target(last) - q
                self._log_env(obs, action, reward, terminated, truncated)
                self.history.log("basal_ganglia/q", float(q[0]), "dorsal striatum Q̂(z_t, a_t) "
                                 "of the action just taken")
                self.history.log("basal_ganglia/dopamine", float(delta[0]),
                                 "dopamine: TD error δ of the transition just taken")
            if terminated or truncated:
                self._log_episode(episode_return)
                episode_return = 0.0
                obs, _ = self.env.reset()
            else:
                obs = next_obs
            if self.num_steps > cfg.learning_starts and self.num_steps % cfg.train_freq == 0:
                losses: dict[str, list] = {}
                for _ in range(cfg.gradient_steps):
                    batch = self.memory.sample(cfg.batch_size, self.rng, device=self.device)
                    for k, v in self.update(batch).items():
                        losses.setdefault(k, []).append(v)
                self._log_losses({k: float(np.mean(v)) for k, v in losses.items()})
            self.after_env_step()
            self._maybe_evaluate(self.num_steps - 1)
            if progress is not None:
                progress.update()
            if callback is not None and callback(self) is False:
                break
        self._obs, self._episode_return = obs, episode_return
        return self


def log_action_free_energy(history: History, terms: dict) -> None:
    """Record the six terms of cortex.action under basal_ganglia/action_free_energy/<term>."""
    from cortex.action import TERMS, total

    for k in TERMS:
        history.log(f"basal_ganglia/action_free_energy/{k}", float(terms[k].detach()),
                    f"action free energy term {k} (seed Eq. 2), batch mean, one per update")
    history.log("basal_ganglia/action_free_energy/total", float(total(terms).detach()),
                "action free energy: sum of the six terms, one per update")
