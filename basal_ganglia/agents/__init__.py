"""The reinforcement-learning family of the seed's appendix, behind one small API.

    agent = make_agent("sac", "Pendulum-v1", seed=0, learning_rate=1e-3)
    agent.learn(20_000, recorder=rec)
    action = agent.act(obs, deterministic=True)

or `SAC.from_config(SACConfig(...), env)`. Every agent exposes `learn(steps, *, recorder,
callback, progress)`, `act(obs, deterministic)`, `evaluate(episodes)` and `history`.
"""

from __future__ import annotations

import dataclasses

from basal_ganglia.agents.base import Agent
from basal_ganglia.agents.ddpg import DDPG, DDPGConfig
from basal_ganglia.agents.dqn import DQN, DQNConfig
from basal_ganglia.agents.onpolicy import PPO, PPOConfig, Reinforce, ReinforceConfig
from basal_ganglia.agents.sac import SAC, SACConfig, SVG0, SVG0Config
from basal_ganglia.agents.td_lambda import TDLambda, TDLambdaConfig

ALGORITHMS: dict[str, type[Agent]] = {
    cls.name: cls for cls in (DQN, DDPG, SVG0, SAC, Reinforce, PPO, TDLambda)}


def agent_class(algo: str) -> type[Agent]:
    """The class of `algo`; ValueError listing the valid names otherwise."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def make_config(algo: str, **overrides):
    """The default config of `algo` with `overrides` (unknown keys raise ValueError)."""
    cls = agent_class(algo).config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"{algo}: unknown config keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**overrides)


def make_agent(algo: str, env, *, seed: int = 0, device="cpu", state_dim: int | None = None,
               **overrides) -> Agent:
    """Build `algo` on `env` (id, instance or factory) with config overrides."""
    return agent_class(algo)(make_config(algo, **overrides), env, seed=seed, device=device,
                             state_dim=state_dim)


__all__ = ["ALGORITHMS", "Agent", "agent_class", "make_agent", "make_config", "DQN", "DDPG",
           "SVG0", "SAC", "Reinforce", "PPO", "TDLambda", "DQNConfig", "DDPGConfig",
           "SVG0Config", "SACConfig", "ReinforceConfig", "PPOConfig", "TDLambdaConfig"]
