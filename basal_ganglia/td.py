"""Dopamine as the temporal-difference error (DESIGN.md §5).

    δ_t = r_t + γ (1 − terminated_t) V̂(x_{t+1}) − V̂(x_t)

Termination means the environment reached a true terminal state: nothing follows, so nothing is
bootstrapped. Truncation (a time limit) only stops the episode: the future still exists, so the
target bootstraps from V̂ of the final observation, which the caller passes as `next_value`.
"""

from __future__ import annotations

import torch


def td_error(reward: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor,
             terminated: torch.Tensor, gamma: float) -> torch.Tensor:
    """δ = r + γ (1 − terminated) V̂' − V̂.  All arguments (…,) broadcastable; returns (…,)."""
    return td_target(reward, next_value, terminated, gamma) - value


def td_target(reward: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """r + γ (1 − terminated) V̂'  — the one-step bootstrapped target, (…,)."""
    return reward + gamma * (1.0 - terminated.to(reward.dtype)) * next_value


def reward_basis_td_errors(reward: torch.Tensor, value: torch.Tensor, next_value: torch.Tensor,
                           terminated: torch.Tensor, gamma: float,
                           alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dopamine per reward basis and in total (Millidge, Walton & Bogacz 2022).

    reward, value, next_value: (…, K) basis rewards and values; terminated: (…,);
    alpha: (K,) motivational weights. Returns δ^i (…, K) and δ = Σ_i α_i δ^i (…,).
    """
    delta = td_error(reward, value, next_value, terminated[..., None], gamma)
    return delta, (delta * alpha).sum(-1)


class OnlineTD:
    """Semi-gradient TD(λ) with accumulating eligibility traces, one update per time step.

    For each basis i: e_i ← γλ e_i + ∇_θ V̂_i(z_{t−1});  θ ← θ + lr Σ_i δ^i_{t−1} e_i.
    λ = 0 is TD(0). With a linear V̂ on a tapped delay line this is the classic model of
    dopamine in Pavlovian conditioning (Schultz, Dayan & Montague 1997).
    """

    def __init__(self, ventral: torch.nn.Module, *, lr: float, gamma: float, lam: float = 0.0):
        self.ventral, self.lr, self.gamma, self.lam = ventral, lr, gamma, lam
        self.params = [p for p in ventral.parameters() if p.requires_grad]
        self.reset()

    def reset(self) -> None:
        """Clear the traces (start of an episode)."""
        k = self.ventral.n_bases
        self.traces = [[torch.zeros_like(p) for p in self.params] for _ in range(k)]

    def update(self, z_prev: torch.Tensor, delta_bases: torch.Tensor,
               terminated: bool = False) -> None:
        """z_prev: (state_dim,) or (1, state_dim); delta_bases: (K,) or (1, K), δ^i_{t−1}."""
        z_prev = z_prev.reshape(1, -1)
        delta_bases = delta_bases.reshape(-1)
        bases = self.ventral.bases(z_prev)[0]
        for i, trace in enumerate(self.traces):
            grads = torch.autograd.grad(bases[i], self.params, retain_graph=True,
                                        allow_unused=True)
            with torch.no_grad():
                for e, g, p in zip(trace, grads, self.params):
                    e.mul_(self.gamma * self.lam)
                    if g is not None:
                        e.add_(g)
                    p.add_(self.lr * delta_bases[i] * e)
        if terminated:
            self.reset()
