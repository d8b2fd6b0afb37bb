"""DQN (Mnih et al. 2015): Q̂ ≈ Q_π* by the greedy Q-learning loss on replayed transitions.

Dorsal striatum Q̂(z, ·) over discrete actions, a target copy synced every
`target_update_interval` env steps, ε-greedy behaviour annealed linearly over the first
`exploration_fraction` of a `learn` call. Dopamine δ = r + γ (1 − terminated) Q̂'(z', a*) −
Q̂(z, a), with a* the online network's argmax (Double DQN, the default) or the target's own
(max_a' Q̂'(z', a'), `double_q=False`); the loss is Huber(δ).

With K reward bases (`Spaces.n_bases`), Q̂ has a head per basis and acts on Σ_i α_i Q̂_i; each
basis learns from its own dopamine δ^i = r_i + γ (1 − terminated) Q̂'_i(z', a*) − Q̂_i(z, a),
a* chosen on the α-weighed values, so that Σ_i α_i δ^i is the scalar DQN's δ for Σ_i α_i r_i.
Each Q̂_i is then the value of basis i under the policy of the α it was learned with: setting
a new α (`set_motivation`) revalues at once, exactly where the policy stays the same (unlike
the tabular `reward_bases.BasisQ`, whose bases each bootstrap from their own best action).
Prioritised replay by |δ| sees the α-weighed δ, so a basis weighed 0 raises no priority.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from basal_ganglia.agents.config import OffPolicyConfig, Spaces, Update
from basal_ganglia.striatum import DorsalStriatum, frozen_copy, soft_update
from basal_ganglia.td import td_target
from cortex.params import param


@dataclass(frozen=True)
class DQNConfig(OffPolicyConfig):
    """rl-zoo CartPole-v1 settings by default, with the Double DQN target.

    With the zoo's plain max target, 3 of 6 seeds collapsed late in the 50k-step budget (final
    returns 404, 51, 215); with the Double DQN target all 6 ended at 500
    (benchmarks/RL_RESULTS.md). ``double_q=False`` gives the Mnih et al. (2015) target.
    """

    learning_rate: float = param(2.3e-3, "Adam learning rate", gt=0.0)
    hidden: tuple[int, ...] = param((256, 256), "hidden layer widths of Q̂", ge=1)
    buffer_size: int = param(100_000, "replay memory capacity (transitions)", ge=1)
    batch_size: int = param(64, "replayed minibatch size", ge=1)
    learning_starts: int = param(1000, "env steps of random actions before learning", ge=0)
    train_freq: int = param(256, "env steps between training phases", ge=1)
    gradient_steps: int = param(128, "gradient steps per training phase", ge=1)
    tau: float = param(1.0, "Polyak rate τ of the target network (1 = a copy)", ge=0.0, le=1.0)
    target_update_interval: int = param(10, "env steps between target updates", ge=1)
    exploration_fraction: float = param(0.16, "fraction of a learn call over which ε anneals",
                                        ge=0.0, le=1.0)
    exploration_initial_eps: float = param(1.0, "initial ε", ge=0.0, le=1.0)
    exploration_final_eps: float = param(0.04, "final ε", ge=0.0, le=1.0)
    max_grad_norm: float = param(10.0, "gradient norm clip", gt=0.0)
    double_q: bool = param(True, "Double DQN target (van Hasselt et al. 2016): the online Q̂ "
                                 "picks a', the target Q̂' values it, curbing the max operator's "
                                 "overestimation")


class DQN:
    name, config_cls, action_kind = "dqn", DQNConfig, "discrete"

    def __init__(self, cfg: DQNConfig, spaces: Spaces, device: torch.device):
        self.cfg, self.spaces = cfg, spaces
        self.q = DorsalStriatum(spaces.state_dim, spaces.action_dim, tuple(cfg.hidden),
                                discrete=True, n_bases=spaces.n_bases).to(device)
        self.q_target = frozen_copy(self.q)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate)

    def epsilon(self, progress: float) -> float:
        """ε after `progress` (0..1) of the current learn call."""
        cfg = self.cfg
        frac = min(1.0, progress / cfg.exploration_fraction) if cfg.exploration_fraction else 1.0
        return (cfg.exploration_initial_eps
                + frac * (cfg.exploration_final_eps - cfg.exploration_initial_eps))

    def act(self, z: torch.Tensor, *, deterministic: bool, rng: np.random.Generator,
            progress: float = 1.0) -> np.ndarray:
        """Greedy actions (B,) for states z (B, d), ε-greedy unless deterministic."""
        with torch.no_grad():
            greedy = self.q(z).argmax(-1).cpu().numpy()
        if deterministic:
            return greedy
        eps = self.epsilon(progress)
        return np.array([self.spaces.action_space.sample() if rng.random() < eps else g
                         for g in greedy])

    def q_value(self, z, action) -> torch.Tensor:
        return self.q(z).gather(-1, action.long()[:, None]).squeeze(-1)

    @torch.no_grad()
    def value(self, z) -> torch.Tensor:
        """V̂(z) = max_a Q̂(z, a) of the greedy policy."""
        return self.q(z).max(-1).values

    @torch.no_grad()
    def target(self, batch) -> torch.Tensor:
        """r + γ (1 − terminated) Q̂'(z', a*): (B,), or with reward bases Σ_i α_i of them."""
        target = self.target_bases(batch)
        return target if self.q.n_bases == 1 else target @ self.q.alpha

    @torch.no_grad()
    def target_bases(self, batch) -> torch.Tensor:
        """The TD target (B,), or per reward basis (B, K)."""
        greedy = (self.q if self.cfg.double_q else self.q_target)(batch.next_obs).argmax(-1)
        if self.q.n_bases == 1:
            next_q = self.q_target(batch.next_obs).gather(-1, greedy[:, None]).squeeze(-1)
            return td_target(batch.reward, next_q, batch.terminated, self.cfg.gamma)
        next_q = self.q_target.bases(batch.next_obs)[torch.arange(len(greedy)), greedy]
        return td_target(batch.reward, next_q, batch.terminated[:, None], self.cfg.gamma)

    def q_bases(self, z, action) -> torch.Tensor:
        """Q̂(z, a) (B,), or per reward basis (B, K)."""
        if self.q.n_bases == 1:
            return self.q_value(z, action)
        return self.q.bases(z)[torch.arange(len(action)), action.long()]

    def update(self, batch) -> Update:
        delta = self.target_bases(batch) - self.q_bases(batch.obs, batch.action)
        huber = nn.functional.smooth_l1_loss(delta, torch.zeros_like(delta), reduction="none")
        # importance weights of prioritised replay (ones for uniform sampling)
        if delta.ndim == 2:  # every basis learns at the scalar DQN's rate
            huber = huber.sum(-1)
        loss = (batch.weight * huber).mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        delta = delta.detach()
        return Update({"q": loss.item()}, delta if delta.ndim == 1 else delta @ self.q.alpha)

    def set_motivation(self, alpha) -> None:
        """Set the motivational weights α (K,) of the online and target Q̂."""
        self.q.set_motivation(alpha)
        self.q_target.set_motivation(alpha)

    def sync_targets(self) -> None:
        soft_update(self.q_target, self.q, self.cfg.tau)
