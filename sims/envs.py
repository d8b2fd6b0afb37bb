"""Environments brainloop ships, with the Gymnasium API (reset(seed=), 5-tuple step).

`PavlovianConditioning` — one trial per episode: a conditioned stimulus (CS) at `cs_time`, the
unconditioned stimulus (reward R) `delay` steps later, optionally omitted. The observation is
the complete serial compound (tapped delay line): feature j is on exactly when the CS came
j steps ago, so every post-CS time has its own feature and the pre-CS state is all zeros.
The agent cannot act (a single no-op action). The trial ends (terminated) after `trial_length`
steps. Reward arrives with the transition into the US time step.

`RandomWalk` — Sutton & Barto's chain: states 1..n in a row, start in the middle, each action
moves one step left or right (the random behaviour of TD prediction is a uniform choice),
termination off either end, reward 1 off the right end. With γ = 1 and the uniform policy,
V(i) = i / (n + 1). Observations are one-hot.

`CueOutcome` and `GridRoom` emit a vector of named basis rewards (`reward_bases`, a
`basal_ganglia.reward_bases.RewardBases`) in `info["reward_bases"]` at every step, for the
revaluation simulations; their scalar reward is the plain sum, since the agent weighs the bases
by its own motivation α. Their observation is a state index (Discrete), for tabular learners.
`CueOutcome` — Pavlovian trials: the inter-trial state, then one of C cues at random, then that
cue's outcome (the basis rewards; none in extinction). `GridRoom` — an open square room with a
goal per basis; entering any goal ends the episode with its basis reward.
"""

from __future__ import annotations

from typing import Mapping

import gymnasium as gym
import numpy as np

from basal_ganglia.reward_bases import RewardBases


class PavlovianConditioning(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, trial_length: int = 30, cs_time: int = 5, delay: int = 10,
                 reward: float = 1.0, omission_prob: float = 0.0):
        if not 0 <= cs_time < cs_time + delay < trial_length:
            raise ValueError(f"need 0 <= cs_time < cs_time + delay < trial_length, got "
                             f"cs_time={cs_time}, delay={delay}, trial_length={trial_length}")
        if not 0 <= omission_prob <= 1:
            raise ValueError(f"omission_prob must be a probability in [0, 1], got {omission_prob}")
        self.trial_length, self.cs_time, self.delay = trial_length, cs_time, delay
        self.us_time = cs_time + delay
        self.reward, self.omission_prob = float(reward), float(omission_prob)
        self.n_features = trial_length - cs_time
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n_features,), np.float32)
        self.action_space = gym.spaces.Discrete(1)

    def _obs(self) -> np.ndarray:
        x = np.zeros(self.n_features, np.float32)
        if self.t >= self.cs_time:
            x[self.t - self.cs_time] = 1.0
        return x

    def reset(self, *, seed=None, options=None):
        """options={"omit": True} forces an omission trial (False forces reward)."""
        super().reset(seed=seed)
        self.t = 0
        omit = (options or {}).get("omit")
        self.omit = bool(self.np_random.random() < self.omission_prob) if omit is None else omit
        return self._obs(), {"t": 0, "omit": self.omit}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        self.t += 1
        r = self.reward if (self.t == self.us_time and not self.omit) else 0.0
        terminated = self.t >= self.trial_length - 1
        return self._obs(), r, terminated, False, {"t": self.t, "omit": self.omit}


class RandomWalk(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, n_states: int = 5):
        if n_states < 1:
            raise ValueError(f"RandomWalk needs at least one state, got n_states={n_states}")
        self.n_states = n_states
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n_states,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self) -> np.ndarray:
        x = np.zeros(self.n_states, np.float32)
        x[self.state - 1] = 1.0
        return x

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = (self.n_states + 1) // 2
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        self.state += 1 if int(action) == 1 else -1
        if self.state == 0:
            return np.zeros(self.n_states, np.float32), 0.0, True, False, {}
        if self.state == self.n_states + 1:
            return np.zeros(self.n_states, np.float32), 1.0, True, False, {}
        return self._obs(), 0.0, False, False, {}

    def true_values(self) -> np.ndarray:
        """V(i) = i / (n + 1) under the uniform policy, γ = 1, states 1..n."""
        return np.arange(1, self.n_states + 1) / (self.n_states + 1)


class CueOutcome(gym.Env):
    """Pavlovian cue → outcome trials with vector outcomes (e.g. the Dead Sea salt task).

    States: 0 the inter-trial state; 1..C the cues; C+1..2C their outcomes (terminal). Each
    trial: reset → state 0; the first step shows a cue drawn uniformly (reward 0), the second
    delivers its outcome (`info["reward_bases"]`, the cue's basis rewards, zero when reset with
    options={"extinction": True}) and ends the trial. options={"cue": name} forces the cue.
    outcomes: cue name → basis rewards (K,). One no-op action.
    """

    metadata = {"render_modes": []}

    def __init__(self, bases: RewardBases, outcomes: Mapping[str, np.ndarray]):
        if not outcomes:
            raise ValueError("CueOutcome needs at least one cue")
        self.reward_bases, self.cues = bases, tuple(outcomes)
        self.outcomes = np.stack([bases.check(outcomes[c], f"outcome of cue {c!r}")
                                  for c in self.cues])
        self.n_states = 1 + 2 * len(self.cues)
        self.observation_space = gym.spaces.Discrete(self.n_states)
        self.action_space = gym.spaces.Discrete(1)

    def cue_state(self, cue: int) -> int:
        return 1 + cue

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        options = options or {}
        self.extinction = bool(options.get("extinction", False))
        forced = options.get("cue")
        if forced is not None and forced not in self.cues:
            raise ValueError(f"cue {forced!r} is not one of {', '.join(self.cues)}")
        self.cue = (self.cues.index(forced) if forced is not None
                    else int(self.np_random.integers(len(self.cues))))
        self.state = 0
        return self.state, {"reward_bases": np.zeros(len(self.reward_bases))}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        if self.state == 0:
            self.state = self.cue_state(self.cue)
            return self.state, 0.0, False, False, {"reward_bases": np.zeros(len(self.reward_bases))}
        if self.state != self.cue_state(self.cue):
            raise RuntimeError("CueOutcome: the trial has ended; call reset()")
        self.state = 1 + len(self.cues) + self.cue
        r = np.zeros(len(self.reward_bases)) if self.extinction else self.outcomes[self.cue].copy()
        return self.state, float(r.sum()), True, False, {"reward_bases": r}


class GridRoom(gym.Env):
    """An open `size` × `size` room with one goal per reward basis.

    The agent starts at `start` (default the centre); actions 0–3 move up, down, left, right
    (a move into the wall leaves it in place); entering a goal ends the episode (terminated)
    with that goal's one-hot basis reward in `info["reward_bases"]`; `max_steps` truncates.
    The observation is the cell index row · size + col, or with one_hot=True that cell as a
    one-hot vector (a Box, for the deep agents). goals: basis name → (row, col).
    """

    metadata = {"render_modes": []}
    MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])

    def __init__(self, size: int, goals: Mapping[str, tuple[int, int]], *,
                 start: tuple[int, int] | None = None, max_steps: int = 100,
                 one_hot: bool = False):
        self.reward_bases = RewardBases(tuple(goals))
        self.size, self.max_steps = size, max_steps
        self.start = (size // 2, size // 2) if start is None else tuple(start)
        cells = {name: tuple(int(v) for v in cell) for name, cell in goals.items()}
        for name, cell in {**cells, "start": self.start}.items():
            if not all(0 <= v < size for v in cell) or len(cell) != 2:
                raise ValueError(f"{name} at {cell} is outside the {size}×{size} room")
        taken = list(cells.values()) + [self.start]
        if len(set(taken)) != len(taken):
            raise ValueError(f"goals and start must be different cells, got {cells}, start "
                             f"{self.start}")
        self.goal_of = {r * size + c: k for k, (r, c) in enumerate(cells.values())}
        self.one_hot = one_hot
        self.observation_space = (gym.spaces.Box(0.0, 1.0, (size * size,), np.float32) if one_hot
                                  else gym.spaces.Discrete(size * size))
        self.action_space = gym.spaces.Discrete(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cell, self.t = np.array(self.start), 0
        return self._obs(), {"reward_bases": np.zeros(len(self.reward_bases))}

    @property
    def state(self) -> int:
        """The cell index row · size + col."""
        return int(self.cell[0] * self.size + self.cell[1])

    def _obs(self):
        if not self.one_hot:
            return self.state
        x = np.zeros(self.size * self.size, np.float32)
        x[self.state] = 1.0
        return x

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r} for {self.action_space}")
        self.cell = np.clip(self.cell + self.MOVES[int(action)], 0, self.size - 1)
        self.t += 1
        r = np.zeros(len(self.reward_bases))
        goal = self.goal_of.get(self.state)
        if goal is not None:
            r[goal] = 1.0
        return (self._obs(), float(r.sum()), goal is not None, self.t >= self.max_steps,
                {"reward_bases": r})


ENVIRONMENTS = {"PavlovianConditioning": PavlovianConditioning, "RandomWalk": RandomWalk}

for _name, _cls in ENVIRONMENTS.items():
    if f"brainloop/{_name}-v0" not in gym.registry:
        gym.register(f"brainloop/{_name}-v0", entry_point=_cls)
# a small room for the deep agents: food and water in opposite corners, one-hot cells
if "brainloop/GridRoom-v0" not in gym.registry:
    gym.register("brainloop/GridRoom-v0", entry_point=GridRoom,
                 kwargs=dict(size=5, goals={"food": (0, 0), "water": (4, 4)}, max_steps=50,
                             one_hot=True))


class PartialObservation(gym.ObservationWrapper):
    """Show the agent some observation dimensions (`observe`, in order; empty = all), with
    Gaussian noise of standard deviation `noise` added (drawn from a generator seeded `seed`).
    Hiding dimensions makes a task partially observable: Pendulum-v1 with observe=(0, 1)
    shows (cos θ, sin θ) and hides the angular velocity."""

    def __init__(self, env: gym.Env, observe: tuple[int, ...] = (), noise: float = 0.0,
                 seed: int = 0):
        super().__init__(env)
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"observe/obs_noise need a 1-D Box observation space, got {space}")
        d = space.shape[0]
        bad = [i for i in observe if not 0 <= i < d]
        if bad or len(set(observe)) != len(observe):
            raise ValueError(f"config key 'observe': dimensions {list(observe)} must be distinct "
                             f"and in [0, {d}) for this environment")
        if not (np.isfinite(noise) and noise >= 0):
            raise ValueError(f"config key 'obs_noise' must be finite and >= 0, got {noise}")
        self.index = np.asarray(observe or range(d), np.int64)
        self.noise = float(noise)
        self.noise_rng = np.random.default_rng(seed)
        self.observation_space = gym.spaces.Box(space.low[self.index], space.high[self.index],
                                                dtype=np.float32)

    def observation(self, observation):
        x = np.asarray(observation, np.float32)[self.index]
        if self.noise:
            x = x + self.noise * self.noise_rng.standard_normal(x.shape).astype(np.float32)
        return x
