"""Golden tests of the return and advantage estimators against brute-force definitions."""

import numpy as np
import pytest
import torch

from basal_ganglia.returns import (gae, gae_bias_corrected, gae_truncated_seed, segment_horizon,
                                   td_lambda_returns)
from basal_ganglia.td import reward_basis_td_errors, td_error


def rollout(T=12, N=3, seed=0):
    g = np.random.default_rng(seed)
    r = g.normal(size=(T, N))
    v = g.normal(size=(T, N))
    nv = g.normal(size=(T, N))
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[3, 0] = term[7, 1] = True
    trunc[5, 0] = trunc[2, 2] = True
    # on non-final steps the next value is the next step's value (same stream, same episode)
    for t in range(T - 1):
        cont = ~(term[t] | trunc[t])
        nv[t, cont] = v[t + 1, cont]
    return [torch.as_tensor(x) for x in (r, v, nv, term, trunc)]


def n_step_advantages(r, v, nv, term, trunc, gamma, t, i):
    """A^(n)_t for n = 1..H by explicit sums; returns a list of length H."""
    out, total, k = [], 0.0, 0
    while True:
        total += gamma ** k * r[t + k, i]
        boot = 0.0 if term[t + k, i] else gamma ** (k + 1) * nv[t + k, i]
        out.append(float(total + boot - v[t, i]))
        if term[t + k, i] or trunc[t + k, i] or t + k == r.shape[0] - 1:
            return out
        k += 1


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.5), (0.98, 0.8), (1.0, 1.0)])
def test_gae_matches_brute_force_lambda_average(gamma, lam):
    r, v, nv, term, trunc = rollout()
    adv = gae(r, v, nv, term, trunc, gamma, lam)
    for t in range(r.shape[0]):
        for i in range(r.shape[1]):
            a = n_step_advantages(r, v, nv, term, trunc, gamma, t, i)
            # (1 − λ) Σ_n λ^(n−1) A^(n), where every n beyond the segment gives A^(H)
            ns = np.arange(1, 3000)
            a_n = np.array([a[min(n, len(a)) - 1] for n in ns])
            brute = ((1 - lam) * lam ** (ns - 1) * a_n).sum() if lam < 1 else a[-1]
            assert adv[t, i].item() == pytest.approx(brute, abs=1e-8)


def test_gae_equals_discounted_sum_of_td_errors_within_episodes():
    r, v, nv, term, trunc = rollout(seed=3)
    gamma, lam = 0.97, 0.9
    delta = r + gamma * (~term).double() * nv - v
    adv = gae(r, v, nv, term, trunc, gamma, lam)
    T, N = r.shape
    for i in range(N):
        for t in range(T):
            s, k = 0.0, 0
            while True:
                s += (gamma * lam) ** k * delta[t + k, i]
                if term[t + k, i] or trunc[t + k, i] or t + k == T - 1:
                    break
                k += 1
            assert adv[t, i].item() == pytest.approx(float(s), abs=1e-10)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_seed_truncated_and_bias_corrected_forms_match_definitions(lam):
    r, v, nv, term, trunc = rollout(seed=1)
    gamma = 0.95
    trunc_form = gae_truncated_seed(r, v, nv, term, trunc, gamma, lam)
    corrected = gae_bias_corrected(r, v, nv, term, trunc, gamma, lam)
    horizon = segment_horizon(term, trunc)
    for t in range(r.shape[0]):
        for i in range(r.shape[1]):
            a = np.array(n_step_advantages(r, v, nv, term, trunc, gamma, t, i))
            T = len(a)
            assert horizon[t, i] == T
            w = lam ** np.arange(T)
            assert trunc_form[t, i].item() == pytest.approx((1 - lam) * (w * a).sum(), abs=1e-9)
            expected = (w * a).sum() / w.sum()  # (1−λ)/(1−λ^T) Σ λ^(n−1) A^(n)
            assert corrected[t, i].item() == pytest.approx(expected, abs=1e-9)


def test_forms_differ_as_documented():
    """PPO's recursion ≠ the seed's truncated form; they agree only far from a segment end."""
    r, v, nv, term, trunc = rollout(T=200, N=3, seed=2)
    term[:] = False
    trunc[:] = False
    g, lam = 0.99, 0.8
    standard = gae(r, v, nv, term, trunc, g, lam)
    seed_form = gae_truncated_seed(r, v, nv, term, trunc, g, lam)
    corrected = gae_bias_corrected(r, v, nv, term, trunc, g, lam)
    assert torch.allclose(standard[:100], seed_form[:100], atol=1e-6)
    assert torch.allclose(standard[:100], corrected[:100], atol=1e-6)
    assert not torch.allclose(standard[-5:], seed_form[-5:], atol=1e-3)
    # last step: the standard recursion gives δ_T, the seed's truncated form (1 − λ) δ_T
    assert seed_form[-1, 0].item() == pytest.approx((1 - lam) * standard[-1, 0].item())
    assert corrected[-1, 0].item() == pytest.approx(standard[-1, 0].item())


def test_td_lambda_returns_limits():
    r, v, nv, term, trunc = rollout(seed=4)
    g = 0.9
    one_step = r + g * (~term).double() * nv
    assert torch.allclose(td_lambda_returns(r, v, nv, term, trunc, g, 0.0), one_step)
    mc = td_lambda_returns(r, v, nv, term, trunc, g, 1.0)
    t, i = 0, 0  # stream 0 terminates at step 3: the return is the plain discounted sum
    assert mc[t, i].item() == pytest.approx(sum(g ** k * r[k, 0].item() for k in range(4)))


def test_td_error_bootstraps_on_truncation_not_termination():
    r, v, nv = torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.5]), torch.tensor([2.0, 2.0])
    d = td_error(r, v, nv, torch.tensor([True, False]), 0.9)
    assert d.tolist() == pytest.approx([0.5, 1.0 + 1.8 - 0.5])


def test_reward_basis_dopamine_sums_with_motivation():
    r = torch.tensor([[1.0, 0.0]])
    v, nv = torch.tensor([[0.2, 0.4]]), torch.tensor([[0.0, 1.0]])
    alpha = torch.tensor([2.0, 0.5])
    d_bases, d = reward_basis_td_errors(r, v, nv, torch.tensor([False]), 0.9, alpha)
    assert d_bases[0].tolist() == pytest.approx([0.8, 0.5])
    assert d.item() == pytest.approx(2 * 0.8 + 0.5 * 0.5)
