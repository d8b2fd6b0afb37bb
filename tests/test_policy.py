"""Policies (cortex.policy) and the action free energy (cortex.action)."""

import numpy as np
import pytest
import torch

from cortex.action import TERMS, mixture_terms, mixture_weights, point_mass_terms, total
from cortex.policy import (CategoricalPolicy, DeterministicPolicy, GaussianPolicy,
                           SquashedGaussianPolicy)


def free_energy(w, values, log_probs, beta):
    return total(mixture_terms(w, values, log_probs, beta=beta))


def problem(seed=0, T=4, K=5):
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(T, K, generator=g, dtype=torch.float64) * 2
    log_probs = torch.log_softmax(torch.randn(T, K, generator=g, dtype=torch.float64), -1)
    return values, log_probs


@pytest.mark.parametrize("beta", [0.5, 1.0, 3.0])
def test_mixture_closed_form_beats_brute_force_search(beta):
    values, log_probs = problem()
    w_star = mixture_weights(values, log_probs, beta)
    f_star = free_energy(w_star, values, log_probs, beta).item()
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = torch.as_tensor(rng.dirichlet(np.full(values.shape[1], 0.7), size=values.shape[0]))
        assert free_energy(w, values, log_probs, beta).item() >= f_star - 1e-12
    # the bound is tight at the minimum: the action terms sum to −log p(a | s)
    log_p_a = torch.logsumexp(beta * values + log_probs, -1) - torch.logsumexp(beta * values, -1)
    assert f_star == pytest.approx(-log_p_a.mean().item(), abs=1e-10)


def test_mixture_closed_form_is_a_stationary_point():
    values, log_probs = problem(seed=1)
    logits = (1.0 * values + log_probs).clone().requires_grad_(True)
    f = free_energy(torch.softmax(logits, -1), values, log_probs, 1.0)
    (grad,) = torch.autograd.grad(f, logits)
    assert grad.abs().max().item() < 1e-10
    perturbed = (logits.detach() + 0.1 * torch.randn_like(logits)).softmax(-1)
    assert free_energy(perturbed, values, log_probs, 1.0) > f


def test_all_six_terms_present_and_finite():
    values, log_probs = problem()
    w = mixture_weights(values, log_probs)
    for terms in (mixture_terms(w, values, log_probs),
                  point_mass_terms(values[:, 0], log_probs[:, 0], -log_probs[:, 0],
                                   entropy_coef=0.2)):
        assert tuple(terms) == TERMS
        assert all(torch.isfinite(t) for t in terms.values())
    # a weight of exactly zero still gives a finite entropy term
    w0 = torch.zeros_like(w)
    w0[:, 0] = 1.0
    assert torch.isfinite(total(mixture_terms(w0, values, log_probs)))


def test_squashed_gaussian_density_integrates_to_one_and_matches_sampling():
    torch.manual_seed(0)
    pi = SquashedGaussianPolicy(3, 1, low=[-2.0], high=[2.0], hidden=(16,)).double()
    z = torch.randn(1, 3, dtype=torch.float64)
    a = torch.linspace(-2 + 1e-5, 2 - 1e-5, 200_001, dtype=torch.float64)[:, None]
    density = pi.log_prob(z.expand(len(a), 3), a).exp()
    assert torch.trapezoid(density, a[:, 0]).item() == pytest.approx(1.0, abs=2e-3)
    sample, logp = pi.sample(z.expand(64, 3))
    assert (sample.abs() <= 2).all()
    assert torch.allclose(pi.log_prob(z.expand(64, 3), sample), logp, atol=1e-5)


def test_policies_shapes_and_state_check():
    z = torch.randn(7, 4)
    cat = CategoricalPolicy(4, 3, hidden=(8,))
    a, logp = cat.sample(z)
    assert a.shape == (7,) and logp.shape == (7,) and cat.mode(z).shape == (7,)
    gauss = GaussianPolicy(4, 2, hidden=(8,))
    assert gauss.sample(z)[0].shape == (7, 2) and gauss.entropy(z).shape == (7,)
    det = DeterministicPolicy(4, 2, low=[-1, -3], high=[1, 3], hidden=(8,))
    out = det(z)
    assert out.shape == (7, 2) and (out[:, 1].abs() <= 3).all()
    with pytest.raises(ValueError, match="dimension 4"):
        cat.sample(torch.randn(7, 5))
    with pytest.raises(ValueError, match="bounded"):
        SquashedGaussianPolicy(4, 1, low=[-np.inf], high=[np.inf])


def test_mixture_policy_gradient_is_responsibility_weighted_drift():
    from cortex.policy import MixturePolicy

    torch.manual_seed(0)
    mix = MixturePolicy([CategoricalPolicy(3, 4, hidden=(8,)) for _ in range(3)])
    z, a = torch.randn(6, 3), torch.randint(0, 4, (6,))
    values = torch.randn(6, 3)
    terms, w = mix.free_energy(z, a, values, beta=2.0)
    assert torch.allclose(w.sum(-1), torch.ones(6))
    total(terms).backward()
    for k, pi in enumerate(mix.components):
        expected = torch.autograd.grad(-(w[:, k] * pi.log_prob(z, a)).mean(), list(pi.parameters()))
        for p, e in zip(pi.parameters(), expected):
            assert torch.allclose(p.grad, e, atol=1e-6)
    actions, k = mix.sample(z, values)
    assert actions.shape == (6,) and k.shape == (6,)
