"""DDPG (Lillicrap et al. 2016): deterministic actor a = μ_φ(z), Q̂ ≈ Q_π* as in DQN.

Critic target r + γ (1 − terminated) Q̂'(z', μ_φ'(z')); actor ascends Q̂(z, μ_φ(z)) — the
amortised gradient of the seed's appendix with a point-mass policy. Gaussian behaviour noise
is added in the normalised [-1, 1] action scale (as Stable-Baselines3 does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from basal_ganglia.agents.base import OffPolicyAgent, OffPolicyConfig, _f
from basal_ganglia.striatum import DorsalStriatum, frozen_copy, soft_update
from basal_ganglia.td import td_target
from cortex.policy import DeterministicPolicy


@dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """rl-zoo Pendulum-v1 settings by default."""

    learning_rate: float = _f(1e-3, "Adam learning rate (actor and critic)")
    gamma: float = _f(0.98, "discount factor γ")
    hidden: tuple[int, ...] = _f((400, 300), "hidden layer widths of actor and critic")
    buffer_size: int = _f(200_000, "replay memory capacity (transitions)")
    batch_size: int = _f(256, "replayed minibatch size")
    learning_starts: int = _f(10_000, "env steps of random actions before learning")
    noise_std: float = _f(0.1, "behaviour noise std in the normalised action scale")

class DDPG(OffPolicyAgent):
    name = "ddpg"
    config_cls = DDPGConfig
    action_kind = "continuous"

    def build(self) -> None:
        cfg, low, high = self.cfg, self.action_space.low, self.action_space.high
        self.actor = DeterministicPolicy(self.state_dim, self.action_dim, low, high,
                                         tuple(cfg.hidden)).to(self.device)
        self.q = DorsalStriatum(self.state_dim, self.action_dim, tuple(cfg.hidden),
                                discrete=False).to(self.device)
        self.actor_target, self.q_target = frozen_copy(self.actor), frozen_copy(self.q)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)
        self.q_opt = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)
        self.build_memory()

    def act(self, obs, deterministic: bool = False):
        with torch.no_grad():
            a = self.actor(self.obs_tensor(obs)).cpu().numpy()
        if not deterministic:
            scale = (self.action_space.high - self.action_space.low) / 2
            a = a + self.cfg.noise_std * scale * self.rng.standard_normal(a.shape)
        return np.clip(a, self.action_space.low, self.action_space.high).astype(np.float32)

    def q_value(self, obs, action) -> torch.Tensor:
        return self.q(obs, action)

    @torch.no_grad()
    def td_target(self, batch) -> torch.Tensor:
        next_q = self.q_target(batch.next_obs, self.actor_target(batch.next_obs))
        return td_target(batch.reward, next_q, batch.terminated, self.cfg.gamma)

    def update(self, batch) -> dict[str, float]:
        q_loss = 0.5 * self.td(batch).pow(2).mean()
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        actor_loss = -self.q(batch.obs, self.actor(batch.obs)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        soft_update(self.q_target, self.q, self.cfg.tau)
        soft_update(self.actor_target, self.actor, self.cfg.tau)
        return {"q": q_loss.item(), "actor": actor_loss.item()}
