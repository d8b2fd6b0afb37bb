"""The Laplace (Gaussian) posterior of a temporal column: exactness on a linear-Gaussian model,
the EM step's local gradients, the closed-form precisions, and clear errors."""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from cortex import PCModel
from cortex.laplace import expected_free_energy, laplace_filter, learn_sequences_laplace, mean_errors

F64 = torch.float64


def column_model(seed: int, *, activation: str = "tanh", observed=(("x", 2),), dim: int = 3,
                 action_dim: int = 1) -> PCModel:
    g = nx.DiGraph()
    g.add_node("s", dim=dim, activation=activation, precision=2.0, learn_precision=True)
    for name, width in observed:
        g.add_node(name, dim=width, kind="observed", precision=4.0, learn_precision=True)
        g.add_edge("s", name)
    gen = torch.Generator().manual_seed(seed)
    model = PCModel(g, temporal=True, action_dim=action_dim, generator=gen, dtype=F64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=F64))
    return model


def sequences(seed: int, steps: int, batch: int, widths=(2,), action_dim: int = 1):
    gen = torch.Generator().manual_seed(100 + seed)
    obs = [torch.randn(steps, batch, w, generator=gen, dtype=F64) for w in widths]
    return obs, torch.randn(steps, batch, action_dim, generator=gen, dtype=F64)


def brute_force_posterior(model: PCModel, x: torch.Tensor, a: torch.Tensor, upto: int, variance: float):
    """Mean and covariance of (s_{-1}, s_0, ..., s_upto) given x_0..x_upto, by solving the joint
    Gaussian (linear model) in one dense system: one sequence, x (T, d_x), a (T, 1)."""
    U, B = model.temporal_weight("s"), model.action_weight("s")
    W, c, b = model.weight("s", "x"), model.bias[model.slot["x"][0]][model.slot["x"][1]], model.bias[model.slot["s"][0]][model.slot["s"][1]]
    pi_s = model.log_precision[model.slot["s"][0]][model.slot["s"][1]].exp()
    pi_o = model.log_precision[model.slot["x"][0]][model.slot["x"][1]].exp()
    d, n = U.shape[0], upto + 2
    info = torch.zeros(n * d, n * d, dtype=F64)
    vec = torch.zeros(n * d, dtype=F64)

    def add(rows: dict[int, torch.Tensor], target: torch.Tensor, precision: torch.Tensor) -> None:
        # residual sum_k M_k s_k - target, with diagonal precision
        width = next(iter(rows.values())).shape[0]
        M = torch.zeros(width, n * d, dtype=F64)
        for k, block in rows.items():
            M[:, k * d:(k + 1) * d] = block
        info.add_(M.T @ (precision.unsqueeze(-1) * M))
        vec.add_(M.T @ (precision * target))

    add({0: torch.eye(d, dtype=F64)}, torch.zeros(d, dtype=F64), torch.full((d,), 1 / variance, dtype=F64))
    for t in range(upto + 1):
        drive = b + (B @ a[t - 1] if t > 0 else 0)
        add({t + 1: torch.eye(d, dtype=F64), t: -U}, drive, pi_s)
        add({t + 1: W}, x[t] - c, pi_o)
    cov = torch.linalg.inv(info)
    return (cov @ vec).view(n, d), cov


@pytest.mark.parametrize("seed", range(3))
def test_linear_gaussian_filter_and_smoother_are_exact(seed: int) -> None:
    """On a linear-Gaussian column the Laplace filter is the Kalman filter and the smoother the
    exact posterior: compare with the joint Gaussian solved densely."""
    with torch.no_grad():
        model = column_model(seed, activation="identity")
    (x,), a = sequences(seed, steps=6, batch=2)
    variance = 0.7
    filt = laplace_filter(model, {"x": x}, a, initial_variance=variance)
    smooth = laplace_filter(model, {"x": x}, a, smooth=True, initial_variance=variance)
    d = 3
    with torch.no_grad():
        for j in range(2):
            for t in range(6):
                mean, cov = brute_force_posterior(model, x[:, j], a[:, j], t, variance)
                assert torch.allclose(filt.mean[t, j], mean[t + 1], atol=1e-9)
                assert torch.allclose(filt.cov[t, j], cov[(t + 1) * d:(t + 2) * d, (t + 1) * d:(t + 2) * d], atol=1e-9)
            mean, cov = brute_force_posterior(model, x[:, j], a[:, j], 5, variance)
            for t in range(6):
                block = slice((t + 1) * d, (t + 2) * d)
                assert torch.allclose(smooth.mean[t, j], mean[t + 1], atol=1e-9)
                assert torch.allclose(smooth.cov[t, j], cov[block, block], atol=1e-9)
                assert torch.allclose(smooth.cross[t, j], cov[block, t * d:(t + 1) * d], atol=1e-9)
    assert torch.allclose(filt.mean[-1], smooth.mean[-1])


def test_log_evidence_is_the_marginal_likelihood() -> None:
    """Linear-Gaussian: the filter's summed one-step predictive densities equal log N(x; m, C) of
    the observations' joint Gaussian, built here by sampling-free moment propagation."""
    with torch.no_grad():
        model = column_model(5, activation="identity")
        (x,), a = sequences(5, steps=4, batch=1)
        U, B = model.temporal_weight("s"), model.action_weight("s")
        W = model.weight("s", "x")
        c = model.bias[model.slot["x"][0]][model.slot["x"][1]]
        b = model.bias[model.slot["s"][0]][model.slot["s"][1]]
        q_s = torch.diag(model.log_precision[model.slot["s"][0]][model.slot["s"][1]].exp().reciprocal())
        r_o = torch.diag(model.log_precision[model.slot["x"][0]][model.slot["x"][1]].exp().reciprocal())
        # s_t = L_t (s_{-1}, w_0..w_t) + m_t: stack the linear maps, then x's joint moments.
        d, steps = 3, 4
        maps, means = [], []
        state_map = torch.cat([torch.eye(d, dtype=F64), torch.zeros(d, steps * d, dtype=F64)], 1)
        state_mean = torch.zeros(d, dtype=F64)
        noise_cov = torch.block_diag(0.5 * torch.eye(d, dtype=F64), *[q_s] * steps)
        for t in range(steps):
            inject = torch.zeros(d, (steps + 1) * d, dtype=F64)
            inject[:, (t + 1) * d:(t + 2) * d] = torch.eye(d, dtype=F64)
            state_map = U @ state_map + inject
            state_mean = U @ state_mean + b + (B @ a[t - 1, 0] if t > 0 else 0)
            maps.append(W @ state_map), means.append(W @ state_mean + c)
        L, m = torch.cat(maps), torch.cat(means)
        cov = L @ noise_cov @ L.T + torch.block_diag(*[r_o] * steps)
        reference = torch.distributions.MultivariateNormal(m, cov).log_prob(x[:, 0].reshape(-1))
        path = laplace_filter(model, {"x": x}, a, initial_variance=0.5)
    assert torch.allclose(path.log_evidence[0], reference, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_em_gradients_equal_autograd_of_expected_free_energy(seed: int) -> None:
    """The M-step's explicit local gradients (with the covariance terms) equal autograd on E_q[F],
    for a nonlinear column, an action input and two observed columns."""
    model = column_model(seed, observed=(("x", 2), ("y", 3)))
    (x, y), a = sequences(seed, steps=5, batch=3, widths=(2, 3))
    obs = {"x": x, "y": y}
    path = laplace_filter(model, obs, a, smooth=True)
    model.zero_grad()
    expected_free_energy(model, path, obs, a).backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if "log_precision" not in name}
    learn_sequences_laplace(model, torch.optim.SGD(model.parameters(), lr=0.0), obs, a)
    for name, p in model.named_parameters():
        if "log_precision" in name:
            continue
        assert reference[name].abs().max() > 0
        assert torch.allclose(p.grad, reference[name], rtol=1e-9, atol=1e-12), name


def test_closed_form_precision_is_the_m_step() -> None:
    """With precision_rate=1 the new precisions make dE_q[F]/dlog Pi zero on the same path."""
    model = column_model(3)
    (x,), a = sequences(3, steps=8, batch=4)
    before = [lp.detach().clone() for lp in model.log_precision]
    path = learn_sequences_laplace(model, torch.optim.SGD(model.parameters(), lr=0.0), {"x": x}, a,
                                   precision_rate=1.0)
    assert any(not torch.allclose(b, lp) for b, lp in zip(before, model.log_precision))
    model.zero_grad()
    expected_free_energy(model, path, {"x": x}, a).backward()
    for lp in model.log_precision:
        assert lp.grad.abs().max() < 1e-10


def test_em_raises_the_evidence_on_linear_gaussian_data() -> None:
    """EM steps from a perturbed model raise log p(x) of held-out sequences drawn from the true
    linear-Gaussian column (a learning test that fails if the M-step pointed the wrong way)."""
    torch.manual_seed(0)
    with torch.no_grad():
        truth = column_model(7, activation="identity")
        gen = torch.Generator().manual_seed(8)
        steps, batch = 30, 64

        def draw():
            U, B = truth.temporal_weight("s"), truth.action_weight("s")
            W = truth.weight("s", "x")
            a = torch.randn(steps, batch, 1, generator=gen, dtype=F64)
            s = torch.randn(batch, 3, generator=gen, dtype=F64)
            xs = []
            for t in range(steps):
                s = s @ U.T + (a[t - 1] @ B.T if t > 0 else 0) + 0.7 * torch.randn(batch, 3, generator=gen, dtype=F64)
                xs.append(s @ W.T + 0.5 * torch.randn(batch, 2, generator=gen, dtype=F64))
            return torch.stack(xs), a

        train, test = draw(), draw()
        model = column_model(9, activation="identity")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    start = laplace_filter(model, {"x": test[0]}, test[1]).log_evidence.mean()
    for _ in range(40):
        learn_sequences_laplace(model, opt, {"x": train[0]}, train[1])
    end = laplace_filter(model, {"x": test[0]}, test[1]).log_evidence.mean()
    best = laplace_filter(truth, {"x": test[0]}, test[1]).log_evidence.mean()
    assert end > start + 0.5 * (best - start)


def test_mean_errors_shapes() -> None:
    model = column_model(0, observed=(("x", 2), ("y", 3)))
    (x, y), a = sequences(0, steps=5, batch=3, widths=(2, 3))
    path = laplace_filter(model, {"x": x, "y": y}, a, smooth=True)
    errors = mean_errors(model, path, {"x": x, "y": y}, a)
    assert errors["s"].shape == (4, 3, 3) and errors["x"].shape == (5, 3, 2) and errors["y"].shape == (5, 3, 3)


def test_unsupported_graphs_and_data_fail_by_name() -> None:
    g = nx.DiGraph()
    g.add_node("top", dim=2)
    g.add_node("s", dim=3)
    g.add_node("x", dim=2, kind="observed")
    g.add_edges_from([("top", "s"), ("s", "x")])
    two = PCModel(g, temporal=True)
    x = torch.zeros(4, 2, 2)
    with pytest.raises(ValueError, match="one hidden column"):
        laplace_filter(two, {"x": x})
    static = nx.DiGraph()
    static.add_node("s", dim=3)
    static.add_node("x", dim=2, kind="observed")
    static.add_edge("s", "x")
    # a column without U or B forgets the past: each step's posterior depends on x_t alone
    static_model = PCModel(static, generator=torch.Generator().manual_seed(0), dtype=F64)
    xs = torch.randn(4, 2, 2, dtype=F64)
    swapped = xs.clone()
    swapped[:2] = torch.randn(2, 2, 2, dtype=F64)
    assert torch.allclose(laplace_filter(static_model, {"x": xs}).mean[2:],
                          laplace_filter(static_model, {"x": swapped}).mean[2:])
    model = column_model(0, observed=(("x", 2), ("y", 3))).float()
    with pytest.raises(ValueError, match="'y'"):
        laplace_filter(model, {"x": x}, torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="smoothed"):
        expected_free_energy(model, laplace_filter(model, {"x": x, "y": torch.zeros(4, 2, 3)}, torch.zeros(4, 2, 1)),
                             {"x": x, "y": torch.zeros(4, 2, 3)}, torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="initial_variance"):
        laplace_filter(model, {"x": x, "y": torch.zeros(4, 2, 3)}, torch.zeros(4, 2, 1), initial_variance=0.0)
    with pytest.raises(ValueError, match="precision_rate"):
        learn_sequences_laplace(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                {"x": x, "y": torch.zeros(4, 2, 3)}, torch.zeros(4, 2, 1), precision_rate=0.0)
    assert math.isfinite(laplace_filter(model, {"x": x, "y": torch.zeros(4, 2, 3)}, torch.zeros(4, 2, 1))
                         .log_evidence.sum().item())


