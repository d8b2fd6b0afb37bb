"""Policy-gradient agents: REINFORCE with a baseline and PPO with GAE; TD(λ) policy evaluation.

Each holds a policy π_φ(a | z) (cortex.policy) and the ventral striatum V̂(z), and updates
them from one rollout (`basal_ganglia.loop.Rollout`: (T, N) tensors of states, actions, δ and
advantages, collected by `basal_ganglia.loop.run_on_policy`). `update(rollout, progress=, rng=)`
is one learning phase; `progress` (0..1, the share of the learn call done) sets the annealed
learning rate, so that nothing about the run is kept on the object.

TD(λ) never changes the policy (the near-uniform initial one, or one the caller sets on
`.policy`) and regresses V̂ onto the λ-returns G_t(λ) = A_t(λ) + V̂(z_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from basal_ganglia.agents.config import (OnPolicyConfig, Spaces, Update, free_energy_floats,
                                         scale_learning_rates)
from basal_ganglia.striatum import VentralStriatum
from cortex.action import point_mass_terms
from cortex.params import param
from cortex.policy import CategoricalPolicy, GaussianPolicy


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """rl-zoo CartPole-v1 settings by default."""

    gamma: float = param(0.98, "discount factor γ", ge=0.0, le=1.0)
    gae_lambda: float = param(0.8, "λ of the advantage estimator", ge=0.0, le=1.0)
    batch_size: int = param(256, "minibatch size", ge=1)
    n_epochs: int = param(20, "passes over each rollout", ge=1)
    clip_range: float = param(0.2, "PPO ratio clip ε", gt=0.0)


@dataclass(frozen=True)
class ReinforceConfig(OnPolicyConfig):
    """Monte Carlo returns (λ = 1) with the ventral V̂ as baseline, one step per rollout."""

    gae_lambda: float = param(1.0, "λ (1 = Monte Carlo returns, the REINFORCE choice)",
                              ge=0.0, le=1.0)
    n_steps: int = param(256, "steps per environment per rollout", ge=1)
    learning_rate: float = param(3e-3, "Adam learning rate", gt=0.0)


@dataclass(frozen=True)
class TDLambdaConfig(OnPolicyConfig):
    """λ-returns of one environment's rollouts, regressed a few times each; no annealing."""

    gae_lambda: float = param(0.9, "λ of the TD(λ) returns", ge=0.0, le=1.0)
    n_envs: int = param(1, "parallel environments", ge=1)
    n_steps: int = param(128, "steps per environment per rollout", ge=1)
    n_epochs: int = param(4, "regression passes over each rollout", ge=1)
    anneal: bool = param(False, "anneal the learning rate linearly to 0")


def _orthogonal_init(module: nn.Module, out_gain: float) -> None:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    for i, m in enumerate(linears):
        nn.init.orthogonal_(m.weight, out_gain if i == len(linears) - 1 else np.sqrt(2))
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class ActorCritic:
    """π_φ(a | z) and V̂(z) with one Adam optimiser: the networks of the rollout algorithms."""

    action_kind = "any"

    def __init__(self, cfg: OnPolicyConfig, spaces: Spaces, device: torch.device):
        self.cfg, self.spaces = cfg, spaces
        hidden, d = tuple(cfg.hidden), spaces.state_dim
        self.policy = (CategoricalPolicy(d, spaces.action_dim, hidden) if spaces.discrete
                       else GaussianPolicy(d, spaces.action_dim, hidden))
        self.value = VentralStriatum(d, hidden)
        _orthogonal_init(self.policy, 0.01)
        _orthogonal_init(self.value, 1.0)
        self.policy.to(device)
        self.value.to(device)
        self.optimizer = torch.optim.Adam([*self.policy.parameters(), *self.value.parameters()],
                                          lr=cfg.learning_rate, eps=1e-5)

    def act(self, z: torch.Tensor, *, deterministic: bool, rng=None,
            progress: float = 1.0) -> np.ndarray:
        """Actions (B, …) for states z (B, d): the mode, or a sample from π_φ."""
        with torch.no_grad():
            a = self.policy.mode(z) if deterministic else self.policy.sample(z)[0]
        a = a.cpu().numpy()
        if self.spaces.discrete:
            return a
        space = self.spaces.action_space
        return np.clip(a, space.low, space.high).astype(np.float32)

    def _loss_terms(self, z, a, ret):
        """log π(a|z), entropy, V̂(z) and the V̂ loss of a minibatch."""
        logp = self.policy.log_prob(z, a)
        entropy = self.policy.entropy(z)
        v = self.value(z)
        v_loss = (ret - v).pow(2).mean()  # as SB3: vf_coef · MSE
        return logp, entropy, v, v_loss

    def _step(self, loss) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([*self.policy.parameters(), *self.value.parameters()],
                                 self.cfg.max_grad_norm)
        self.optimizer.step()

    def _anneal(self, progress: float) -> float:
        """Set the learning rate for `progress` of the learn call; returns the scale 1 − progress."""
        frac = 1.0 - progress if self.cfg.anneal else 1.0
        scale_learning_rates([self.optimizer], frac)
        return frac

    def _free_energy(self, v, logp, entropy) -> dict[str, float]:
        return free_energy_floats(point_mass_terms(v.detach(), logp.detach(), entropy.detach(),
                                                   entropy_coef=self.cfg.ent_coef))


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(T, N, …) → (T·N, …)."""
    return x.reshape(-1, *x.shape[2:])


class PPO(ActorCritic):
    """PPO-clip (Schulman et al. 2017) with the GAE recursion (or the seed's forms, `advantage`)."""

    name, config_cls = "ppo", PPOConfig

    def update(self, rollout, *, progress: float, rng: np.random.Generator) -> Update:
        cfg = self.cfg
        clip = cfg.clip_range * self._anneal(progress)
        obs, actions, old_logp = _flat(rollout.states), _flat(rollout.actions), _flat(rollout.log_probs)
        advantages, returns = _flat(rollout.advantages), _flat(rollout.returns)
        n = len(obs)
        stats = {"policy": [], "value": [], "entropy": [], "clip_fraction": []}
        for _ in range(cfg.n_epochs):
            perm = torch.as_tensor(rng.permutation(n))
            for start in range(0, n, cfg.batch_size):
                idx = perm[start:start + cfg.batch_size]
                adv = advantages[idx]
                if cfg.normalize_advantage and len(idx) > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                logp, entropy, v, v_loss = self._loss_terms(obs[idx], actions[idx], returns[idx])
                ratio = (logp - old_logp[idx]).exp()
                pg_loss = -torch.minimum(adv * ratio,
                                         adv * ratio.clamp(1 - clip, 1 + clip)).mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean()
                self._step(loss)
                stats["policy"].append(pg_loss.item())
                stats["value"].append(v_loss.item())
                stats["entropy"].append(entropy.mean().item())
                stats["clip_fraction"].append(((ratio - 1).abs() > clip).float().mean().item())
        return Update({k: float(np.mean(s)) for k, s in stats.items()}, rollout.delta,
                      self._free_energy(v, logp, entropy))


class Reinforce(ActorCritic):
    """REINFORCE with the ventral V̂ as baseline: Φ = G_τ − V̂(z_τ), one gradient step per rollout."""

    name, config_cls = "reinforce", ReinforceConfig

    def update(self, rollout, *, progress: float, rng=None) -> Update:
        cfg = self.cfg
        self._anneal(progress)
        obs, actions = _flat(rollout.states), _flat(rollout.actions)
        adv, returns = _flat(rollout.advantages), _flat(rollout.returns)
        if cfg.normalize_advantage:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        logp, entropy, v, v_loss = self._loss_terms(obs, actions, returns)
        pg_loss = -(adv * logp).mean()
        self._step(pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean())
        return Update({"policy": pg_loss.item(), "value": v_loss.item(),
                       "entropy": entropy.mean().item()}, rollout.delta,
                      self._free_energy(v, logp, entropy))


class TDLambda(ActorCritic):
    """TD(λ) policy evaluation: V̂ ≈ V_π of a fixed behaviour policy, by λ-returns."""

    name, config_cls = "td_lambda", TDLambdaConfig

    def update(self, rollout, *, progress: float, rng=None) -> Update:
        self._anneal(progress)
        obs, returns = _flat(rollout.states), _flat(rollout.returns)
        for _ in range(self.cfg.n_epochs):
            loss = 0.5 * (returns - self.value(obs)).pow(2).mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        return Update({"value": loss.item()}, rollout.delta)
