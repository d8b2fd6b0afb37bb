"""The reinforcement-learning family of the seed's appendix, behind one small API.

    agent = make_agent("sac", "Pendulum-v1", seed=0, learning_rate=1e-3)
    agent.learn(20_000, recorder=rec)
    action = agent.act(obs, deterministic=True)
    returns = agent.evaluate(10)

An algorithm is a config (a frozen, validated dataclass), its networks and `update(batch) ->
Update` (losses, the dopamine δ of the batch, the action free-energy terms). Off-policy
algorithms also offer `q_value(z, a)`, `target(batch)` (the bootstrapped TD target, so that
δ = target − Q̂) and `sync_targets()` (a Polyak step of rate τ; the loop calls it every
`target_update_interval` env steps, the update after every gradient step when that is 0); every algorithm offers `act(z, deterministic=, rng=,
progress=)`. The loop that feeds them is `basal_ganglia.loop`.
"""

from __future__ import annotations

import dataclasses

from basal_ganglia.agents.config import (AlgorithmConfig, OffPolicyConfig, OnPolicyConfig, Spaces,
                                         Update)
from basal_ganglia.agents.ddpg import DDPG, DDPGConfig
from basal_ganglia.agents.dqn import DQN, DQNConfig
from basal_ganglia.agents.onpolicy import (PPO, PPOConfig, Reinforce, ReinforceConfig, TDLambda,
                                           TDLambdaConfig)
from basal_ganglia.agents.sac import SAC, SACConfig, SVG0, SVG0Config
from basal_ganglia.loop import Agent

ALGORITHMS = {cls.name: cls for cls in (DQN, DDPG, SVG0, SAC, Reinforce, PPO, TDLambda)}


def algorithm_class(algo: str):
    """The class of `algo`; ValueError listing the valid names otherwise."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algo!r}; valid: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def make_config(algo: str, **overrides):
    """The default config of `algo` with `overrides` (unknown keys raise ValueError)."""
    cls = algorithm_class(algo).config_cls
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"{algo}: unknown config keys {sorted(unknown)}; valid: {sorted(names)}")
    return cls(**overrides)


def make_agent(algo: str, env, *, seed: int = 0, device="cpu", perception=None,
               state_nodes: tuple[str, ...] | None = None, motivation=None,
               **overrides) -> Agent:
    """`algo` in the closed loop on `env` (id, instance or factory), with config overrides;
    `motivation`: a reward-bases timeline (`Agent`)."""
    return Agent(algorithm_class(algo), make_config(algo, **overrides), env, seed=seed,
                 device=device, perception=perception, state_nodes=state_nodes,
                 motivation=motivation)


__all__ = ["ALGORITHMS", "Agent", "AlgorithmConfig", "OffPolicyConfig", "OnPolicyConfig", "Spaces",
           "Update", "algorithm_class", "make_agent", "make_config", "DQN", "DDPG", "SVG0", "SAC",
           "Reinforce", "PPO", "TDLambda", "DQNConfig", "DDPGConfig", "SVG0Config", "SACConfig",
           "ReinforceConfig", "PPOConfig", "TDLambdaConfig"]
