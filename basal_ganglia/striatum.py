"""Striatal critics (DESIGN.md §5): ventral striatum V̂(z), dorsal striatum Q̂(z, a).

The striatum reads a state z — the cortical state of configured nodes, or a raw observation —
and the midbrain broadcasts the dopamine signal δ (basal_ganglia.td). `VentralStriatum` holds
one value head per reward basis (one head = the ordinary critic) and combines them with the
motivational weights α. `DorsalStriatum` is Q̂(z, ·) over a discrete action set (DQN) or
Q̂(z, a) for a continuous action (DDPG, SVG(0), SAC); `CriticEnsemble` is the clipped double critic.
`BasalGanglia` is the per-step interface a closed-loop simulation calls with z_t.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from basal_ganglia.td import reward_basis_td_errors
from cortex.policy import check_state, mlp


def read_cortex(z: Mapping[str, torch.Tensor], nodes: Sequence[str], *,
                detach: bool = True) -> torch.Tensor:
    """The striatal input: the states of the configured cortical `nodes`, concatenated.

    z: node name → (B, d_n) (or (d_n,)); returns (B, Σ_n d_n). Detached by default, so that the
    critics' gradients do not reach the cortex.
    """
    missing = [n for n in nodes if n not in z]
    if missing:
        raise ValueError(f"striatum reads cortical node(s) {missing} that the cortex state does "
                         f"not have; available: {sorted(z)}")
    parts = [z[n].detach() if detach else z[n] for n in nodes]
    return torch.cat([p if p.ndim > 1 else p[None] for p in parts], -1)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← τ θ + (1 − τ) θ'  (τ = 1 copies)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A target network: a copy that takes no gradient."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class VentralStriatum(nn.Module):
    """V̂(z) = Σ_i α_i V̂_i(z): state value, one head per reward basis.

    state_dim: dimension of z; hidden: widths of the hidden layers (() = linear critic, as for
    a tapped-delay-line state); n_bases: number of reward bases K; bias: whether V̂ has an
    offset (off for the conditioning model, where the empty state must be worth 0).
    """

    def __init__(self, state_dim: int, hidden: tuple[int, ...] = (64, 64), n_bases: int = 1,
                 *, activation=nn.Tanh, bias: bool = True):
        super().__init__()
        self.state_dim, self.n_bases = state_dim, n_bases
        self.net = mlp(state_dim, hidden, n_bases, activation)
        if not bias:
            self.net[-1].bias = None
        self.register_buffer("alpha", torch.ones(n_bases))

    def bases(self, z: torch.Tensor) -> torch.Tensor:
        """V̂_i(z): (B, state_dim) → (B, K)."""
        check_state(z, self.state_dim, "VentralStriatum")
        return self.net(z)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """V̂(z) = Σ_i α_i V̂_i(z): (B, state_dim) → (B,)."""
        return self.bases(z) @ self.alpha

    def set_motivation(self, alpha) -> None:
        """Set the motivational weights α (K,): revalues every state at once."""
        set_alpha(self.alpha, alpha)


def set_alpha(buffer: torch.Tensor, alpha) -> None:
    """Copy the motivational weights `alpha` into a critic's α buffer (K,), checking K."""
    alpha = torch.as_tensor(alpha, dtype=buffer.dtype)
    if alpha.shape != buffer.shape:
        raise ValueError(f"alpha must have shape ({len(buffer)},), one weight per reward basis, "
                         f"got {tuple(alpha.shape)}")
    buffer.copy_(alpha)


class DorsalStriatum(nn.Module):
    """Q̂(z, a). Discrete: forward(z) → (B, n_actions). Continuous: forward(z, a) → (B,).

    Discrete with n_bases = K > 1: one Q̂_i(z, ·) per reward basis (`bases(z)`, (B, A, K)) and
    forward(z) = Σ_i α_i Q̂_i(z, ·) with the motivational weights α (`set_motivation`).
    """

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256), *,
                 discrete: bool, n_bases: int = 1):
        super().__init__()
        if n_bases > 1 and not discrete:
            raise ValueError("reward bases need a discrete action set (one Q̂_i(z, ·) head per "
                             "basis); a continuous-action critic has one basis")
        self.state_dim, self.action_dim, self.discrete = state_dim, action_dim, discrete
        self.n_bases = n_bases
        in_dim = state_dim if discrete else state_dim + action_dim
        self.net = mlp(in_dim, hidden, action_dim * n_bases if discrete else 1)
        self.register_buffer("alpha", torch.ones(n_bases))

    def bases(self, z: torch.Tensor) -> torch.Tensor:
        """Q̂_i(z, ·) of each basis (discrete): (B, state_dim) → (B, A, K)."""
        check_state(z, self.state_dim, "DorsalStriatum")
        return self.net(z).unflatten(-1, (self.action_dim, self.n_bases))

    def forward(self, z: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        check_state(z, self.state_dim, "DorsalStriatum")
        if self.discrete:
            return self.net(z) if self.n_bases == 1 else self.bases(z) @ self.alpha
        return self.net(torch.cat([z, a], -1)).squeeze(-1)

    def set_motivation(self, alpha) -> None:
        """Set the motivational weights α (K,): revalues every action at once."""
        set_alpha(self.alpha, alpha)


class CriticEnsemble(nn.Module):
    """n independent continuous Q̂ heads; `min` is the clipped double-Q estimate for n = 2
    (SAC) and the plain Q̂ for n = 1 (SVG(0))."""

    def __init__(self, state_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256),
                 n: int = 2):
        super().__init__()
        self.critics = nn.ModuleList(DorsalStriatum(state_dim, action_dim, hidden, discrete=False)
                                     for _ in range(n))

    def forward(self, z, a) -> list[torch.Tensor]:
        return [q(z, a) for q in self.critics]

    def min(self, z, a) -> torch.Tensor:
        qs = self(z, a)
        return qs[0] if len(qs) == 1 else torch.stack(qs).min(0).values


@dataclass(frozen=True)
class StriatalState:
    """What the basal ganglia report at one step: V̂(z_t) (B,), per-basis V̂_i (B, K),
    Q̂(z_t, a_t) (B,) or None, dopamine δ_{t−1} (B,) and per basis (B, K) (zeros at the first
    step of an episode, when there is no previous state)."""

    value: torch.Tensor
    value_bases: torch.Tensor
    q: torch.Tensor | None
    dopamine: torch.Tensor
    dopamine_bases: torch.Tensor


class BasalGanglia:
    """Per-step critic readout for a closed-loop simulation (DESIGN.md §8).

    Call `step(z_t, reward_prev, terminated_prev, action)` once per time step with the state of
    the configured cortical nodes (detached, as the striatum does not train the cortex by
    default). It returns V̂(z_t), Q̂(z_t, a_t) when a dorsal critic is given, and the dopamine
    δ_{t−1} = r_{t−1} + γ (1 − terminated) V̂(z_t) − V̂(z_{t−1}) per basis and in total.
    """

    def __init__(self, ventral: VentralStriatum, dorsal: DorsalStriatum | None = None, *,
                 gamma: float = 0.99, detach: bool = True):
        self.ventral, self.dorsal, self.gamma, self.detach = ventral, dorsal, gamma, detach
        self._prev_bases: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the previous state (start of an episode)."""
        self._prev_bases = None

    def step(self, z: torch.Tensor, reward_prev=None, terminated_prev=None,
             action: torch.Tensor | None = None) -> StriatalState:
        z = z.detach() if self.detach else z
        z = z if z.ndim == 2 else z[None]
        with torch.no_grad():
            bases = self.ventral.bases(z)
            value = bases @ self.ventral.alpha
            q = None
            if self.dorsal is not None and action is not None:
                q_all = self.dorsal(z) if self.dorsal.discrete else self.dorsal(z, action)
                q = (q_all.gather(-1, action.long().view(-1, 1)).squeeze(-1)
                     if self.dorsal.discrete else q_all)
            if self._prev_bases is None or reward_prev is None:
                d_bases = torch.zeros_like(bases)
                d = torch.zeros_like(value)
            else:
                r = torch.as_tensor(reward_prev, dtype=bases.dtype)
                k = bases.shape[-1]
                if r.numel() != len(bases) * k or (k > 1 and r.shape[-1:] != (k,)):
                    raise ValueError(f"reward of shape {tuple(r.shape)} for {len(bases)} "
                                     f"state(s) and {k} reward bases: give ({len(bases)}, {k})")
                r = r.reshape(-1, k)
                term = torch.as_tensor(
                    False if terminated_prev is None else terminated_prev).reshape(-1)
                d_bases, d = reward_basis_td_errors(r, self._prev_bases, bases, term,
                                                    self.gamma, self.ventral.alpha)
        self._prev_bases = bases
        return StriatalState(value, bases, q, d, d_bases)
