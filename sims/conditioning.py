"""`conditioning`: Pavlovian conditioning and the dopamine TD error (Schultz, Dayan & Montague 1997).

Each trial a cue (CS) is followed `delay` steps later by a reward R (US). The ventral striatum
is a linear V̂ on the complete-serial-compound state (sims.envs.PavlovianConditioning) learned
online by TD(λ) (basal_ganglia.td.OnlineTD). A trial of T time steps is T − 1 environment steps;
step t goes from trial time t to t + 1 and is recorded like any closed-loop step: the dopamine
`basal_ganglia/dopamine` δ_t = r_t + γ(1 − terminated_t) V̂(x_{t+1}) − V̂(x_t), the value
`basal_ganglia/value` V̂(x_t) and `env/reward` r_t, each (step, 1), with the step's trial
`conditioning/trial` and trial time t `conditioning/time`. The response to a stimulus at trial
time τ is thus δ of the step τ − 1 that leads into it. After training, one probe trial omits
the US (no learning on it; `conditioning/omission_dopamine`, per step). Theory, for γ and
k = delay: before learning δ = R at the US; after learning δ_CS = R γ^k, δ_US = 0, and an
omitted US gives δ ≈ −R at the US time.

Summary figures: `delta_us_first` (δ at the US in trial 1), `delta_cs_last`, `delta_us_last`
(the last training trial), `delta_cs_expected` (R γ^k) and `delta_omission` (δ at the US time in
the omission probe).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from basal_ganglia.striatum import BasalGanglia, VentralStriatum
from basal_ganglia.td import OnlineTD
from cortex.params import check_finite, param, validate
from sims.envs import PavlovianConditioning
from sims.registry import Simulation, register


@dataclass(frozen=True)
class ConditioningConfig:
    trials: int = param(300, "training trials", ge=1)
    trial_length: int = param(30, "time steps per trial; more than cs_time + delay", ge=3)
    cs_time: int = param(5, "time step of the cue (CS); at least 1, so that a pre-CS step leads into it", ge=1)
    delay: int = param(10, "steps from CS to reward (US), k", ge=1)
    reward: float = param(1.0, "reward magnitude R")
    gamma: float = param(0.95, "discount factor γ", ge=0, le=1)
    lr: float = param(0.2, "TD learning rate", gt=0)
    lam: float = param(0.0, "eligibility-trace decay λ (0 = TD(0))", ge=0, le=1)
    omission_prob: float = param(0.0, "probability a training trial omits the US", ge=0, le=1)

    def __post_init__(self) -> None:
        validate(self)
        if not self.cs_time + self.delay < self.trial_length:
            raise ValueError(f"config key 'trial_length' = {self.trial_length} must exceed cs_time + delay "
                             f"= {self.cs_time + self.delay}, the time of the US")


def run_trial(env, bg: BasalGanglia, learner: OnlineTD | None, *, seed=None, omit=None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One trial; returns δ_t, V̂(x_t) and r_t for its steps t = 0 .. T−2, step t being the
    transition from trial time t to t + 1: δ_t = r_t + γ(1 − terminated_t) V̂(x_{t+1}) − V̂(x_t)."""
    obs, _ = env.reset(seed=seed, options=None if omit is None else {"omit": omit})
    bg.reset()
    if learner is not None:
        learner.reset()
    z = torch.as_tensor(obs)
    value = float(bg.step(z).value[0])
    deltas, values, rewards = [], [], []
    terminated = False
    while not terminated:
        obs, r, terminated, truncated, _ = env.step(0)
        z_next = torch.as_tensor(obs)
        state = bg.step(z_next, r, terminated)
        if learner is not None:
            learner.update(z, state.dopamine_bases, terminated)
        deltas.append(float(state.dopamine[0]))
        values.append(value)
        rewards.append(r)
        value = float(state.value[0])
        z = z_next
    return np.asarray(deltas), np.asarray(values), np.asarray(rewards)


def run(cfg: ConditioningConfig, ctx) -> dict:
    env = PavlovianConditioning(cfg.trial_length, cfg.cs_time, cfg.delay, cfg.reward,
                                cfg.omission_prob)
    # no bias: the empty pre-CS state must be worth 0, so the CS itself is the surprise
    ventral = VentralStriatum(env.n_features, hidden=(), bias=False)
    torch.nn.init.zeros_(ventral.net[-1].weight)
    bg = BasalGanglia(ventral, gamma=cfg.gamma)
    learner = OnlineTD(ventral, lr=cfg.lr, gamma=cfg.gamma, lam=cfg.lam)
    rec = ctx.recorder
    rec.write("conditioning/cs_time", np.asarray(cfg.cs_time))
    rec.write("conditioning/us_time", np.asarray(env.us_time))
    # δ_t is the TD error of the step from trial time t into t + 1, so the CS response is the
    # step before the CS and the US response the step before the US.
    at_cs, at_us = cfg.cs_time - 1, env.us_time - 1
    # One reward per trial and γ <= 1 keep |V̂| and |δ| of a converging TD within a few |R|.
    limit = 1e3 * max(abs(cfg.reward), 1.0)
    seed = int(ctx.seed)
    first = last = None
    bar = ctx.progress(range(cfg.trials), desc="trials", unit="trial")
    for trial in bar:
        delta, value, reward = run_trial(env, bg, learner, seed=seed if trial == 0 else None)
        steps = len(delta)
        rec.extend("basal_ganglia/dopamine", delta[:, None].astype(np.float32))
        rec.extend("basal_ganglia/value", value[:, None].astype(np.float32))
        rec.extend("env/reward", reward[:, None].astype(np.float32))
        rec.extend("conditioning/trial", np.full(steps, trial))
        rec.extend("conditioning/time", np.arange(steps))
        rec.append("conditioning/omitted", np.int8(env.omit))
        check_finite("dopamine δ", delta, step=trial, key="lr", where="trial", limit=limit)
        check_finite("value V̂", value, step=trial, key="lr", where="trial", limit=limit)
        first = delta if first is None else first
        last = delta
        bar.set_postfix(delta_cs=f"{delta[at_cs]:.3f}", delta_us=f"{delta[at_us]:.3f}")
    omission, omission_value, _ = run_trial(env, bg, None, omit=True)
    rec.write("conditioning/omission_dopamine", omission.astype(np.float32))
    rec.write("conditioning/omission_value", omission_value.astype(np.float32))
    rec.write("basal_ganglia/weights", ventral.net[-1].weight.detach().numpy()[0])
    return dict(delta_us_first=float(first[at_us]), delta_cs_last=float(last[at_cs]),
                delta_us_last=float(last[at_us]),
                delta_cs_expected=float(cfg.reward * cfg.gamma ** cfg.delay),
                delta_omission=float(omission[at_us]))


register(Simulation(name="conditioning", summary="Pavlovian CS→US conditioning: TD learning of "
                    "V̂ and the dopamine prediction error", config=ConditioningConfig, run=run))
