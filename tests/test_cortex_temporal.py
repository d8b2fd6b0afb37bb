"""Temporal, active PC: window gradients, the tPC fixed point, efference copies, errors."""
from __future__ import annotations

import networkx as nx
import pytest
import torch

from cortex import InferenceConfig, PCModel, from_networkx, learn_sequences, rollout, run_sequence
from cortex.temporal import _Window
from tests.helpers_cortex import random_dag


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("width", [1, 3])
def test_window_gradient_equals_autograd(seed: int, width: int, device) -> None:
    """Smoothing: dF_window/dz includes the error each state causes one step later."""
    gen = torch.Generator().manual_seed(seed)
    spec = from_networkx(random_dag(seed, temporal=True, action_dim=2), action_dim=2, temporal=True)
    model = PCModel(spec, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    model.to(device)
    batch = 4

    def state(n: int):
        return [torch.randn(len(g.names), n, g.dim, generator=gen, dtype=torch.float64).to(device) for g in model.groups]

    z, before = state(width * batch), state(batch)
    actions = torch.randn(width * batch, 2, generator=gen, dtype=torch.float64).to(device)
    window = _Window(model, before, actions, width, batch)
    explicit = window(z).grad

    z_ad = [t.clone().requires_grad_(True) for t in z]
    past = [torch.cat([b, t[:, :-batch]], dim=1) if width > 1 else b for b, t in zip(before, z_ad)]
    f = model.free_energy(z_ad, model.drive(width * batch, past, actions)).sum()
    reference = torch.autograd.grad(f, z_ad)
    for e, r in zip(explicit, reference):
        assert torch.allclose(e, r, rtol=1e-9, atol=1e-10)

    # The M-step on the window: local rule vs autograd of the batch-mean window energy.
    model.zero_grad()
    model.accumulate_grads(z, window.drive, past=window.past, action=actions)
    past_fixed = [p.detach() for p in past]
    f_theta = model.free_energy(z, model.drive(width * batch, past_fixed, actions)).mean()
    for name, p in model.named_parameters():
        g = torch.autograd.grad(f_theta, p, allow_unused=True, retain_graph=True)[0]
        g = torch.zeros_like(p) if g is None else g
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-10), name


def _linear_gaussian(a, b, c, q, r, dtype=torch.float64) -> PCModel:
    g = nx.DiGraph()
    g.add_node("s", dim=a.shape[0], precision=1.0)
    g.add_node("y", dim=c.shape[0], kind="observed")
    g.add_edge("s", "y")
    model = PCModel(g, temporal=True, action_dim=b.shape[1], dtype=dtype)
    with torch.no_grad():
        model.temporal_weight("s").copy_(a)
        model.action_weight("s").copy_(b)
        model.weight("s", "y").copy_(c)
        for name, var in (("s", q), ("y", r)):
            k, i = model.slot[name]
            model.log_precision[k][i] = -torch.log(var)
    return model


def test_filter_reaches_the_tpc_fixed_point() -> None:
    """With the past fixed, each step's posterior mean is the closed-form quadratic minimiser."""
    gen = torch.Generator().manual_seed(0)
    a = torch.tensor([[1.0, 0.1], [0.0, 0.9]], dtype=torch.float64)
    b = torch.tensor([[0.0], [0.5]], dtype=torch.float64)
    c = torch.tensor([[1.0, 0.0], [0.3, 1.0], [0.0, 2.0]], dtype=torch.float64)
    q = torch.tensor([0.5, 0.2], dtype=torch.float64)
    r = torch.tensor([0.3, 0.4, 1.0], dtype=torch.float64)
    model = _linear_gaussian(a, b, c, q, r)
    steps, batch = 8, 3
    y = torch.randn(steps, batch, 3, generator=gen, dtype=torch.float64)
    u = torch.randn(steps, batch, 1, generator=gen, dtype=torch.float64)
    traj = run_sequence(model, {"y": y}, u, InferenceConfig(steps=300, lr=0.05))

    precision = torch.diag(1 / q) + c.T @ torch.diag(1 / r) @ c
    prev = torch.zeros(batch, 2, dtype=torch.float64)
    for t in range(steps):
        action = torch.zeros(batch, 1, dtype=torch.float64) if t == 0 else u[t - 1]
        prior = prev @ a.T + action @ b.T
        rhs = prior / q + (y[t] / r) @ c
        expected = torch.linalg.solve(precision, rhs.T).T
        assert torch.allclose(traj.z["s"][t], expected, atol=1e-8), t
        prev = traj.z["s"][t]


def _driven_system(gen, episodes: int, steps: int):
    """s' = A s + B a + noise with a strong action drive; y = C s + noise."""
    a = torch.tensor([[0.9, 0.2], [-0.2, 0.9]])
    b = torch.tensor([[1.0], [-0.5]])
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    u = torch.randn(steps, episodes, 1, generator=gen)
    s = torch.zeros(episodes, 2)
    ys = []
    for t in range(steps):
        prev_u = torch.zeros(episodes, 1) if t == 0 else u[t - 1]
        s = s @ a.T + prev_u @ b.T + 0.05 * torch.randn(episodes, 2, generator=gen)
        ys.append(s @ c.T + 0.05 * torch.randn(episodes, 3, generator=gen))
    return torch.stack(ys), u


def test_efference_copy_improves_prediction() -> None:
    """A model trained with actions predicts the next observation better than with them zeroed."""
    gen = torch.Generator().manual_seed(0)
    g = nx.DiGraph()
    g.add_node("s", dim=2)
    g.add_node("y", dim=3, kind="observed")
    g.add_edge("s", "y")
    model = PCModel(g, temporal=True, action_dim=1, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    cfg = InferenceConfig(steps=15, lr=0.2)
    for i in range(25):
        y, u = _driven_system(gen, episodes=32, steps=30)
        if i % 2:  # online steps and whole-sequence steps (as from replay) learn the same model
            run_sequence(model, {"y": y}, u, cfg, optimizer=opt)
        else:
            learn_sequences(model, opt, {"y": y}, u, cfg)

    y, u = _driven_system(gen, episodes=64, steps=30)
    traj = run_sequence(model, {"y": y[:20]}, u[:20], cfg)
    with_action = rollout(model, traj.final, u[19:20])["y"][0]
    without = rollout(model, traj.final, torch.zeros_like(u[19:20]))["y"][0]
    err_with = (with_action - y[20]).pow(2).mean()
    err_without = (without - y[20]).pow(2).mean()
    assert err_with < 0.5 * err_without, (err_with, err_without)


def test_action_shape_errors_are_clear() -> None:
    g = nx.DiGraph()
    g.add_node("s", dim=2)
    g.add_node("y", dim=3, kind="observed")
    g.add_edge("s", "y")
    model = PCModel(g, temporal=True, action_dim=2)
    y = torch.zeros(5, 4, 3)
    with pytest.raises(ValueError, match=r"actions have shape \(5, 4, 3\); expected \(T=5, B=4, action_dim=2\)"):
        run_sequence(model, {"y": y}, torch.zeros(5, 4, 3))
    with pytest.raises(ValueError, match=r"node 'y' must be \(T, B, d\)"):
        run_sequence(model, {"y": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match=r"expected \(n, B=4, action_dim=2\)"):
        rollout(model, model.zeros(4), torch.zeros(3, 4, 1))
    static = PCModel(g)
    with pytest.raises(ValueError, match="action_dim=0"):
        run_sequence(static, {"y": y}, torch.zeros(5, 4, 1))


def test_missing_observations_follow_the_prior() -> None:
    """With every observation withheld, inference leaves each state at its prior: imagination."""
    gen = torch.Generator().manual_seed(2)
    g = nx.DiGraph()
    g.add_node("s", dim=3, activation="tanh")
    g.add_node("y", dim=2, kind="observed")
    g.add_edge("s", "y")
    model = PCModel(g, temporal=True, action_dim=1, generator=gen, dtype=torch.float64)
    steps, batch = 6, 4
    y = torch.randn(steps, batch, 2, generator=gen, dtype=torch.float64)
    u = torch.randn(steps, batch, 1, generator=gen, dtype=torch.float64)
    traj = run_sequence(model, {"y": y}, u, InferenceConfig(steps=10, lr=0.1),
                        missing=torch.ones(steps, batch, dtype=torch.bool))
    prior = rollout(model, model.zeros(batch), torch.cat([torch.zeros_like(u[:1]), u[:-1]]))
    assert torch.allclose(traj.z["s"], prior["s"]) and torch.allclose(traj.z["y"], prior["y"])
    # Withholding some steps only changes those steps and what follows them.
    some = torch.zeros(steps, batch, dtype=torch.bool)
    some[3] = True
    full = run_sequence(model, {"y": y}, u, InferenceConfig(steps=10, lr=0.1))
    part = run_sequence(model, {"y": y}, u, InferenceConfig(steps=10, lr=0.1), missing=some)
    assert torch.equal(full.z["s"][:3], part.z["s"][:3])
    assert not torch.allclose(full.z["s"][3], part.z["s"][3])
    with pytest.raises(ValueError, match=r"missing must be a bool tensor of shape \(T=6, B=4\)"):
        run_sequence(model, {"y": y}, u, missing=torch.ones(6, 3, dtype=torch.bool))
