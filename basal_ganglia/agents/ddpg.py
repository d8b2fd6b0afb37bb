"""DDPG (Lillicrap et al. 2016): deterministic actor a = μ_φ(z), Q̂ ≈ Q_π* as in DQN.

Critic target r + γ (1 − terminated) Q̂'(z', μ_φ'(z')); actor ascends Q̂(z, μ_φ(z)) — the
amortised gradient of the seed's appendix with a point-mass policy. Gaussian behaviour noise
is added in the normalised [-1, 1] action scale (as Stable-Baselines3 does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from basal_ganglia.agents.config import OffPolicyConfig, Spaces, Update
from basal_ganglia.striatum import DorsalStriatum, frozen_copy, soft_update
from basal_ganglia.td import td_target
from cortex.params import param
from cortex.policy import DeterministicPolicy


@dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """rl-zoo Pendulum-v1 settings by default."""

    learning_rate: float = param(1e-3, "Adam learning rate (actor and critic)", gt=0.0)
    gamma: float = param(0.98, "discount factor γ", ge=0.0, le=1.0)
    hidden: tuple[int, ...] = param((400, 300), "hidden layer widths of actor and critic", ge=1)
    buffer_size: int = param(200_000, "replay memory capacity (transitions)", ge=1)
    learning_starts: int = param(10_000, "env steps of random actions before learning", ge=0)
    noise_std: float = param(0.1, "behaviour noise std in the normalised action scale", ge=0.0)


class DDPG:
    name, config_cls, action_kind = "ddpg", DDPGConfig, "continuous"

    def __init__(self, cfg: DDPGConfig, spaces: Spaces, device: torch.device):
        self.cfg, self.spaces = cfg, spaces
        space = spaces.action_space
        self.actor = DeterministicPolicy(spaces.state_dim, spaces.action_dim, space.low,
                                         space.high, tuple(cfg.hidden)).to(device)
        self.q = DorsalStriatum(spaces.state_dim, spaces.action_dim, tuple(cfg.hidden),
                                discrete=False).to(device)
        self.actor_target, self.q_target = frozen_copy(self.actor), frozen_copy(self.q)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)

    def act(self, z: torch.Tensor, *, deterministic: bool, rng: np.random.Generator,
            progress: float = 1.0) -> np.ndarray:
        """Actions (B, A) for states z (B, d), with behaviour noise unless deterministic."""
        space = self.spaces.action_space
        with torch.no_grad():
            a = self.actor(z).cpu().numpy()
        if not deterministic:
            scale = (space.high - space.low) / 2
            a = a + self.cfg.noise_std * scale * rng.standard_normal(a.shape)
        return np.clip(a, space.low, space.high).astype(np.float32)

    def q_value(self, z, action) -> torch.Tensor:
        return self.q(z, action)

    @torch.no_grad()
    def value(self, z) -> torch.Tensor:
        """V̂(z) = Q̂(z, μ(z)) of the deterministic policy."""
        return self.q(z, self.actor(z))

    @torch.no_grad()
    def target(self, batch) -> torch.Tensor:
        next_q = self.q_target(batch.next_obs, self.actor_target(batch.next_obs))
        return td_target(batch.reward, next_q, batch.terminated, self.cfg.gamma)

    def update(self, batch) -> Update:
        delta = self.target(batch) - self.q(batch.obs, batch.action)
        q_loss = 0.5 * (batch.weight * delta.pow(2)).mean()  # importance weights (ones: uniform)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        actor_loss = -self.q(batch.obs, self.actor(batch.obs)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        if not self.cfg.target_update_interval:
            self.sync_targets()
        return Update({"q": q_loss.item(), "actor": actor_loss.item()}, delta.detach())

    def sync_targets(self) -> None:
        soft_update(self.q_target, self.q, self.cfg.tau)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
