"""The local rules of DESIGN.md §3 equal autograd on the free energy."""
from __future__ import annotations

import pytest
import torch

from cortex import PCModel, from_networkx
from tests.helpers_cortex import random_dag


def _random_state(model: PCModel, batch: int, gen: torch.Generator):
    return [torch.randn(len(g.names), batch, g.dim, generator=gen, dtype=model.dtype) for g in model.groups]


def _perturb_parameters(model: PCModel, gen: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temporal", [False, True])
def test_local_gradients_equal_autograd(seed: int, temporal: bool, device) -> None:
    gen = torch.Generator().manual_seed(seed)
    action_dim = 2 if temporal else 0
    spec = from_networkx(random_dag(seed, temporal=temporal, action_dim=action_dim),
                         action_dim=action_dim, temporal=temporal)
    assert len(spec.nodes) >= 8
    model = PCModel(spec, generator=gen, dtype=torch.float64)
    _perturb_parameters(model, gen)
    model.to(device)
    batch = 5
    z = [t.to(device) for t in _random_state(model, batch, gen)]
    past = [t.to(device) for t in _random_state(model, batch, gen)] if temporal else None
    action = torch.randn(batch, action_dim, generator=gen, dtype=torch.float64).to(device) if temporal else None

    # Autograd on F: states per sample (sum over batch), parameters on the batch mean.
    z_ad = [t.clone().requires_grad_(True) for t in z]
    f = model.free_energy(z_ad, model.drive(batch, past, action))
    grads_z = torch.autograd.grad(f.sum(), z_ad, retain_graph=True)
    grads_theta = torch.autograd.grad(f.mean(), list(model.parameters()), allow_unused=True)

    ev = model.accumulate_grads(z, past=past, action=action)
    assert torch.allclose(ev.total(), f.detach(), rtol=1e-10, atol=1e-10)
    for explicit, reference in zip(ev.grad, grads_z):
        assert torch.allclose(explicit, reference, rtol=1e-9, atol=1e-10)
    names = [n for n, _ in model.named_parameters()]
    for name, p, reference in zip(names, model.parameters(), grads_theta):
        reference = torch.zeros_like(p) if reference is None else reference
        # Fixed precisions get no gradient; everything else must match autograd exactly.
        assert p.grad is not None, name
        assert torch.allclose(p.grad, reference, rtol=1e-9, atol=1e-10), name


def test_fixed_precision_gets_no_gradient() -> None:
    import networkx as nx

    g = nx.DiGraph()
    g.add_node("s", dim=2)
    g.add_node("x", dim=3, kind="observed", learn_precision=False)
    g.add_edge("s", "x")
    model = PCModel(g)
    z = model.to_grouped({"s": torch.randn(4, 2), "x": torch.randn(4, 3)}, 4)
    model.accumulate_grads(z)
    k, i = model.slot["x"]
    assert torch.count_nonzero(model.log_precision[k].grad[i]) == 0
    assert torch.count_nonzero(model.weight("s", "x")) > 0


def test_learned_parameters_leave_out_only_dead_ones() -> None:
    """learned_parameters() leaves out exactly parameters whose rule gradient is zero (an
    input column's bias, precisions no column learns), so Adam over them equals Adam over all."""
    from cortex import chain

    for graph in (random_dag(3), chain({"img": 5, "h": 4, "y": 3}, top_kind="input")):
        gen = torch.Generator().manual_seed(0)
        models = [PCModel(from_networkx(graph), generator=torch.Generator().manual_seed(1)) for _ in range(2)]
        z = _random_state(models[0], 6, gen)
        kept = {id(p) for p in models[0].learned_parameters()}
        optimizers = [torch.optim.Adam(models[0].learned_parameters(), lr=0.1),
                      torch.optim.Adam(models[1].parameters(), lr=0.1)]
        for model, optimizer in zip(models, optimizers):
            model.accumulate_grads([t.clone() for t in z])
            optimizer.step()
        left_out = [p for p in models[0].parameters() if id(p) not in kept]
        assert all(torch.count_nonzero(p.grad) == 0 for p in left_out)
        assert all(torch.equal(a, b) for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert len(left_out) == 4  # the chain: the input's bias and its three groups' fixed precisions
