"""The closed loop (DESIGN.md §8–9): one environment step read top to bottom.

    observe x_t → perceive z_t → act a_t → step the environment → store in replay
      → on schedule: world model, critics and policy learn → record

`Agent` holds what plugs into the loop — an algorithm (networks + `update`), a perception
(`cortex.perception`), a replay memory (`hippocampus.replay`) and the environment — and offers
Stable-Baselines3's small surface: `learn(n)`, `act(obs)`, `evaluate(k)`. `learn` runs one of
two plain loops: `run_off_policy` (one environment, replay; DQN, DDPG, SVG(0), SAC) or
`run_on_policy` (vector environments, rollouts; REINFORCE, PPO, TD(λ)). Everything a loop
needs between steps is a local variable of the loop: each `learn(n)` call starts fresh episodes
and runs its own schedules (ε, annealing) over its n steps, while the networks, the replay
memory and the step count carry over. What a loop records goes straight to the recorder under
the names of `analysis.monitors` (per environment step: (step, env, …)); nothing is kept in RAM.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from basal_ganglia.returns import ESTIMATORS, td_errors
from basal_ganglia.striatum import read_cortex
from cortex.params import check_finite
from cortex.perception import RawPerception
from hippocampus.replay import PerceivedStates, ReplayMemory


def env_factory(env) -> Callable[[], gym.Env]:
    """A callable making fresh copies of `env` (an id, an instance or a factory)."""
    if isinstance(env, str):
        return lambda: gym.make(env)
    if isinstance(env, gym.Env):
        return lambda: copy.deepcopy(env)
    if callable(env):
        return env
    raise ValueError(f"env must be an environment id, a gymnasium.Env or a factory, got {env!r}")


def check_action_space(algo_cls, space: gym.Space) -> None:
    """ValueError when the algorithm cannot act in `space` (naming what would)."""
    discrete = isinstance(space, gym.spaces.Discrete)
    if not discrete and not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise ValueError(f"{algo_cls.name}: unsupported action space {space}; need Discrete or "
                         f"a 1-D Box")
    if algo_cls.action_kind == "continuous" and discrete:
        raise ValueError(f"{algo_cls.name} needs a continuous (Box) action space; this "
                         f"environment has {space}. Use dqn, ppo or reinforce.")
    if algo_cls.action_kind == "discrete" and not discrete:
        raise ValueError(f"{algo_cls.name} needs a Discrete action space; this environment "
                         f"has {space}. Use sac, ddpg, svg0 or ppo.")


class Agent:
    """An algorithm in the closed loop with a perception, a replay memory and an environment.

    algo_cls: an algorithm class of `basal_ganglia.agents.ALGORITHMS`; cfg: its config;
    env: an environment id, instance or factory; perception: the perception slot (default: the
    raw observation); state_nodes: the perceived columns the policy and critics read (default:
    all of the perception's); motivation: a `reward_bases.MotivationalTimeline` over
    environment steps for an environment that emits `info["reward_bases"]` (DQN only): the
    critics learn a value per basis, the agent acts and counts its returns by Σ_i α_i r_i with
    the α of the current step. `num_steps` counts environment steps over every `learn` call.
    keep_best: at every periodic evaluation that scores at least as well as the best so far,
    keep a copy of the learned networks (`best`: score, env step, state), which
    `restore_best` puts back — as Stable-Baselines3's EvalCallback keeps its best model.
    """

    def __init__(self, algo_cls, cfg, env, *, seed: int = 0, device="cpu", perception=None,
                 state_nodes: tuple[str, ...] | None = None, motivation=None,
                 keep_best: bool = False):
        if not isinstance(cfg, algo_cls.config_cls):
            raise ValueError(f"{algo_cls.name} needs a {algo_cls.config_cls.__name__}, got "
                             f"{type(cfg).__name__}")
        self.cfg, self.seed, self.device = cfg, seed, torch.device(device)
        self.keep_best, self.best = keep_best, None
        self.make_env = env_factory(env)
        self.env = self.make_env()
        self.action_space = self.env.action_space
        check_action_space(algo_cls, self.action_space)
        self.discrete = isinstance(self.action_space, gym.spaces.Discrete)
        self.n_actions = int(self.action_space.n) if self.discrete else None
        self.perception = perception or RawPerception(self.env.observation_space, self.device)
        if self.perception.has_memory and not hasattr(cfg, "buffer_size"):
            raise ValueError(f"{algo_cls.name} learns from rollouts without replay; a perception "
                             f"with memory (the cortex) needs an off-policy algorithm: dqn, "
                             f"ddpg, svg0 or sac")
        self.state_nodes = tuple(state_nodes or self.perception.nodes)
        unknown = [n for n in self.state_nodes if n not in self.perception.dims]
        if unknown:
            raise ValueError(f"the policy and critics read column(s) {unknown} that the "
                             f"perception does not offer; it has {list(self.perception.nodes)}")
        # imported here: basal_ganglia.agents imports this module for make_agent
        from basal_ganglia.agents.config import Spaces

        state_dim = sum(self.perception.dims[n] for n in self.state_nodes)
        self.motivation = motivation
        n_bases = 1 if motivation is None else len(motivation.bases)
        if motivation is not None:
            check_reward_bases(algo_cls, self.env, motivation.bases)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(seed)
        self.algo = algo_cls(cfg, Spaces(state_dim, self.action_space, n_bases), self.device)
        if motivation is not None:
            self.algo.set_motivation(motivation.alpha_at(0))
        self.memory = self.perceived = None
        if hasattr(cfg, "buffer_size"):
            try:
                self.memory = ReplayMemory(
                    cfg.buffer_size, self.env.observation_space.shape,
                    () if self.discrete else self.action_space.shape,
                    action_dtype=np.int64 if self.discrete else np.float32,
                    reward_shape=() if motivation is None else (n_bases,),
                    alpha=cfg.priority_alpha)
            except MemoryError:
                raise ValueError(f"{algo_cls.name}.buffer_size={cfg.buffer_size} transitions do "
                                 f"not fit in memory") from None
            if self.perception.has_memory:
                self.perceived = PerceivedStates(self.memory, state_dim)
            if cfg.replay == "prediction_error" and not self.perception.sequence_length:
                raise ValueError(f"{algo_cls.name}.replay='prediction_error' needs a perception "
                                 f"with a world model that learns (the cortex); use uniform or "
                                 f"td_error")
        self.num_steps = 0
        self.timings: dict[str, float] = {}  # seconds the loops spent per part, over all calls
        self._last_action = None  # what `act` did last: the efference copy of its next call
        self._perceived_version = -1  # the world model the stored states were inferred with

    def alpha(self, t: int) -> np.ndarray | None:
        """The motivational weights α (K,) at environment step t (the last phase's after the
        timeline ends); None without reward bases."""
        if self.motivation is None:
            return None
        return self.motivation.alpha_at(min(t, self.motivation.total - 1))

    def reward(self, r: float, info: dict, alpha: np.ndarray | None):
        """What replay stores of one step's reward — the basis rewards (K,) with reward
        bases, else r — and the reward the agent feels, Σ_i α_i r_i or r."""
        if alpha is None:
            return r, float(r)
        bases = self.motivation.bases.check(info.get("reward_bases", ()), "info['reward_bases']")
        return bases, float(alpha @ bases)

    def state(self, perception, x, a_prev=None) -> torch.Tensor:
        """z: (B, Σ d) — the configured columns of what `perception` makes of x: (B, d_x)."""
        return read_cortex(perception.perceive(x, a_prev), self.state_nodes)

    def replay_states(self, batch):
        """A replayed batch with obs/next_obs replaced by the configured columns of their
        perceived states (`perception.replayed`), for a perception without memory."""
        z, z_next = self.perception.replayed(batch)
        return dataclasses.replace(batch, obs=read_cortex(z, self.state_nodes),
                                   next_obs=read_cortex(z_next, self.state_nodes))

    def replay_batch(self, batch_size: int):
        """A replayed minibatch (uniform or prioritised, `cfg.replay`) as the critics learn from
        it: obs/next_obs are the perceived states — for a perception with memory the stored
        ones (`reperceive`)."""
        if self.cfg.replay == "uniform":
            batch = self.memory.sample(batch_size, self.rng, device=self.device)
        else:
            batch = self.memory.sample_prioritised(batch_size, self.rng,
                                                   beta=self.cfg.priority_beta, device=self.device)
        if self.perceived is None:
            return self.replay_states(batch)
        z, z_next = self.perceived.read(batch.index, self.device)
        return dataclasses.replace(batch, obs=z, next_obs=z_next)

    def refresh(self) -> None:
        """Re-infer the stored states if the world model changed since they were inferred."""
        version = getattr(self.perception, "version", 0)
        if version != self._perceived_version:
            self.reperceive()
            self._perceived_version = version

    def reperceive(self, chunks: int = 512) -> None:
        """Re-infer the state of every stored transition with the current world model
        (`perception.reperceive`, the stream cut into `chunks` pieces)."""
        index = self.memory.chronological()
        data = self.memory.arrays(index)
        last = data["terminated"] | data["truncated"]
        first = np.concatenate([[True], last[:-1]])
        z, z_next = self.perception.reperceive(data["obs"], data["action"], first,
                                               data["next_obs"], last, chunks=chunks)
        self.perceived.write(index, read_cortex(z, self.state_nodes),
                             read_cortex(z_next, self.state_nodes))

    def act(self, obs, deterministic: bool = False):
        """Action for one observation (d_x,) (an int or an (A,) array) or a batch (B, d_x).

        With a perception that has memory, successive calls are successive steps of one
        episode (the last action is the efference copy); call `perception.reset()` at a new one.
        """
        obs = np.asarray(obs, np.float32)
        single = obs.ndim == 1
        x = obs[None] if single else obs
        a_prev = self._last_action
        if a_prev is not None and len(a_prev) != len(x):
            a_prev = None
        z = self.state(self.perception, x, a_prev)
        a = self.algo.act(z, deterministic=deterministic, rng=self.rng)
        self._last_action = a
        return to_env_action(self.action_space, a[0]) if single else a

    def learn(self, steps: int, *, recorder=None, progress=None, callback=None,
              eval_every: int = 0, eval_episodes: int = 5) -> "Agent":
        """Train for `steps` environment steps (whole rollouts for on-policy algorithms).

        recorder: an analysis.recording.Recorder or None; progress: a tqdm-like bar (updated
        per env step); callback(agent) is called after every step (off-policy) or rollout
        (on-policy) and may return False to stop; eval_every: env steps between recorded
        deterministic evaluations of `eval_episodes` episodes (0 = none; they need a recorder).
        Returns self.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        loop = run_off_policy if self.memory is not None else run_on_policy
        loop(self, steps, recorder=recorder, progress=progress, callback=callback,
             eval_every=eval_every, eval_episodes=eval_episodes)
        return self

    def _modules(self) -> dict[str, nn.Module]:
        """Every torch module the policy depends on: the algorithm's networks and the
        perception's (found among their attributes)."""
        found = {}
        for owner, obj in (("algo", self.algo), ("perception", self.perception)):
            for name, value in vars(obj).items():
                if isinstance(value, nn.Module):
                    found[f"{owner}.{name}"] = value
        return found

    def snapshot(self) -> dict[str, dict]:
        """A copy of the learned parameters and buffers of every module (`_modules`)."""
        return {k: copy.deepcopy(m.state_dict()) for k, m in self._modules().items()}

    def restore(self, snapshot: dict[str, dict]) -> None:
        for k, m in self._modules().items():
            m.load_state_dict(snapshot[k])

    def restore_best(self) -> tuple[float, int] | None:
        """Put back the state of the best periodic evaluation (`keep_best`); returns its score
        and env step, or None when nothing was kept."""
        if self.best is None:
            return None
        score, step, state = self.best
        self.restore(state)
        return score, step

    def evaluate(self, episodes: int = 5, *, seed: int | None = None) -> np.ndarray:
        """Returns of `episodes` episodes with deterministic actions on a fresh env copy."""
        env, perception = self.make_env(), copy.copy(self.perception)
        base = (self.seed + 10_000) if seed is None else seed
        returns = []
        for i in range(episodes):
            obs, _ = env.reset(seed=base + i)
            perception.reset()
            total, done, a_prev = 0.0, False, None
            alpha = self.alpha(max(self.num_steps - 1, 0))  # the α of the last step taken
            while not done:
                z = self.state(perception, obs[None], a_prev)
                a = self.algo.act(z, deterministic=True, rng=self.rng)
                obs, r, term, trunc, info = env.step(to_env_action(self.action_space, a[0]))
                total += self.reward(r, info, alpha)[1]
                done, a_prev = term or trunc, a
            returns.append(total)
        env.close()
        return np.asarray(returns)


def check_reward_bases(algo_cls, env: gym.Env, bases=None) -> None:
    """Reward bases need a critic with a head per basis (DQN) and an environment that names
    the same bases (`reward_bases`; checked when `bases` is given) and emits them in
    `info["reward_bases"]`."""
    if not hasattr(algo_cls, "set_motivation"):
        raise ValueError(f"{algo_cls.name} has no per-basis critic; reward bases (a "
                         f"motivational timeline) work with dqn")
    names = getattr(env.unwrapped, "reward_bases", None)
    if names is None:
        raise ValueError(f"environment {env.spec.id if env.spec else env!r} emits no reward "
                         f"bases; a motivational timeline needs one that does (with a "
                         f"`reward_bases` attribute and info['reward_bases'], e.g. "
                         f"brainloop/GridRoom-v0)")
    if bases is not None and tuple(names.names) != tuple(bases.names):
        raise ValueError(f"the motivational timeline weighs bases {list(bases.names)}, the "
                         f"environment emits {list(names.names)}")


def to_env_action(space: gym.Space, a: np.ndarray):
    """Tensor-side action → what env.step takes (int for Discrete, the array for Box)."""
    return int(a) if isinstance(space, gym.spaces.Discrete) else a


def run_off_policy(agent: Agent, steps: int, *, recorder=None, progress=None, callback=None,
                   eval_every: int = 0, eval_episodes: int = 5) -> None:
    """`steps` closed-loop steps with one environment and replay (DQN, DDPG, SVG(0), SAC)."""
    # here, not at the top: importing basal_ganglia.agents imports this module
    from basal_ganglia.agents.config import optimizers, scale_learning_rates

    algo, cfg, env, memory, perception = (agent.algo, agent.cfg, agent.env, agent.memory,
                                          agent.perception)
    key = f"{algo.name}.learning_rate"
    obs, _ = env.reset(seed=agent.seed + agent.num_steps)
    perception.reset()
    z, activity = agent.state(perception, obs[None]), perception_activity(perception)
    episode_return, scale = 0.0, DivergenceScale(cfg.gamma)
    for i in range(steps):
        agent.num_steps += 1
        t = agent.num_steps
        alpha = agent.alpha(t - 1)
        if alpha is not None:  # the step's motivation: a switch revalues, with no update
            algo.set_motivation(alpha)
        with timed(agent, "acting"):
            if t <= cfg.learning_starts:
                action = env.action_space.sample()
            else:
                action = to_env_action(env.action_space,
                                       algo.act(z, deterministic=False, rng=agent.rng,
                                                progress=i / steps)[0])
        with timed(agent, "environment"):
            # without autoreset, next_obs is the final observation on truncation, which is
            # what the target bootstraps from
            next_obs, reward, terminated, truncated, info = env.step(action)
            stored, reward = agent.reward(reward, info, alpha)
            memory.add(obs, action, stored, next_obs, terminated, truncated)
        episode_return += reward
        scale.observe(reward)
        done = terminated or truncated
        # perceive what the action led to (the efference copy is the action): the state the
        # next step acts from, or at an episode's end the final state, perceived by a copy
        a_prev = np.asarray(action)[None]
        with timed(agent, "perception"):
            seer = copy.copy(perception) if done else perception
            z_next = agent.state(seer, next_obs[None], a_prev)
        if agent.perceived is not None:
            agent.perceived.write(memory.newest(), z, z_next)
        if cfg.replay == "prediction_error":  # how surprising the step was to the world model
            memory.update_priorities([memory.newest()],
                                     seer.activity()["cortex/prediction_error"])
        if recorder is not None:
            with timed(agent, "recording"):
                # a target may sample (SAC's a'); a forked generator keeps the recorded run
                # the same as an unrecorded one
                with torch.no_grad(), torch.random.fork_rng(devices=[]):
                    last = dataclasses.replace(memory.latest(device=agent.device), obs=z,
                                               next_obs=z_next)
                    q = algo.q_value(last.obs, last.action)
                    value = algo.value(z)
                    if alpha is None:
                        delta = algo.target(last) - q
                    else:  # the motivation and dopamine per reward basis; δ = Σ_i α_i δ^i
                        bases = algo.target_bases(last) - algo.q_bases(last.obs, last.action)
                        delta = bases @ algo.q.alpha
                        activity = {**activity, "basal_ganglia/alpha": alpha[None], **{
                            f"basal_ganglia/bases/{name}/dopamine": d[None]
                            for name, d in zip(agent.motivation.bases.names, bases[0])}}
                record_env_steps(recorder, obs[None, None], a_prev[None], [[stored]],
                                 [[terminated]], [[truncated]], q=q[None], value=value[None],
                                 delta=delta[None], activity=activity)
            check_finite("Q̂", q, step=t, key=key, where="env step", limit=scale.limit)
        if done:
            record_episode(recorder, episode_return, t)
            obs, _ = env.reset()
            perception.reset()
            with timed(agent, "perception"):
                z = agent.state(perception, obs[None])
            episode_return = 0.0
        else:
            obs, z = next_obs, z_next
        activity = perception_activity(perception)
        # learn on schedule: the world model θ from replayed sequences (a perception with a
        # model), the stored states re-inferred with it, then the critics and the policy φ
        # from replayed transitions
        if perception.sequence_length and t >= cfg.learning_starts:
            with timed(agent, "world_model"):
                world = learn_world_model(agent, t - cfg.learning_starts)
            if world is not None:
                record_world_model(recorder, world, t)
        if agent.perceived is not None and t >= cfg.learning_starts and (
                (t - cfg.learning_starts) % perception.refresh_every == 0):
            with timed(agent, "reperceive"):
                agent.refresh()
        if t > cfg.learning_starts and t % cfg.train_freq == 0:
            with timed(agent, "updates"):
                if cfg.anneal:
                    scale_learning_rates(optimizers(algo), 1.0 - i / steps)
                updates, replayed = [], []
                for _ in range(cfg.gradient_steps):
                    batch = agent.replay_batch(cfg.batch_size)
                    updates.append(algo.update(batch))
                    replayed.append(batch.index)
                    if cfg.replay == "td_error":
                        memory.update_priorities(batch.index, updates[-1].delta)
            record_updates(recorder, updates, t, key, scale.limit)
            record_replay(recorder, memory, replayed)
        if cfg.target_update_interval and t % cfg.target_update_interval == 0:
            algo.sync_targets()
        maybe_evaluate(agent, recorder, t - 1, t, eval_every, eval_episodes)
        if progress is not None:
            progress.update()
        if callback is not None and callback(agent) is False:
            break
    # the next learn call starts a new episode: replayed sequences must not run across
    memory.end_episode()


@contextmanager
def timed(agent: Agent, part: str):
    """Add the seconds the block takes to `agent.timings[part]`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        agent.timings[part] = agent.timings.get(part, 0.0) + time.perf_counter() - start


def perception_activity(perception) -> dict:
    """What the perception did at its last step, {monitor name: (1, …)}, to be recorded."""
    return perception.activity() if hasattr(perception, "activity") else {}


def learn_world_model(agent: Agent, since_start: int) -> dict[str, float] | None:
    """World-model updates from replayed windows once learning started (`since_start` steps
    ago): `warmup_updates` + 1 at the start, then one every `perception.learn_every` env steps
    for `perception.learn_for` steps. Returns the last update's losses, or None when none was
    due."""
    perception = agent.perception
    if since_start % perception.learn_every or since_start > perception.learn_for:
        return None
    repeats = 1 + (perception.warmup_updates if since_start == 0 else 0)
    for _ in range(repeats):
        world = perception.learn(agent.memory.sequences(
            perception.batch_size, perception.sequence_length, agent.rng,
            layout=perception.layout, n_actions=agent.n_actions, device=agent.device))
    return world


@dataclass
class Rollout:
    """One collection phase of N environments, each field (T, N[, …]): the observations x
    (numpy), the perceived states z the policy and V̂ read and what followed (tensors)."""

    obs: np.ndarray
    states: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    rewards: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    delta: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def make_vector_env(agent: Agent, n: int) -> gym.vector.VectorEnv:
    """n copies of the agent's environment in same-step autoreset mode, so that the
    observation a finished step led to (`final_obs`) is at hand to bootstrap truncations."""
    return gym.vector.SyncVectorEnv([agent.make_env for _ in range(n)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def collect(agent: Agent, envs, obs: np.ndarray, episode_returns: np.ndarray, recorder=None,
            a_prev: np.ndarray | None = None) -> tuple[Rollout, np.ndarray, np.ndarray]:
    """Step every environment `n_steps` times from `obs` (N, d_x) after the actions `a_prev`
    (N, …) (None at the start); returns the rollout, with δ (the dopamine of every step) and
    the advantages of the configured estimator, and the observations and last actions to
    continue from (zero for an environment whose episode just ended). `episode_returns` (N,) is
    updated in place."""
    algo, cfg, perception = agent.algo, agent.cfg, agent.perception
    space = agent.action_space
    buf = {k: [] for k in ("obs", "states", "actions", "log_probs", "values", "rewards",
                           "final", "terminated", "truncated")}
    for _ in range(cfg.n_steps):
        z = agent.state(perception, obs, a_prev)
        with torch.no_grad():
            a, logp = algo.policy.sample(z)
            v = algo.value(z)
        a_np = a.cpu().numpy()
        next_obs, r, term, trunc, info = envs.step(
            a_np if agent.discrete else np.clip(a_np, space.low, space.high))
        final = next_obs.copy()
        if "_final_obs" in info:
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]
        for k, value in (("obs", obs), ("states", z), ("actions", a), ("log_probs", logp),
                         ("values", v), ("rewards", r), ("final", final),
                         ("terminated", term), ("truncated", trunc)):
            buf[k].append(value)
        episode_returns += r
        agent.num_steps += len(r)
        done = term | trunc
        for i in np.flatnonzero(done):
            record_episode(recorder, float(episode_returns[i]), agent.num_steps)
            episode_returns[i] = 0.0
        a_prev = a_np.copy()
        if done.any():
            perception.reset(done)
            a_prev[done] = 0  # a new episode has no previous action
        obs = next_obs
    t = {k: torch.stack(buf[k]) for k in ("states", "actions", "log_probs", "values")}
    as_t = lambda x, dt=torch.float32: torch.as_tensor(np.asarray(x), dtype=dt,
                                                       device=agent.device)
    rewards = as_t(buf["rewards"])
    terminated, truncated = as_t(buf["terminated"], torch.bool), as_t(buf["truncated"],
                                                                      torch.bool)
    with torch.no_grad():
        final = np.asarray(buf["final"], np.float32)
        next_values = algo.value(agent.state(copy.copy(perception),
                                             final.reshape(-1, final.shape[-1]))
                                 ).reshape(rewards.shape)
    adv = ESTIMATORS[cfg.advantage](rewards, t["values"], next_values, terminated, truncated,
                                    cfg.gamma, cfg.gae_lambda)
    delta = td_errors(rewards, t["values"], next_values, terminated, cfg.gamma)
    rollout = Rollout(np.stack(buf["obs"]), t["states"], t["actions"], t["log_probs"], rewards,
                      t["values"], next_values, terminated, truncated, delta, adv,
                      adv + t["values"])
    return rollout, obs, a_prev


def run_on_policy(agent: Agent, steps: int, *, recorder=None, progress=None, callback=None,
                  eval_every: int = 0, eval_episodes: int = 5) -> None:
    """At least `steps` environment steps in whole rollouts (REINFORCE, PPO, TD(λ))."""
    algo, cfg = agent.algo, agent.cfg
    key = f"{algo.name}.learning_rate"
    envs = make_vector_env(agent, cfg.n_envs)
    obs, _ = envs.reset(seed=agent.seed + agent.num_steps)
    agent.perception.reset()
    episode_returns, scale = np.zeros(cfg.n_envs), DivergenceScale(cfg.gamma)
    start, a_prev = agent.num_steps, None
    while agent.num_steps - start < steps:
        before = agent.num_steps
        rollout, obs, a_prev = collect(agent, envs, obs, episode_returns, recorder, a_prev)
        if recorder is not None:
            record_env_steps(recorder, rollout.obs, rollout.actions, rollout.rewards,
                             rollout.terminated, rollout.truncated, value=rollout.values,
                             delta=rollout.delta)
        scale.observe(rollout.rewards)
        update = algo.update(rollout, progress=min(1.0, (agent.num_steps - start) / steps),
                             rng=agent.rng)
        record_updates(recorder, [update], agent.num_steps, key, scale.limit)
        maybe_evaluate(agent, recorder, before, agent.num_steps, eval_every, eval_episodes)
        if progress is not None:
            progress.update(agent.num_steps - before)
        if callback is not None and callback(agent) is False:
            break
    envs.close()


def record_env_steps(recorder, obs, action, reward, terminated, truncated, *, q=None,
                     value=None, delta=None, activity=None) -> None:
    """Rows of every per-step dataset: each argument is (T, env, …), T environment steps;
    `activity` is the perception's {monitor name: (env, …)} of one step."""
    rows = {**{name: v[None] for name, v in (activity or {}).items()},
            "env/obs": _np(obs, np.float32), "env/action": _np(action),
            "env/reward": _np(reward, np.float32), "env/terminated": _np(terminated, np.int8),
            "env/truncated": _np(truncated, np.int8), "basal_ganglia/q": q,
            "basal_ganglia/value": value, "basal_ganglia/dopamine": delta}
    for name, row in rows.items():
        if row is not None:
            recorder.extend(name, row)


def _np(x, dtype=None) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


def record_episode(recorder, episode_return: float, env_step: int) -> None:
    if recorder is not None:
        recorder.append("rl/episode_return", episode_return)
        recorder.append("rl/episode_env_step", env_step)


class DivergenceScale:
    """How large a loss or a value can honestly get. With rewards bounded by R (the largest
    |r| seen so far), returns and values are within R/(1 − γ) and a TD loss within
    (2R/(1 − γ))²; a million times that, or a non-finite number, is divergence."""

    def __init__(self, gamma: float):
        self.horizon = 1.0 / max(1.0 - gamma, 1e-3)
        self.reward = 1.0

    def observe(self, reward) -> None:
        self.reward = max(self.reward, float(np.abs(_np(reward)).max()))

    @property
    def limit(self) -> float:
        return 1e6 * (2.0 * self.reward * self.horizon) ** 2


def record_updates(recorder, updates: list, env_step: int, key: str, limit: float) -> None:
    """Record, then check, one training phase: the mean of each loss and free-energy term."""
    losses = {k: float(np.mean([u.losses[k] for u in updates])) for k in updates[0].losses}
    if recorder is not None:
        for name, value in losses.items():
            recorder.append(f"rl/loss/{name}", value)
        recorder.append("rl/update_env_step", env_step)
        for term in updates[0].free_energy:
            recorder.append(f"basal_ganglia/action_free_energy/{term}",
                            float(np.mean([u.free_energy[term] for u in updates])))
    for name, value in losses.items():
        check_finite(f"loss {name}", value, step=env_step, key=key, where="env step",
                     limit=limit)


def record_world_model(recorder, losses: dict[str, float], env_step: int) -> None:
    """Record, then check, one world-model update (`cortex/world_model/loss/<name>`)."""
    if recorder is not None:
        for name, value in losses.items():
            recorder.append(f"cortex/world_model/loss/{name}", value)
        recorder.append("cortex/world_model/env_step", env_step)
    for name, value in losses.items():
        check_finite(f"world-model {name}", value, step=env_step, key="cortex.lr",
                     where="env step")


def record_replay(recorder, memory: ReplayMemory, replayed: list[np.ndarray]) -> None:
    """Replay statistics of a training phase (`hippocampus/*`, one row per update): the
    memory's size and the mean age of the transitions replayed (flat slots `replayed`)."""
    if recorder is not None:
        recorder.append("hippocampus/size", len(memory))
        recorder.append("hippocampus/sample_age",
                        float(np.mean([memory.age(index) for index in replayed])))


def maybe_evaluate(agent: Agent, recorder, before: int, after: int, every: int,
                   episodes: int) -> None:
    """Evaluate when the step count crossed a multiple of `every` between `before` and `after`;
    with `agent.keep_best`, keep a copy of the learned state at the best evaluation so far."""
    if recorder is not None and every and after // every > before // every:
        score = float(agent.evaluate(episodes).mean())
        recorder.append("rl/eval_return", score)
        recorder.append("rl/eval_env_step", after)
        if agent.keep_best and (agent.best is None or score >= agent.best[0]):
            agent.best = (score, after, agent.snapshot())
