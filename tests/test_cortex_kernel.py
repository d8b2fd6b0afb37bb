"""The grouped inference kernel (and its compiled form) equals the per-node computation."""
from __future__ import annotations

import warnings

import networkx as nx
import pytest
import torch

from cortex import InferenceConfig, PCModel, from_networkx, get_activation, infer, sheet
from cortex.inference import InferenceDivergedError, descend, initial_state
from cortex.model import Wavefront
from tests.helpers_cortex import diverging_model, random_dag


def per_node_descent(model: PCModel, data: dict, start: dict, steps: int, lr: float):
    """K steps of z <- z - lr dF/dz written node by node from DESIGN.md §3: the reference."""
    spec = model.spec
    z = {**{n: v.clone() for n, v in start.items()}, **data}
    param = lambda tensors, n: tensors[model.slot[n][0]][model.slot[n][1]].detach()
    trace = []

    def local(z):
        a, eps, energy = {}, {}, 0.0
        for node in spec.nodes:
            if not node.has_energy:
                continue
            n = node.name
            a[n] = param(model.bias, n) + sum(
                get_activation(spec.node(p).activation).fn(z[p]) @ model.weight(p, n).detach().T
                for p in spec.parents(n))
            eps[n] = z[n] - get_activation(node.output).fn(a[n])
            prec = param(model.log_precision, n).exp()
            energy = energy + 0.5 * (prec * eps[n] ** 2).sum(1) + 0.5 * (
                node.dim * torch.log(torch.tensor(2 * torch.pi, dtype=z[n].dtype)) - param(model.log_precision, n).sum())
        return a, eps, energy

    for it in range(steps + 1):
        a, eps, energy = local(z)
        trace.append(energy.mean())
        if it == steps:
            break
        grad = {}
        for node in spec.nodes:
            n = node.name
            if n in data:
                continue
            g = param(model.log_precision, n).exp() * eps[n] if node.has_energy else torch.zeros_like(z[n])
            for c in spec.children(n):
                out = get_activation(spec.node(c).output)
                h = out.grad(a[c]) * param(model.log_precision, c).exp() * eps[c]
                g = g - get_activation(node.activation).grad(z[n]) * (h @ model.weight(n, c).detach())
            grad[n] = g
        for n, g in grad.items():
            z[n] = z[n] - lr * g
    return z, torch.stack(trace)


def _clamp_and_start(model: PCModel, batch: int, gen: torch.Generator, clamped: list[str]):
    rand = lambda n: torch.randn(batch, model.spec.node(n).dim, generator=gen, dtype=model.dtype)
    data = {n: rand(n) for n in clamped}
    start = {n: rand(n) for n in model.spec.names if n not in data}
    return data, start


def _assert_kernel_equals_reference(model: PCModel, data: dict, start: dict, steps: int, lr: float) -> None:
    beliefs = infer(model, data, InferenceConfig(steps=steps, lr=lr, init="zeros"), start=start)
    z, trace = per_node_descent(model, data, start, steps, lr)
    for n in model.spec.names:
        assert torch.allclose(beliefs[n], z[n], rtol=1e-9, atol=1e-10), n
    assert torch.allclose(beliefs.trace, trace, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_grouped_inference_equals_per_node_on_random_dags(seed: int) -> None:
    """Mixed column sizes, activations and output nonlinearities, several edges into one child
    within a group, an input column, precisions away from 1: the batched kernel's states and
    free-energy trace equal the node-by-node computation."""
    gen = torch.Generator().manual_seed(seed)
    model = PCModel(from_networkx(random_dag(seed, n_nodes=14)), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    assert len({g.dim for g in model.groups}) > 1
    observed = [n.name for n in model.spec.nodes if n.kind == "observed"]
    _assert_kernel_equals_reference(model, *_clamp_and_start(model, 6, gen, ["inp", *observed[:2]]), 12, 0.05)


def test_random_dags_exercise_stacked_edge_groups() -> None:
    """The DAGs above include edge groups of several edges (the batched bmm, index adds)."""
    stacked = [any(len(e.edges) > 1 for e in PCModel(from_networkx(random_dag(s, n_nodes=14))).edge_groups)
               for s in range(8)]
    assert sum(stacked) >= 4


def test_sheet_inference_equals_per_node() -> None:
    gen = torch.Generator().manual_seed(3)
    model = PCModel(sheet((3, 5, 8), dim=4, fan_in=2), generator=gen, dtype=torch.float64)
    bottom = [n for n in model.spec.names if n.startswith("L2_")]
    _assert_kernel_equals_reference(model, *_clamp_and_start(model, 4, gen, bottom), 10, 0.1)


def test_forward_fill_equals_a_full_prediction_per_generation() -> None:
    """The per-generation fill computes only the edges into each generation; the result is
    what one full prediction pass per generation gives."""
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        model = PCModel(from_networkx(random_dag(seed)), generator=gen, dtype=torch.float64)
        data, _ = _clamp_and_start(model, 3, gen, ["inp"])
        drive = model.drive(3)
        z = model.fill(model.to_grouped(data, 3), drive, frozenset(data))
        ref = model.to_grouped(data, 3)
        for generation in model.spec.generations():
            _, mu = model.predict(ref, drive)
            for n in generation:
                if n not in data:
                    k, i = model.slot[n]
                    ref[k][i] = mu[k][i]
        for a, b in zip(z, ref):
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def _wavefront_cases():
    """Random DAGs with two observed columns clamped and one column started, then a graph where
    two parents feed each child within one edge group (index-selected targets) and one branch
    is reached by no clamped column."""
    for seed in range(8):
        gen = torch.Generator().manual_seed(seed)
        model = PCModel(from_networkx(random_dag(seed, n_nodes=12)), generator=gen, dtype=torch.float64)
        observed = [n.name for n in model.spec.nodes if n.kind == "observed"]
        data, start = _clamp_and_start(model, 5, gen, ["inp", *observed[:2]])
        started = list(start)[seed % 4]
        yield model, data, {started: start[started]}
    g = nx.DiGraph()
    for name in "abcdxy":
        g.add_node(name, dim=3, activation="tanh")
    for name in ("ox", "oy"):
        g.add_node(name, dim=3, kind="observed")
    g.add_edges_from([("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("x", "ox"), ("y", "oy")])
    gen = torch.Generator().manual_seed(0)
    model = PCModel(g, generator=gen, dtype=torch.float64)
    yield model, {"ox": torch.randn(5, 3, generator=gen, dtype=torch.float64)}, {}


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_wavefront_iterations_equal_the_full_ones(momentum: float) -> None:
    """From the forward fill, the first iterations compute only the errors that the clamped and
    started columns have reached, the predictions of columns whose parents have moved and the
    back-projections of those errors: the states and the free-energy trace equal those of full
    iterations (mixed output nonlinearities, several parents within a group, partly clamped
    groups, a started column, index-selected edges, a branch no data reaches)."""
    fronts = []
    for model, data, start in _wavefront_cases():
        drive, free = model.drive(5), model.clamped_mask(data, 5)
        z = initial_state(model, data, 5, drive, "forward", start)
        plan = model.plan(active=[any(n not in data for n in g.names) for g in model.groups])
        wave = Wavefront(model, plan, z, drive, data, set(data) | set(start), steps=8)
        config = InferenceConfig(steps=8, lr=0.1, momentum=momentum)
        runs = [descend(model, [zg.clone() for zg in z], free, config, lambda s: model.gradient(s, drive, plan),
                        lambda s: model.evaluate(s, drive, plan, gradient=False), lead) for lead in ([], wave.steps())]
        (z_full, _, trace_full), (z_wave, _, trace_wave) = runs
        assert torch.allclose(trace_full, trace_wave, rtol=1e-12, atol=1e-12)
        for a, b in zip(z_full, z_wave):
            assert torch.allclose(a, b, rtol=1e-11, atol=1e-12)
        fronts.append(len(wave.schedule))
        assert len(wave.schedule[0][0]) < sum(n.has_energy for n in model.spec.nodes)  # work skipped
    assert max(fronts[:-1]) >= 3
    assert fronts[-1] == 8  # the branch no data reaches never moves: every iteration skips it


def test_compiled_infer_names_non_finite_data() -> None:
    """The compiled unit checks the data's finiteness in the graph; non-finite data is named as
    on the eager path."""
    for compiled in (False, True):
        with pytest.raises(ValueError, match="data for node 'x' contains NaN or inf"):
            infer(diverging_model(), {"x": torch.tensor([[1.0, float("nan")], [0.0, 0.0], [1.0, 1.0]])},
                  InferenceConfig(steps=12, lr=1.0, init="zeros", compile=compiled))


def test_compiled_learn_step_equals_eager() -> None:
    """On a CPU compile=True runs the whole learning step's inference (forward initialisation,
    K iterations, final evaluation) and the local-rule gradients as one compiled unit, with a
    rational tanh and the products of clamped columns taken once: the same states, trace and
    gradients as the eager path to float32 rounding, on a DAG with index-selected edge groups,
    mixed column sizes, learned precisions and an input column."""
    from cortex.learning import learn_step

    runs = {}
    for compiled in (False, True):
        gen = torch.Generator().manual_seed(2)
        model = PCModel(from_networkx(random_dag(2)), generator=gen)
        observed = [n.name for n in model.spec.nodes if n.kind == "observed"]
        data, _ = _clamp_and_start(model, 8, gen, ["inp", *observed])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # leaves .grad to compare
        beliefs = learn_step(model, optimizer, data, InferenceConfig(steps=6, lr=0.05, compile=compiled))
        runs[compiled] = beliefs, [p.grad.clone() for p in model.rule_parameters()]
    assert any("tanh" in (n.activation, n.output) for n in model.spec.nodes if n.name != "inp")
    (eager, eager_grads), (comp, comp_grads) = runs[False], runs[True]
    for a, b in zip(eager.z, comp.z):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert torch.allclose(eager.trace, comp.trace, rtol=1e-5, atol=1e-5)
    for a, b in zip(eager_grads, comp_grads):
        assert a.abs().max() > 0 or b.abs().max() == 0
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="compile=True cannot stop early"):
        InferenceConfig(compile=True, tol=1e-3)


def test_compiled_loop_of_a_sheet_equals_eager() -> None:
    """The K iterations compiled alone (what the temporal filter and a GPU compile) equal the
    eager loop on a three-level sheet, whose edge groups gather and scatter-add by index. With
    Inductor's peak-memory reordering on, torch 2.13 lost every other update here."""
    model = PCModel(sheet((4, 12, 48), dim=8), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    data = {n: torch.randn(4, 8, generator=gen) for n in model.spec.names if n.startswith("L2_")}
    traces = []
    for compiled in (False, True):
        drive = model.drive(4)
        z = model.fill(model.to_grouped(data, 4), drive, frozenset(data))
        plan = model.plan(active=[any(n not in data for n in g.names) for g in model.groups])
        _, _, trace = descend(model, z, model.clamped_mask(data, 4), InferenceConfig(steps=4, lr=0.05, compile=compiled),
                              lambda s: model.gradient(s, drive, plan), lambda s: model.evaluate(s, drive, plan, gradient=False))
        traces.append(trace)
    assert (traces[0].diff() < 0).all()
    assert torch.allclose(traces[0], traces[1], rtol=1e-5)
    with warnings.catch_warnings():  # the whole call, checked against eager on its first call
        warnings.simplefilter("error")
        whole = infer(model, data, InferenceConfig(steps=4, lr=0.05, compile=True))
    assert torch.allclose(whole.trace, traces[0], rtol=1e-5)


def test_a_compiled_call_that_disagrees_with_eager_is_not_used(monkeypatch) -> None:
    """The first compiled call of each kind is checked against the eager path; a compiled unit
    whose free-energy trace differs is reported and never called again for that kind."""
    import cortex.inference as inference

    calls = []

    def miscompiled(fn, device_type):  # the whole call, run eagerly, with a wrong trace
        if fn is not inference._infer_checked:
            return fn

        def run(*args):
            calls.append(1)
            beliefs, grads, finite = fn(*args)
            beliefs.trace = beliefs.trace * 1.01
            return beliefs, grads, finite
        return run

    monkeypatch.setattr(inference, "_compiled", miscompiled)
    model = PCModel(from_networkx(random_dag(3)), generator=torch.Generator().manual_seed(3))
    data, _ = _clamp_and_start(model, 4, torch.Generator().manual_seed(4), ["inp"])
    eager = infer(model, data, InferenceConfig(steps=5))
    with pytest.warns(UserWarning, match="differs from the eager path"):
        first = infer(model, data, InferenceConfig(steps=5, compile=True))
    second = infer(model, data, InferenceConfig(steps=5, compile=True))
    assert len(calls) == 1
    for got in (first, second):
        assert torch.equal(got.trace, eager.trace)


def test_compiled_divergence_is_replayed_eagerly() -> None:
    """A non-finite free energy in the compiled unit is replayed on the eager path, which names
    the same node and step as eager inference does."""
    found = []
    for compiled in (False, True):
        with pytest.raises(InferenceDivergedError) as info:
            infer(diverging_model(), {"x": torch.ones(3, 2) * 100},
                  InferenceConfig(steps=12, lr=1.0, init="zeros", compile=compiled))
        found.append((info.value.node, info.value.step))
    assert found[0] == found[1] and found[0][0] == "s"


def test_traced_tanh_is_within_4e_7_of_torch() -> None:
    """Compiled on a CPU, tanh is a rational form: within 4e-7 of torch.tanh in absolute and in
    relative error, from tiny arguments to saturation."""
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.logspace(-8, 0, 1000), -torch.logspace(-8, 0, 1000)])
    traced = torch.compile(get_activation("tanh").fn, fullgraph=True)(x).double()
    exact = torch.tanh(x.double())
    err = (traced - exact).abs()
    assert err.max() < 4e-7
    assert (err / exact.abs().clamp_min(1e-30)).max() < 4e-7


def test_divergence_between_checks_is_replayed_to_its_step() -> None:
    """The divergence check reads the device every check_every iterations; the step it
    reports is the first non-finite one all the same."""
    model = diverging_model()
    steps = {}
    for every in (1, 8, 64):
        with pytest.raises(InferenceDivergedError) as info:
            infer(model, {"x": torch.ones(3, 2) * 100},
                  InferenceConfig(steps=200, lr=1.0, init="zeros", check_every=every))
        steps[every] = (info.value.node, info.value.step)
    assert steps[1] == steps[8] == steps[64] and steps[1][0] == "s"


def test_sheet_is_local_and_checked() -> None:
    g = sheet((64, 192, 768))
    assert g.number_of_nodes() == 1024
    assert all(g.in_degree(n) == 3 for n in g if not n.startswith("L0_"))
    # local: the parents of a column sit next to each other on the level above
    parents = sorted(int(p.split("_")[1]) for p in g.predecessors("L2_400"))
    assert max(parents) - min(parents) == 2 and abs(parents[1] - 400 * 192 / 768) < 2
    model = PCModel(g)
    assert len(model.groups) == 2 and len(model.edge_groups) == 2
    with pytest.raises(ValueError, match="at least two levels"):
        sheet((4,))
    with pytest.raises(ValueError, match="fan_in"):
        sheet((2, 4), fan_in=0)
