"""Policies π_φ(a | z): the corticospinal projection from a cortical state to an action.

DESIGN.md §4 puts the policy in cortex: it reads the state z of one configured node (or a raw
observation) and emits an action. Four families cover the appendix's algorithms:
`CategoricalPolicy` (discrete actions: REINFORCE, PPO), `GaussianPolicy` (diagonal Gaussian
with a state-independent log-std, the usual on-policy choice for boxes), `SquashedGaussianPolicy`
(tanh-squashed and rescaled to a bounded box, reparameterised: SVG(0), SAC) and
`DeterministicPolicy` (a = μ_φ(z), DDPG). Every stochastic policy offers `sample` (action and
log π), `log_prob` of given actions (the drift term of the action free energy) and `mode`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation=nn.ReLU) -> nn.Sequential:
    """Fully connected net in_dim → hidden… → out_dim (linear output)."""
    layers, d = [], in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def check_state(z: torch.Tensor, state_dim: int, who: str) -> None:
    """Raise a clear ValueError when z's last axis is not `state_dim`."""
    if z.shape[-1] != state_dim:
        raise ValueError(f"{who} expects states of dimension {state_dim}, "
                         f"got shape {tuple(z.shape)}")


class CategoricalPolicy(nn.Module):
    """π(a | z) = softmax(logits_φ(z)) over n_actions."""

    discrete = True

    def __init__(self, state_dim: int, n_actions: int, hidden=(64, 64), activation=nn.Tanh):
        super().__init__()
        self.state_dim, self.n_actions = state_dim, n_actions
        self.net = mlp(state_dim, hidden, n_actions, activation)

    def dist(self, z: torch.Tensor) -> Categorical:
        check_state(z, self.state_dim, "policy")
        return Categorical(logits=self.net(z), validate_args=False)

    def sample(self, z):
        """a (B,), log π(a|z) (B,)."""
        d = self.dist(z)
        a = d.sample()
        return a, d.log_prob(a)

    def log_prob(self, z, a):
        return self.dist(z).log_prob(a.long())

    def entropy(self, z):
        return self.dist(z).entropy()

    def mode(self, z):
        return self.dist(z).probs.argmax(-1)


class GaussianPolicy(nn.Module):
    """π(a | z) = N(μ_φ(z), diag σ²), σ state-independent; the env clips actions to the box."""

    discrete = False

    def __init__(self, state_dim: int, action_dim: int, hidden=(64, 64), activation=nn.Tanh,
                 log_std_init: float = 0.0):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = mlp(state_dim, hidden, action_dim, activation)
        self.log_std = nn.Parameter(torch.full((action_dim,), log_std_init))

    def dist(self, z) -> Normal:
        check_state(z, self.state_dim, "policy")
        return Normal(self.net(z), self.log_std.exp(), validate_args=False)

    def sample(self, z):
        d = self.dist(z)
        a = d.sample()
        return a, d.log_prob(a).sum(-1)

    def log_prob(self, z, a):
        return self.dist(z).log_prob(a).sum(-1)

    def entropy(self, z):
        return self.dist(z).entropy().sum(-1)

    def mode(self, z):
        return self.dist(z).mean


def _box_affine(low, high) -> tuple[torch.Tensor, torch.Tensor]:
    low = torch.as_tensor(np.asarray(low, np.float32))
    high = torch.as_tensor(np.asarray(high, np.float32))
    if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
        raise ValueError("a squashed or deterministic policy needs a bounded action box")
    return (high + low) / 2, (high - low) / 2


class SquashedGaussianPolicy(nn.Module):
    """a = c + s·tanh(u), u ~ N(μ_φ(z), σ_φ(z)²): a Gaussian squashed into the box [low, high].

    log π(a|z) = log N(u) − Σ_j log(s_j (1 − tanh² u_j)), with the stable form
    log(1 − tanh² u) = 2 (log 2 − u − softplus(−2u)).
    """

    discrete = False

    def __init__(self, state_dim: int, action_dim: int, low, high, hidden=(256, 256)):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.trunk = mlp(state_dim, hidden[:-1], hidden[-1]) if hidden else nn.Identity()
        width = hidden[-1] if hidden else state_dim
        self.mu = nn.Linear(width, action_dim)
        self.log_std = nn.Linear(width, action_dim)
        centre, scale = _box_affine(low, high)
        self.register_buffer("centre", centre)
        self.register_buffer("scale", scale)

    def _gaussian(self, z) -> Normal:
        check_state(z, self.state_dim, "policy")
        h = torch.relu(self.trunk(z)) if not isinstance(self.trunk, nn.Identity) else z
        log_std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        return Normal(self.mu(h), log_std.exp(), validate_args=False)

    def _log_prob_u(self, g: Normal, u):
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (g.log_prob(u) - log_det - torch.log(self.scale)).sum(-1)

    def sample(self, z):
        """Reparameterised a (B, A) and log π(a|z) (B,)."""
        g = self._gaussian(z)
        u = g.rsample()
        return self.centre + self.scale * torch.tanh(u), self._log_prob_u(g, u)

    def log_prob(self, z, a):
        y = ((a - self.centre) / self.scale).clamp(-1 + 1e-6, 1 - 1e-6)
        return self._log_prob_u(self._gaussian(z), torch.atanh(y))

    def entropy(self, z):
        """Single-sample estimate −log π(a|z), a ~ π (no closed form after the squash)."""
        return -self.sample(z)[1]

    def mode(self, z):
        return self.centre + self.scale * torch.tanh(self._gaussian(z).mean)


class DeterministicPolicy(nn.Module):
    """a = c + s·tanh(μ_φ(z)): π(a|z) = δ(a − μ_φ(z)), DDPG's actor."""

    discrete = False

    def __init__(self, state_dim: int, action_dim: int, low, high, hidden=(400, 300)):
        super().__init__()
        self.state_dim, self.action_dim = state_dim, action_dim
        self.net = mlp(state_dim, hidden, action_dim)
        centre, scale = _box_affine(low, high)
        self.register_buffer("centre", centre)
        self.register_buffer("scale", scale)

    def forward(self, z):
        check_state(z, self.state_dim, "policy")
        return self.centre + self.scale * torch.tanh(self.net(z))

    def mode(self, z):
        return self(z)


class MixturePolicy(nn.Module):
    """K component policies π_k(a | z) under the mixture posterior q(π = k | s) = w_k (DESIGN §4).

    Acting samples a component from the prior p(π = k | s) = softmax_k(β V̂_k(s)) and an action
    from it. `free_energy` evaluates the six terms of cortex.action at the closed-form posterior
    w_k ∝ exp(β V̂_k + log π_k(a_τ | z_τ)) held fixed (the E-step), so that the gradient for
    φ_k is exactly that of the terms: −w_k ∇ log π_k(a_τ | z_τ) from the drift term.
    `components` is a list of policies with `log_prob` and `sample` (e.g. CategoricalPolicy).
    """

    def __init__(self, components: list[nn.Module]):
        super().__init__()
        if not components:
            raise ValueError("a mixture needs at least one component policy")
        self.components = nn.ModuleList(components)

    def log_probs(self, z, a) -> torch.Tensor:
        """log π_k(a | z) for every component, (B, K)."""
        return torch.stack([pi.log_prob(z, a) for pi in self.components], -1)

    def sample(self, z, values: torch.Tensor, beta: float = 1.0,
               generator: torch.Generator | None = None):
        """k ~ softmax(β V̂_k(z)) then a ~ π_k(·|z); values: V̂_k(z) (B, K). Returns a, k."""
        k = torch.multinomial(torch.softmax(beta * values, -1), 1, generator=generator)[:, 0]
        actions = torch.stack([pi.sample(z)[0] for pi in self.components], 1)  # (B, K, …)
        index = k.view(-1, *([1] * (actions.ndim - 1))).expand(-1, 1, *actions.shape[2:])
        return actions.gather(1, index).squeeze(1), k

    def free_energy(self, z, a, values: torch.Tensor, beta: float = 1.0):
        """(terms, w): the six terms at w = closed-form posterior (no gradient through w)."""
        from cortex.action import mixture_terms, mixture_weights

        log_probs = self.log_probs(z, a)
        w = mixture_weights(values.detach(), log_probs.detach(), beta)
        return mixture_terms(w, values, log_probs, beta=beta), w
