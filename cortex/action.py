"""The action free energy: the policy posterior q(π | s) of the seed's Equation (2) (DESIGN §4).

For each past step τ the seed's free energy carries, besides perception, the terms

    (c) −log p(π | s_τ) = −β V_π(s_τ) + log Z(s_τ)     value (preference)
    (d) −log π(a_τ | s_τ)                               drift: fit the actions actually taken
    (f) −H[q(π | s_τ)]                                  entropy of the policy posterior

Every function here returns the six terms of Equation (2) by name, (a) `dynamics`,
(b) `observation`, (c) `value`, (d) `drift`, (e) `state_entropy`, (f) `policy_entropy`, as
means over the τ axis. (a) and (b) come from the cortex (zero when the state is a raw
observation, which has no generative model); (e) is the constant entropy of the point-mass
q(s) and is zero (DESIGN §3).

Two posteriors. The point mass q = δ(π − π_φ) leaves (c) = −β V̂_{π_φ}(z) (+ log Z, constant in
φ), (d) = −λ_d log π_φ(a_τ|z_τ), and replaces the infinite (f) by the SAC-style −α H[π_φ(·|z)].
The mixture of K policies q(π = k | s) = w_k has all terms finite and the closed-form minimiser
w_k ∝ exp(β V̂_k(s) + log π_k(a|s)); at the minimum the action terms sum to −log p(a | s).
"""

from __future__ import annotations

import torch

TERMS = ("dynamics", "observation", "value", "drift", "state_entropy", "policy_entropy")


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=like.dtype, device=like.device)


def point_mass_terms(value: torch.Tensor, log_prob_taken: torch.Tensor,
                     entropy: torch.Tensor | None = None, *, beta: float = 1.0,
                     drift_coef: float = 1.0, entropy_coef: float = 0.0,
                     dynamics: torch.Tensor | None = None,
                     observation: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Terms for q(π|s) = δ(π − π_φ).

    value: V̂_{π_φ}(z_τ) (T,) (through Q̂(z, a_φ) for the amortised gradient);
    log_prob_taken: log π_φ(a_τ | z_τ) (T,) of the actions actually taken;
    entropy: H[π_φ(·|z_τ)] (T,) or an estimate, needed when entropy_coef ≠ 0.
    Returns the six scalar terms; differentiable where the inputs are.
    """
    terms = {
        "dynamics": dynamics if dynamics is not None else _zero(value),
        "observation": observation if observation is not None else _zero(value),
        "value": -beta * value.mean(),
        "drift": -drift_coef * log_prob_taken.mean(),
        "state_entropy": _zero(value),
        "policy_entropy": (-entropy_coef * entropy.mean() if entropy is not None
                           else _zero(value)),
    }
    return terms


def mixture_weights(values: torch.Tensor, log_probs: torch.Tensor, beta: float = 1.0):
    """Closed-form posterior w_k(s) ∝ exp(β V̂_k(s) + log π_k(a|s)).

    values: V̂_k(s_τ) (T, K); log_probs: log π_k(a_τ | s_τ) (T, K). Returns w (T, K).
    """
    return torch.softmax(beta * values + log_probs, dim=-1)


def mixture_terms(weights: torch.Tensor, values: torch.Tensor, log_probs: torch.Tensor, *,
                  beta: float = 1.0, dynamics: torch.Tensor | None = None,
                  observation: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Terms for q(π = k | s) = w_k with prior p(π = k | s) = softmax_k(β V̂_k(s)).

    weights, values, log_probs: (T, K). value = E_w[−β V̂_k] + log Z, drift = E_w[−log π_k(a)],
    policy_entropy = −H[w] = E_w[log w]. Returns the six scalar terms (means over T).
    """
    log_z = torch.logsumexp(beta * values, dim=-1)
    log_w = torch.log(weights.clamp_min(torch.finfo(weights.dtype).tiny))
    return {
        "dynamics": dynamics if dynamics is not None else _zero(values),
        "observation": observation if observation is not None else _zero(values),
        "value": ((weights * (-beta * values)).sum(-1) + log_z).mean(),
        "drift": (weights * -log_probs).sum(-1).mean(),
        "state_entropy": _zero(values),
        "policy_entropy": (weights * log_w).sum(-1).mean(),
    }


def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """F = the sum of the six terms."""
    return sum(terms[k] for k in TERMS)

