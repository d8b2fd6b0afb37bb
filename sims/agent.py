"""`agent`: the brain in the loop — temporal PC perceives, the basal ganglia act, replay trains.

One closed loop (DESIGN.md §8, `basal_ganglia.loop.run_off_policy`) on any Gymnasium
environment: the cortex (`cortex.perception.CortexPerception`, a temporal, active PC model with
the point-mass or the Gaussian posterior) filters each observation with the last action as
efference copy; an off-policy algorithm (DQN, DDPG, SVG(0), SAC) acts from the configured
columns and learns V̂/Q̂ from dopamine-like TD errors; the hippocampal replay memory feeds the
world model's learning (windows of `cortex.sequence_length` steps) and the critics' (stored
states, re-inferred with the current world model every `cortex.refresh_every` steps).
`observe` and `obs_noise` hide observation dimensions and add noise (partial observability).
`motivation` (DQN, on an environment that emits reward bases such as brainloop/GridRoom-v0)
gives the critic a Q̂ head per basis, weighed by the α of a motivational timeline over env
steps; `env/reward` then holds the basis rewards and `basal_ganglia/bases/{basis}/dopamine` the
δ^i of each step.

Recorded per environment step: `env/*`; `cortex/{x,s,...}/{z,error,energy}`,
`cortex/prediction_error` (the world model's one-step error), `cortex/entropy` (laplace) or
`cortex/inference_iterations` (point); `basal_ganglia/{value,q}` and `basal_ganglia/dopamine`
(δ of the step's transition). Per update:
`rl/loss/*`, `basal_ganglia/action_free_energy/*`, `hippocampus/{size,sample_age}`; per
world-model update: `cortex/world_model/loss/{prediction_error,free_energy}`. Episodes and
evaluations: `rl/*`. At the end: `rl/final_eval_returns` (the last networks),
`rl/best_eval_returns` (with `keep_best`) and
`cortex/imagination/{imagined,actual}` (imagined futures of a few replayed windows against
what happened).

Summary: `final_mean_return` (mean of `eval_episodes` deterministic episodes at the end; with
`keep_best`, of the networks kept at the best periodic evaluation, on fresh episodes, beside
`last_mean_return` of the last networks and `best_env_step`),
`env_steps`, `world_model_error` (mean squared one-step prediction error of x on 256 replayed
windows at the end; nan without a world model), `steps_per_second` (environment steps per
second of training), and `time_share_{part}`, the share of the training loop's time spent in
each part (`Agent.timings`: acting, environment, perception, world_model, reperceive,
updates, recording).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

import sims.envs  # noqa: F401  (registers the brainloop/* environment ids)
from basal_ganglia.agents import ALGORITHMS, Agent, DDPGConfig, DQNConfig, SACConfig, SVG0Config
from basal_ganglia.loop import check_action_space, check_reward_bases
from basal_ganglia.reward_bases import MotivationalTimeline
from cortex.params import param, validate
from cortex.perception import CortexConfig, CortexPerception, RawPerception
from sims.envs import PartialObservation
from sims.registry import Simulation, register
from sims.rl import _section, check_env_id, check_unused_sections

OFF_POLICY = ("sac", "ddpg", "svg0", "dqn")


@dataclass(frozen=True)
class AgentConfig:
    algo: str = param("sac", "the off-policy algorithm (replay trains the world model)",
                      choices=OFF_POLICY)
    env: str = param("Pendulum-v1", "Gymnasium environment id (registered)")
    observe: tuple[int, ...] = param((), "observation dimensions the agent sees, in order "
                                     "(empty: all); Pendulum-v1 with 0,1 hides the velocity",
                                     ge=0)
    obs_noise: float = param(0.0, "standard deviation of Gaussian noise added to the "
                             "observation", ge=0)
    steps: int = param(50_000, "environment steps of training", ge=1)
    eval_every: int = param(5000, "env steps between evaluations (0 = only at the end)", ge=0)
    eval_episodes: int = param(10, "deterministic evaluation episodes", ge=1)
    keep_best: bool = param(False, "keep the networks of the best periodic evaluation and "
                            "evaluate those at the end, on fresh episodes (as SB3's "
                            "EvalCallback best model); the last networks' score is recorded too")
    perception: str = param("cortex", "cortex: temporal PC (section cortex.*); raw: the "
                            "observation itself (column x)", choices=("cortex", "raw"))
    state_nodes: tuple[str, ...] = param(("x", "s"), "columns the policy and critics read")
    motivation: tuple[str, ...] = param((), "reward bases: motivational phases over env steps, "
                                        "LENGTH:basis=α basis=α (bases not named weigh 0; the "
                                        "last phase lasts); needs algo=dqn and an environment "
                                        "that emits reward bases, e.g. brainloop/GridRoom-v0")
    imagine: int = param(8, "replayed windows imagined at the end (cortex/imagination)", ge=0)
    imagine_horizon: int = param(20, "steps imagined after each window's filtered start", ge=1)
    cortex: CortexConfig = dataclasses.field(default_factory=CortexConfig, metadata={
        "help": "the cortex (used when perception=cortex)"})
    # the rl-zoo settings, with 2000 random steps for the continuous-action algorithms: the
    # world model's warm-up learns from them before the critics start
    dqn: DQNConfig = _section(DQNConfig, "dqn")
    ddpg: DDPGConfig = _section(DDPGConfig, "ddpg", learning_starts=2000)
    svg0: SVG0Config = _section(SVG0Config, "svg0", learning_starts=2000)
    sac: SACConfig = _section(SACConfig, "sac", learning_starts=2000)

    def __post_init__(self) -> None:
        validate(self)
        check_unused_sections(self, OFF_POLICY)
        env = make_env(self, seed=0)
        try:
            check_action_space(ALGORITHMS[self.algo], env.action_space)
            offered = perception_for(self, env).dims
            motivation_for(self, env)
        finally:
            env.close()
        for node in self.state_nodes:
            if node not in offered:
                raise ValueError(f"config key 'state_nodes': perception {self.perception!r} has "
                                 f"no column {node!r}; it offers {', '.join(offered)}")
        algo = self.algorithm
        if self.perception == "cortex" and self.cortex.learn:
            if algo.learning_starts < self.cortex.sequence_length:
                raise ValueError(f"config key '{self.algo}.learning_starts' "
                                 f"({algo.learning_starts}) must be at least "
                                 f"cortex.sequence_length ({self.cortex.sequence_length}): the "
                                 f"world model starts learning from replayed windows then")

    @property
    def algorithm(self):
        """The selected algorithm's config section."""
        return getattr(self, self.algo)


def make_env(cfg: AgentConfig, seed: int) -> gym.Env:
    """The configured environment, with `observe` / `obs_noise` applied when set."""
    env = check_env_id(cfg.env)
    if cfg.observe or cfg.obs_noise:
        env = PartialObservation(env, cfg.observe, cfg.obs_noise, seed)
    return env


def perception_for(cfg: AgentConfig, env: gym.Env, device="cpu", seed: int = 0):
    if cfg.perception == "raw":
        return RawPerception(env.observation_space, device)
    return CortexPerception(env.observation_space, env.action_space, cfg.cortex, device,
                            seed=seed)


def motivation_for(cfg: AgentConfig, env: gym.Env) -> MotivationalTimeline | None:
    """The configured motivational timeline over the environment's reward bases, or None."""
    if not cfg.motivation:
        return None
    try:
        check_reward_bases(ALGORITHMS[cfg.algo], env)
        return MotivationalTimeline(env.unwrapped.reward_bases, cfg.motivation)
    except ValueError as error:
        raise ValueError(f"config key 'motivation': {error}") from None


def build_agent(cfg: AgentConfig, *, seed: int = 0, device="cpu") -> Agent:
    """The configured agent: its environment, perception, algorithm and motivation."""
    env = make_env(cfg, seed)
    perception = perception_for(cfg, env, device, seed)
    motivation = motivation_for(cfg, env)
    env.close()
    return Agent(ALGORITHMS[cfg.algo], cfg.algorithm, lambda: make_env(cfg, seed), seed=seed,
                 device=device, perception=perception, state_nodes=cfg.state_nodes,
                 motivation=motivation, keep_best=cfg.keep_best)


def run(cfg: AgentConfig, ctx) -> dict:
    agent = build_agent(cfg, seed=int(ctx.seed), device=ctx.device)
    start = time.perf_counter()
    with ctx.progress(total=cfg.steps, desc=f"agent: {cfg.algo} on {cfg.env}",
                      unit="step") as bar:
        agent.learn(cfg.steps, recorder=ctx.recorder, progress=bar, eval_every=cfg.eval_every,
                    eval_episodes=cfg.eval_episodes)
    elapsed = time.perf_counter() - start
    returns = agent.evaluate(cfg.eval_episodes)
    ctx.recorder.write("rl/final_eval_returns", returns)
    figures = dict(final_mean_return=float(returns.mean()), env_steps=int(agent.num_steps),
                   world_model_error=float("nan"), steps_per_second=agent.num_steps / elapsed)
    if cfg.keep_best:
        kept = agent.restore_best()
        if kept is not None:
            # fresh episodes: the periodic evaluations that chose this state used others
            best = agent.evaluate(cfg.eval_episodes, seed=int(ctx.seed) + 20_000)
            ctx.recorder.write("rl/best_eval_returns", best)
            figures.update(last_mean_return=figures["final_mean_return"],
                           final_mean_return=float(best.mean()), best_env_step=kept[1])
    perception = agent.perception
    if perception.has_memory:
        rng = np.random.default_rng(int(ctx.seed) + 1)
        burn_in = perception.burn_in or 1
        seq = lambda n, length: agent.memory.sequences(
            n, length, rng, layout=perception.layout, n_actions=agent.n_actions,
            device=agent.device)
        figures["world_model_error"] = perception.prediction_error(
            seq(256, perception.cfg.sequence_length))
        if cfg.imagine:
            imagined, actual = perception.imagine(seq(cfg.imagine, burn_in + cfg.imagine_horizon),
                                                  burn_in)
            ctx.recorder.write("cortex/imagination/imagined", imagined.cpu().numpy())
            ctx.recorder.write("cortex/imagination/actual", actual.cpu().numpy())
    total = sum(agent.timings.values())
    for part, seconds in agent.timings.items():
        figures[f"time_share_{part}"] = seconds / total
    return figures


register(Simulation(name="agent", summary="The closed loop: temporal PC perceives, the basal "
                    "ganglia act, hippocampal replay trains the world model", config=AgentConfig,
                    run=run))
