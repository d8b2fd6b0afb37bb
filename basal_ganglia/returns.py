"""Returns and advantage estimators of the seed's appendix, on rollouts of shape (T, N).

Conventions shared by every function: index t is a time step of N parallel streams;
`rewards[t]` is r_t, `values[t]` is V̂(x_t), `next_values[t]` is V̂ of the observation step t led
to (the final observation on truncation, never a reset one), `terminated[t]`/`truncated[t]`
flag how step t ended. δ_t = r_t + γ (1 − terminated_t) next_values_t − values_t.
A segment is a run of steps inside one episode and one rollout; no sum crosses its end. For
step t let H_t be the number of steps from t to the end of its segment and
A^(n)_t = Σ_{k<n} γ^k δ_{t+k} the n-step advantage (for n ≥ H_t it stops at the segment end).

Three λ-averages of the A^(n)_t differ only in the weight given to each n:

* `gae` — the standard recursion A_t = δ_t + γλ (1 − done_t) A_{t+1}, A = 0 past the rollout,
  used by PPO. It equals (1−λ) Σ_{n<H} λ^{n−1} A^(n) + λ^{H−1} A^(H): the weight of every
  n-step return beyond the segment is lumped on the longest one, so the weights sum to one.
* `gae_truncated_seed` — the seed's A(λ, T) = (1−λ) Σ_{n=1}^{T} λ^{n−1} A^(n) with T = H_t:
  weights sum to 1 − λ^T, so it shrinks the advantage, most near the end of a segment.
  In closed form it is gae − λ^H · A^(H).
* `gae_bias_corrected` — the seed's Ã(λ, T) = A(λ, T) / (1 − λ^T): the same weights
  renormalised to one (for λ = 1, the plain mean of A^(1..T)).

So the seed's remark that PPO uses the uncorrected truncated form does not hold for the
recursion PPO implements: that recursion is already normalised, just differently from Ã.
"""

from __future__ import annotations

import torch


def _dones(terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    return (terminated.bool() | truncated.bool()).to(torch.get_default_dtype())


def td_errors(rewards, values, next_values, terminated, gamma: float) -> torch.Tensor:
    """δ_t for every step, (T, N) → (T, N)."""
    return rewards + gamma * (1.0 - terminated.to(rewards.dtype)) * next_values - values


def gae(rewards: torch.Tensor, values: torch.Tensor, next_values: torch.Tensor,
        terminated: torch.Tensor, truncated: torch.Tensor, gamma: float,
        lam: float) -> torch.Tensor:
    """Generalised advantage estimate by the standard backward recursion, (T, N) → (T, N)."""
    delta = td_errors(rewards, values, next_values, terminated, gamma)
    keep = 1.0 - _dones(terminated, truncated).to(delta.dtype)
    adv = torch.zeros_like(delta)
    running = torch.zeros_like(delta[0])
    for t in range(delta.shape[0] - 1, -1, -1):
        running = delta[t] + gamma * lam * keep[t] * running
        adv[t] = running
    return adv


def td_lambda_returns(rewards, values, next_values, terminated, truncated, gamma: float,
                      lam: float) -> torch.Tensor:
    """λ-returns G_t(λ) = A_t(λ) + V̂(x_t), the TD(λ) targets, (T, N) → (T, N)."""
    return gae(rewards, values, next_values, terminated, truncated, gamma, lam) + values


def segment_horizon(terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """H_t: steps from t to the end of its segment (episode end or rollout end), (T, N)."""
    done = _dones(terminated, truncated).bool()
    h = torch.zeros(done.shape, dtype=torch.long, device=done.device)
    running = torch.zeros(done.shape[1:], dtype=torch.long, device=done.device)
    for t in range(done.shape[0] - 1, -1, -1):
        running = torch.where(done[t], torch.ones_like(running), running + 1)
        h[t] = running
    return h


def gae_truncated_seed(rewards, values, next_values, terminated, truncated, gamma: float,
                       lam: float) -> torch.Tensor:
    """The seed's truncated A(λ, T), T = H_t: (1−λ) Σ_{n=1}^{T} λ^{n−1} A^(n), (T, N)."""
    horizon = segment_horizon(terminated, truncated).to(rewards.dtype)
    full = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    longest = gae(rewards, values, next_values, terminated, truncated, gamma, 1.0)
    return full - lam ** horizon * longest


def gae_bias_corrected(rewards, values, next_values, terminated, truncated, gamma: float,
                       lam: float) -> torch.Tensor:
    """The seed's Ã(λ, T) = (1−λ)/(1−λ^T) Σ_{n=1}^{T} λ^{n−1} A^(n), T = H_t, (T, N)."""
    horizon = segment_horizon(terminated, truncated).to(rewards.dtype)
    if lam < 1.0:
        truncated_form = gae_truncated_seed(rewards, values, next_values, terminated,
                                            truncated, gamma, lam)
        return truncated_form / (1.0 - lam ** horizon)
    # λ → 1: mean of A^(1..T) = Σ_k γ^k δ_{t+k} (T − k) / T
    delta = td_errors(rewards, values, next_values, terminated, gamma)
    keep = 1.0 - _dones(terminated, truncated).to(delta.dtype)
    s1 = torch.zeros_like(delta[0])  # Σ_k γ^k δ_{t+k}
    sk = torch.zeros_like(delta[0])  # Σ_k k γ^k δ_{t+k}
    out = torch.zeros_like(delta)
    for t in range(delta.shape[0] - 1, -1, -1):
        sk = gamma * keep[t] * (s1 + sk)
        s1 = delta[t] + gamma * keep[t] * s1
        out[t] = s1 - sk / horizon[t]
    return out


ESTIMATORS = {"gae": gae, "truncated": gae_truncated_seed, "bias_corrected": gae_bias_corrected}
