"""SVG(0) (Heess et al. 2015) and SAC (Haarnoja et al. 2018): reparameterised stochastic actors.

Both use a tanh-squashed Gaussian π_φ and the amortised gradient ∇_φ E_ε[Q̂(z, f_φ(z, ε))].
SVG(0) learns Q̂ ≈ Q_{π_φ} with the SARSA-like target r + γ Q̂'(z', a'), a' ~ π_φ(z') (no
entropy unless `ent_coef` > 0). SAC adds the entropy of the seed's term (f): twin critics,
target r + γ (min_i Q̂'_i(z', a') − α log π_φ(a'|z')), and α tuned to a target entropy. SAC's
soft state value V̂(z) = E_π[min Q̂ − α log π] is implied by the critics rather than a separate
network (the 2018b form of SAC; the seed's appendix describes the earlier one with a V̂ net).

The actor loss is the point-mass action free energy of cortex.action: value −β Q̂(z, a_φ),
drift −λ_d log π_φ(a_τ | z_τ) of the replayed actions (`drift_coef`, 0 by default) and the
entropy term α log π_φ; `update` returns its six terms with the losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from basal_ganglia.agents.config import OffPolicyConfig, Spaces, Update, free_energy_floats
from basal_ganglia.striatum import CriticEnsemble, frozen_copy, soft_update
from basal_ganglia.td import td_target
from cortex.action import point_mass_terms, total
from cortex.params import param
from cortex.policy import SquashedGaussianPolicy


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """rl-zoo Pendulum-v1 settings by default (lr 1e-3, SB3 defaults otherwise)."""

    learning_rate: float = param(1e-3, "Adam learning rate (actor, critics, α)", gt=0.0)
    ent_coef: float = param(-1.0, "entropy coefficient α; negative = learned, starting at 1")
    target_entropy: float = param(float("nan"), "target entropy for learned α (nan = −dim A)",
                                  allow_nan=True)
    beta: float = param(1.0, "inverse temperature β of the value term", gt=0.0)
    drift_coef: float = param(0.0, "weight λ_d of the drift term −log π(a_τ|z_τ) on replayed "
                              "actions", ge=0.0)


@dataclass(frozen=True)
class SVG0Config(OffPolicyConfig):
    """SAC's Pendulum settings, without the entropy bonus."""

    learning_rate: float = param(1e-3, "Adam learning rate (actor and critic)", gt=0.0)
    learning_starts: int = param(1000, "env steps of random actions before learning", ge=0)
    ent_coef: float = param(0.0, "fixed entropy coefficient α (0 = plain SVG(0))", ge=0.0)
    beta: float = param(1.0, "inverse temperature β of the value term", gt=0.0)
    drift_coef: float = param(0.0, "weight λ_d of the drift term −log π(a_τ|z_τ) on replayed "
                              "actions", ge=0.0)


class SAC:
    name, config_cls, action_kind = "sac", SACConfig, "continuous"
    n_critics = 2

    def __init__(self, cfg: SACConfig, spaces: Spaces, device: torch.device):
        self.cfg, self.spaces = cfg, spaces
        space = spaces.action_space
        self.actor = SquashedGaussianPolicy(spaces.state_dim, spaces.action_dim, space.low,
                                            space.high, tuple(cfg.hidden)).to(device)
        self.q = CriticEnsemble(spaces.state_dim, spaces.action_dim, tuple(cfg.hidden),
                                self.n_critics).to(device)
        self.q_target = frozen_copy(self.q)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)
        self.learn_alpha = cfg.ent_coef < 0
        self.log_alpha = torch.zeros(1, device=device, requires_grad=self.learn_alpha)
        if not self.learn_alpha:
            self.log_alpha.data.fill_(np.log(max(cfg.ent_coef, 1e-30)))
        target = getattr(cfg, "target_entropy", float("nan"))  # SVG(0) has a fixed α
        self.target_entropy = -float(spaces.action_dim) if np.isnan(target) else target
        self.alpha_opt = (torch.optim.Adam([self.log_alpha], lr=cfg.learning_rate)
                          if self.learn_alpha else None)

    @property
    def alpha(self) -> float:
        return 0.0 if self.cfg.ent_coef == 0 else float(self.log_alpha.detach().exp())

    def act(self, z: torch.Tensor, *, deterministic: bool, rng: np.random.Generator = None,
            progress: float = 1.0) -> np.ndarray:
        """Actions (B, A) for states z (B, d): the squashed mean, or a sample from π_φ."""
        with torch.no_grad():
            a = self.actor.mode(z) if deterministic else self.actor.sample(z)[0]
        return a.cpu().numpy()

    def q_value(self, z, action) -> torch.Tensor:
        return self.q.min(z, action)

    @torch.no_grad()
    def value(self, z) -> torch.Tensor:
        """V̂(z) = min Q̂(z, a) − α log π(a|z), one sample a ~ π (the ventral reading)."""
        a, logp = self.actor.sample(z)
        return self.q.min(z, a) - self.alpha * logp

    @torch.no_grad()
    def target(self, batch) -> torch.Tensor:
        """r + γ (1 − terminated) V̂'(z'), V̂'(z') = min Q̂'(z', a') − α log π(a'|z'), a' ~ π."""
        a, logp = self.actor.sample(batch.next_obs)
        next_v = self.q_target.min(batch.next_obs, a) - self.alpha * logp
        return td_target(batch.reward, next_v, batch.terminated, self.cfg.gamma)

    def update(self, batch) -> Update:
        cfg, losses = self.cfg, {}
        # one reparameterised sample serves the α loss and the actor loss, as in SB3
        a, logp = self.actor.sample(batch.obs)
        if self.learn_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad()
            alpha_loss.backward()
            self.alpha_opt.step()
            losses["alpha"] = alpha_loss.item()
        target = self.target(batch)
        qs = self.q(batch.obs, batch.action)
        # importance weights of prioritised replay (ones for uniform sampling)
        q_loss = sum(0.5 * (batch.weight * (q - target).pow(2)).mean() for q in qs)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        drift_logp = (self.actor.log_prob(batch.obs, batch.action) if cfg.drift_coef
                      else logp.detach())
        terms = point_mass_terms(self.q.min(batch.obs, a), drift_logp, -logp, beta=cfg.beta,
                                 drift_coef=cfg.drift_coef, entropy_coef=self.alpha)
        actor_loss = total(terms)
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        if not cfg.target_update_interval:
            self.sync_targets()
        losses.update(q=q_loss.item(), actor=actor_loss.item())
        delta = target - torch.stack(qs).min(0).values.detach()
        return Update(losses, delta, free_energy_floats(terms))

    def sync_targets(self) -> None:
        soft_update(self.q_target, self.q, self.cfg.tau)


class SVG0(SAC):
    """SVG(0): SAC's machinery with one critic and a fixed (default zero) entropy weight."""

    name, config_cls = "svg0", SVG0Config
    n_critics = 1
