"""Inference: closed-form posteriors, monotone free energy, supervised read-out, errors."""
from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from cortex import InferenceConfig, InferenceDivergedError, PCModel, Recognizer, chain, infer
from tests.helpers_cortex import diverging_model, random_dag


def test_linear_gaussian_posterior_mean(device) -> None:
    """s ~ N(b_s, 1/pi_s), x | s ~ N(W s + b_x, 1/pi_x): the fixed point is the exact posterior mean."""
    g = nx.DiGraph()
    g.add_node("s", dim=2, precision=0.5)
    g.add_node("x", dim=3, kind="observed", precision=4.0)
    g.add_edge("s", "x")
    gen = torch.Generator().manual_seed(1)
    model = PCModel(g, generator=gen, dtype=torch.float64).to(device)
    with torch.no_grad():
        model.bias[model.slot["s"][0]][model.slot["s"][1]] = torch.tensor([0.3, -0.7])
        model.bias[model.slot["x"][0]][model.slot["x"][1]] = torch.tensor([0.1, 0.0, -0.2])
    w = model.weight("s", "x").detach()
    b_s = torch.tensor([0.3, -0.7], dtype=torch.float64, device=device)
    b_x = torch.tensor([0.1, 0.0, -0.2], dtype=torch.float64, device=device)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64).to(device)

    beliefs = infer(model, {"x": x}, InferenceConfig(steps=400, lr=0.1, init="zeros"))

    precision = 0.5 * torch.eye(2, dtype=torch.float64, device=device) + 4.0 * w.T @ w
    rhs = 0.5 * b_s + 4.0 * (x - b_x) @ w
    expected = torch.linalg.solve(precision, rhs.T).T
    assert torch.allclose(beliefs["s"], expected, atol=1e-8)
    assert torch.equal(beliefs["x"], x)  # clamped


@pytest.mark.parametrize("seed", range(4))
def test_free_energy_never_increases(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    model = PCModel(random_dag(seed), generator=gen, dtype=torch.float64)
    data = {n.name: torch.randn(8, n.dim, generator=gen, dtype=torch.float64)
            for n in model.spec.nodes if n.kind != "hidden"}
    beliefs = infer(model, data, InferenceConfig(steps=60, lr=0.02))
    steps = beliefs.trace[1:] - beliefs.trace[:-1]
    assert beliefs.trace[-1] < beliefs.trace[0]
    assert (steps <= 1e-12).all(), steps.max()


def test_momentum_and_early_stop() -> None:
    gen = torch.Generator().manual_seed(0)
    model = PCModel(chain({"x": 8, "h": 6, "y": 3}, top_kind="input"), generator=gen)
    data = {"x": torch.randn(4, 8, generator=gen), "y": torch.randn(4, 3, generator=gen)}
    plain = infer(model, data, InferenceConfig(steps=50, lr=0.05))
    heavy = infer(model, data, InferenceConfig(steps=50, lr=0.05, momentum=0.5))
    assert heavy.trace[-1] <= plain.trace[-1] + 1e-5
    early = infer(model, data, InferenceConfig(steps=500, lr=0.05, tol=1e-4))
    assert early.steps < 500
    assert early.trace[-1] <= early.trace[0]


def test_free_label_reads_out_the_forward_pass() -> None:
    """With the label free and the forward initialisation, every error is zero at once."""
    gen = torch.Generator().manual_seed(0)
    model = PCModel(chain({"x": 8, "h": 6, "y": 3}, top_kind="input"), generator=gen)
    x = torch.randn(5, 8, generator=gen)
    beliefs = infer(model, {"x": x}, InferenceConfig(steps=10, lr=0.1))
    h = x @ model.weight("x", "h").T  # g_h = identity; f_h = tanh acts where h predicts y
    expected = torch.tanh(h) @ model.weight("h", "y").T
    assert torch.allclose(beliefs["y"], expected.detach(), atol=1e-5)
    assert torch.allclose(beliefs.trace, beliefs.trace[0].expand_as(beliefs.trace))


def test_amortised_init_learns_the_converged_state() -> None:
    gen = torch.Generator().manual_seed(0)
    g = chain({"top": 4, "mid": 8, "x": 16}, bottom_kind="observed")
    model = PCModel(g, generator=gen)
    recognizer = Recognizer(model, generator=gen)
    opt = torch.optim.Adam(recognizer.parameters(), lr=1e-2)
    x = torch.randn(64, 16, generator=gen)
    cfg = InferenceConfig(steps=100, lr=0.1, init="zeros")
    converged = infer(model, {"x": x}, cfg)
    for _ in range(300):
        opt.zero_grad()
        recognizer.loss({n: converged[n] for n in model.slot}).backward()
        opt.step()
    short = InferenceConfig(steps=3, lr=0.1)
    cold = infer(model, {"x": x}, short)
    warm = infer(model, {"x": x}, InferenceConfig(steps=3, lr=0.1, init="amortised"), recognizer=recognizer)
    assert warm.trace[-1] < cold.trace[-1]
    assert warm.trace[-1] - converged.trace[-1] < 0.2 * (cold.trace[-1] - converged.trace[-1])


def test_amortised_without_recogniser_is_a_clear_error() -> None:
    model = PCModel(chain({"top": 2, "x": 3}))
    with pytest.raises(ValueError, match="recogni"):
        infer(model, {"x": torch.zeros(1, 3)}, InferenceConfig(init="amortised"))


def test_divergence_names_node_and_step() -> None:
    model = diverging_model()
    with pytest.raises(InferenceDivergedError, match=r"node 's' on inference step \d+"):
        infer(model, {"x": torch.ones(3, 2) * 100}, InferenceConfig(steps=200, lr=1.0, init="zeros"))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"x": torch.zeros(4, 7)}, r"node 'x' has shape \(4, 7\); expected \(batch, 8\)"),
        ({"x": torch.zeros(4, 8), "y": torch.zeros(3, 3)}, "node 'y' has batch size 3"),
        ({"x": torch.zeros(8)}, "node 'x' has shape"),
        ({"x": torch.zeros(4, 8), "nope": torch.zeros(4, 1)}, "unknown node 'nope'"),
        ({"y": torch.zeros(4, 3)}, "input node 'x' needs data"),
        ({"x": torch.full((4, 8), math.nan)}, "node 'x' contains NaN"),
    ],
)
def test_bad_data_names_the_node(data, message) -> None:
    model = PCModel(chain({"x": 8, "h": 6, "y": 3}, top_kind="input"))
    with pytest.raises(ValueError, match=message):
        infer(model, data)
