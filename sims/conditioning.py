"""`conditioning`: Pavlovian conditioning and the dopamine TD error (Schultz, Dayan & Montague 1997).

Each trial a cue (CS) is followed `delay` steps later by a reward R (US). The ventral striatum
is a linear V̂ on the complete-serial-compound state (sims.envs.PavlovianConditioning) learned
online by TD(λ) (basal_ganglia.td.OnlineTD); the dopamine δ is recorded at every time step of
every trial, shape (trials, T), with V̂. After training, one probe trial omits the US (no
learning on it). Theory, for γ and k = delay: before learning δ = R at the US; after learning
δ_CS = R γ^k, δ_US = 0, and an omitted US gives δ ≈ −R at the US time.

Summary figures: `delta_us_first` (δ at the US in trial 1), `delta_cs_last`, `delta_us_last`
(the last training trial), `delta_cs_expected` (R γ^k) and `delta_omission` (δ at the US time in
the omission probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from basal_ganglia.striatum import BasalGanglia, VentralStriatum
from basal_ganglia.td import OnlineTD
from sims.envs import PavlovianConditioning
from sims.registry import Simulation, register


@dataclass(frozen=True)
class ConditioningConfig:
    trials: int = field(default=300, metadata={"help": "training trials"})
    trial_length: int = field(default=30, metadata={"help": "time steps per trial"})
    cs_time: int = field(default=5, metadata={"help": "time step of the cue (CS)"})
    delay: int = field(default=10, metadata={"help": "steps from CS to reward (US), k"})
    reward: float = field(default=1.0, metadata={"help": "reward magnitude R"})
    gamma: float = field(default=0.95, metadata={"help": "discount factor γ"})
    lr: float = field(default=0.2, metadata={"help": "TD learning rate"})
    lam: float = field(default=0.0, metadata={"help": "eligibility-trace decay λ (0 = TD(0))"})
    omission_prob: float = field(default=0.0, metadata={"help": "probability a training trial "
                                                        "omits the US"})


def run_trial(env, bg: BasalGanglia, learner: OnlineTD | None, *, seed=None, omit=None):
    """One trial; returns δ (T,) and V̂ (T,) indexed by trial time (δ_0 = 0: no prior state)."""
    obs, _ = env.reset(seed=seed, options=None if omit is None else {"omit": omit})
    bg.reset()
    if learner is not None:
        learner.reset()
    z_prev = torch.as_tensor(obs)
    state = bg.step(z_prev)
    deltas, values = [float(state.dopamine[0])], [float(state.value[0])]
    terminated = False
    while not terminated:
        obs, r, terminated, truncated, _ = env.step(0)
        z = torch.as_tensor(obs)
        state = bg.step(z, r, terminated)
        if learner is not None:
            learner.update(z_prev, state.dopamine_bases, terminated)
        deltas.append(float(state.dopamine[0]))
        values.append(float(state.value[0]))
        z_prev = z
    return np.asarray(deltas), np.asarray(values)


def run(cfg: ConditioningConfig, ctx) -> dict:
    env = PavlovianConditioning(cfg.trial_length, cfg.cs_time, cfg.delay, cfg.reward,
                                cfg.omission_prob)
    # no bias: the empty pre-CS state must be worth 0, so the CS itself is the surprise
    ventral = VentralStriatum(env.n_features, hidden=(), bias=False)
    torch.nn.init.zeros_(ventral.net[-1].weight)
    bg = BasalGanglia(ventral, gamma=cfg.gamma)
    learner = OnlineTD(ventral, lr=cfg.lr, gamma=cfg.gamma, lam=cfg.lam)
    rec = ctx.recorder
    rec.write("conditioning/time", np.arange(cfg.trial_length), units="steps")
    rec.write("conditioning/cs_time", np.asarray(cfg.cs_time), units="steps")
    rec.write("conditioning/us_time", np.asarray(env.us_time), units="steps")
    seed = int(ctx.seed)
    first = last = None
    bar = ctx.progress(range(cfg.trials), desc="trials", unit="trial")
    for trial in bar:
        delta, value = run_trial(env, bg, learner, seed=seed if trial == 0 else None)
        rec.append("basal_ganglia/dopamine", delta.astype(np.float32),
                   description="dopamine δ per trial time step, one row per trial")
        rec.append("basal_ganglia/value", value.astype(np.float32),
                   description="ventral striatum V̂ per trial time step, one row per trial")
        rec.append("conditioning/omitted", np.int8(env.omit),
                   description="1 when the trial's US was omitted")
        first = delta if first is None else first
        last = delta
        bar.set_postfix(delta_cs=f"{delta[cfg.cs_time]:.3f}", delta_us=f"{delta[env.us_time]:.3f}")
    omission, omission_value = run_trial(env, bg, None, omit=True)
    rec.write("conditioning/omission_dopamine", omission.astype(np.float32),
              description="δ per time step of a probe trial with the US omitted (no learning)")
    rec.write("conditioning/omission_value", omission_value.astype(np.float32),
              description="V̂ per time step of the omission probe trial")
    rec.write("basal_ganglia/weights", ventral.net[-1].weight.detach().numpy()[0],
              description="learned V̂ weight of each serial-compound feature")
    return dict(delta_us_first=float(first[env.us_time]), delta_cs_last=float(last[cfg.cs_time]),
                delta_us_last=float(last[env.us_time]),
                delta_cs_expected=float(cfg.reward * cfg.gamma ** cfg.delay),
                delta_omission=float(omission[env.us_time]))


register(Simulation(name="conditioning", summary="Pavlovian CS→US conditioning: TD learning of "
                    "V̂ and the dopamine prediction error", config=ConditioningConfig, run=run))
