"""`rl`: train any algorithm of the seed's appendix on any Gymnasium environment.

The closed loop of `basal_ganglia.loop` with the perception slot configured by `perception`
(the raw observation; the cortex comes next) and the algorithm's hyper-parameters as one
documented section per algorithm (`brainloop show rl`; `--set algo=sac sac.learning_rate=3e-4`);
defaults are the rl-zoo settings. Records, per environment step, `env/*`, the dopamine δ and
Q̂ (off-policy) or V̂ (on-policy) as (step, env); training episode returns (`rl/episode_return`
against `rl/episode_env_step`); deterministic evaluations (`rl/eval_return`, `rl/eval_env_step`);
every loss (`rl/loss/<name>` against `rl/update_env_step`) and the six action free-energy terms
and their total (`basal_ganglia/action_free_energy/<term>`), one row per training phase; and
the returns of the final evaluation episodes (`rl/final_eval_returns`).

Summary figures: `final_mean_return` (mean return of `eval_episodes` deterministic episodes at
the end) and `env_steps` (environment steps taken).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from dataclasses import dataclass

import gymnasium as gym

import sims.envs  # noqa: F401  (registers the brainloop/* environment ids)
from basal_ganglia.agents import (ALGORITHMS, Agent, DDPGConfig, DQNConfig, PPOConfig,
                                  ReinforceConfig, SACConfig, SVG0Config, TDLambdaConfig)
from basal_ganglia.loop import check_action_space
from cortex.params import param, validate
from cortex.perception import RawPerception
from sims.registry import Simulation, register

PERCEPTIONS = {"raw": RawPerception}


def _section(cls, algo: str, **defaults):
    return dataclasses.field(default_factory=functools.partial(cls, **defaults), metadata={
        "help": f"{algo} hyper-parameters (used when algo={algo})"})


def check_env_id(env_id: str) -> gym.Env:
    """A fresh instance of the registered environment `env_id`; ValueError otherwise.

    Ids of the form 'module:Env-v0' are refused: gymnasium would import that module, so a
    config file could run arbitrary code. Register the environment in Python instead.
    """
    if ":" in env_id:
        raise ValueError(f"config key 'env': {env_id!r} names a module to import; only "
                         f"registered environment ids are accepted (register it with "
                         f"gymnasium.register in Python and pass its id)")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"config key 'env': {env_id!r} is not a registered Gymnasium "
                         f"environment{hint}")
    try:
        return gym.make(env_id)
    except gym.error.Error as error:  # e.g. a missing optional dependency (box2d, mujoco)
        raise ValueError(f"config key 'env': {env_id!r} cannot be made: {error}") from None


def check_unused_sections(cfg, names) -> None:
    """ValueError when an algorithm section other than `cfg.algo`'s was changed from its
    defaults: the values would be silently ignored."""
    defaults = {f.name: f.default_factory() for f in dataclasses.fields(cfg) if f.name in names}
    for name in names:
        # compared by repr: a nan default (SAC's target_entropy) is unequal to itself
        if name != cfg.algo and repr(getattr(cfg, name)) != repr(defaults[name]):
            raise ValueError(f"config keys {name}.* were set, but algo={cfg.algo!r}: set "
                             f"{cfg.algo}.* instead, or algo={name}")


@dataclass(frozen=True)
class RLConfig:
    algo: str = param("ppo", "the algorithm", choices=tuple(ALGORITHMS))
    env: str = param("CartPole-v1", "Gymnasium environment id (registered)")
    steps: int = param(100_000, "environment steps of training", ge=1)
    eval_every: int = param(5000, "env steps between evaluations (0 = only at the end)", ge=0)
    eval_episodes: int = param(10, "deterministic evaluation episodes", ge=1)
    perception: str = param("raw", "what the basal ganglia see: raw = the observation itself "
                            "(column x)", choices=tuple(PERCEPTIONS))
    state_nodes: tuple[str, ...] = param(("x",), "perceived columns the policy and critics read")
    dqn: DQNConfig = _section(DQNConfig, "dqn")
    ddpg: DDPGConfig = _section(DDPGConfig, "ddpg")
    svg0: SVG0Config = _section(SVG0Config, "svg0")
    sac: SACConfig = _section(SACConfig, "sac")
    reinforce: ReinforceConfig = _section(ReinforceConfig, "reinforce")
    ppo: PPOConfig = _section(PPOConfig, "ppo")
    td_lambda: TDLambdaConfig = _section(TDLambdaConfig, "td_lambda")

    def __post_init__(self) -> None:
        validate(self)
        check_unused_sections(self, ALGORITHMS)
        env = check_env_id(self.env)
        try:
            check_action_space(ALGORITHMS[self.algo], env.action_space)
            perception = PERCEPTIONS[self.perception](env.observation_space)
        finally:
            env.close()
        for node in self.state_nodes:
            if node not in perception.dims:
                raise ValueError(f"config key 'state_nodes': perception {self.perception!r} has "
                                 f"no column {node!r}; it offers {', '.join(perception.nodes)}")

    @property
    def algorithm(self):
        """The selected algorithm's config section."""
        return getattr(self, self.algo)


def build_agent(cfg: RLConfig, *, seed: int = 0, device="cpu") -> Agent:
    """The configured agent in the closed loop."""
    env = gym.make(cfg.env)
    space = env.observation_space
    env.close()
    return Agent(ALGORITHMS[cfg.algo], cfg.algorithm, cfg.env, seed=seed, device=device,
                 perception=PERCEPTIONS[cfg.perception](space, device),
                 state_nodes=cfg.state_nodes)


def run(cfg: RLConfig, ctx) -> dict:
    agent = build_agent(cfg, seed=int(ctx.seed), device=ctx.device)
    with ctx.progress(total=cfg.steps, desc=f"{cfg.algo} on {cfg.env}", unit="step") as bar:
        agent.learn(cfg.steps, recorder=ctx.recorder, progress=bar, eval_every=cfg.eval_every,
                    eval_episodes=cfg.eval_episodes)
    returns = agent.evaluate(cfg.eval_episodes)
    ctx.recorder.write("rl/final_eval_returns", returns)
    return dict(final_mean_return=float(returns.mean()), env_steps=int(agent.num_steps))


register(Simulation(name="rl", summary="Train DQN/DDPG/SVG(0)/SAC/REINFORCE/PPO/TD(λ) on a "
                    "Gymnasium environment", config=RLConfig, run=run))
