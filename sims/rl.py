"""`rl`: train any algorithm of the seed's appendix on any Gymnasium environment.

Records training episode returns (`rl/episode_return` against `rl/episode_env_step`),
deterministic evaluations (`rl/eval_return`, `rl/eval_env_step`), every loss
(`rl/loss/<name>` against `rl/update_env_step`), the dopamine δ (`basal_ganglia/dopamine`, per
env step for replay agents, per rollout (n_steps, n_envs) for policy-gradient agents) and the
six action free-energy terms (`basal_ganglia/action_free_energy/<term>`).

Summary figures: `final_mean_return` (mean return of `eval_episodes` deterministic episodes at
the end) and `env_steps` (environment steps taken).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sims.envs  # noqa: F401  (registers the brainloop/* environment ids)
from basal_ganglia.agents import agent_class
from sims.config import build_config
from sims.registry import Simulation, register


@dataclass(frozen=True)
class RLConfig:
    algo: str = field(default="ppo", metadata={
        "help": "dqn | ddpg | svg0 | sac | reinforce | ppo | td_lambda"})
    env: str = field(default="CartPole-v1", metadata={"help": "Gymnasium environment id"})
    steps: int = field(default=100_000, metadata={"help": "environment steps of training"})
    eval_every: int = field(default=5000, metadata={"help": "env steps between evaluations "
                                                    "(0 = only at the end)"})
    eval_episodes: int = field(default=10, metadata={"help": "deterministic evaluation episodes"})
    state_dim: int = field(default=0, metadata={"help": "expected state dimension (0 = take it "
                                                "from the environment)"})
    params: str = field(default="", metadata={
        "help": "algorithm hyper-parameters, 'key=value;key=value' (e.g. "
                "'learning_rate=1e-3;hidden=64,64'); defaults are the rl-zoo settings"})


def build_agent(cfg: RLConfig, *, seed: int = 0, device="cpu"):
    """The configured agent; ValueError for an unknown algorithm, key or mismatched space."""
    cls = agent_class(cfg.algo)
    overrides = [p for p in cfg.params.split(";") if p.strip()]
    overrides += [f"eval_every={cfg.eval_every}", f"eval_episodes={cfg.eval_episodes}"]
    agent_cfg = build_config(cls.config_cls, overrides=overrides)
    return cls(agent_cfg, cfg.env, seed=seed, device=device, state_dim=cfg.state_dim or None)


def run(cfg: RLConfig, ctx) -> dict:
    agent = build_agent(cfg, seed=int(ctx.seed), device=ctx.device)
    with ctx.progress(total=cfg.steps, desc=f"{cfg.algo} on {cfg.env}", unit="step") as bar:
        agent.learn(cfg.steps, recorder=ctx.recorder, progress=bar)
    returns = agent.evaluate(cfg.eval_episodes)
    ctx.recorder.write("rl/final_eval_returns", returns, description="returns of the final "
                       "deterministic evaluation episodes")
    return dict(final_mean_return=float(returns.mean()), env_steps=int(agent.num_steps))


register(Simulation(name="rl", summary="Train DQN/DDPG/SVG(0)/SAC/REINFORCE/PPO/TD(λ) on a "
                    "Gymnasium environment", config=RLConfig, run=run))
