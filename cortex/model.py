"""The compiled predictive-coding model: prediction errors, free energy and local gradients.

A :class:`PCModel` is built once from a validated graph (cortex.graph). Building groups the
columns by (dimension, activations) and the edges by the pair of groups they join, so one
inference iteration is a handful of batched matmuls (``torch.bmm`` over all edges of a group)
whatever the number of columns — the graph is never walked in Python per iteration.

States live in *grouped* form: a list with one tensor ``(N_g, B, d_g)`` per group. For a
hidden or observed column n (DESIGN.md §2–3)::

    mu_n  = g_n(a_n),  a_n = sum_p W_{n<-p} f(z^p) + U_n f(z_{t-1}^n) + B_n a_{t-1} + b_n
    eps_n = z^n - mu_n
    F_n   = 1/2 eps_n^T Pi_n eps_n - 1/2 log|Pi_n| + d_n/2 log 2 pi        (Pi_n = Sigma_n^-1)
    dF/dz^n = Pi_n eps_n - f'(z^n) * sum_c W_{c<-n}^T (g'_c(a_c) * Pi_c eps_c)

The explicit gradients here are what inference and learning use; ``free_energy`` is the same
forward computation kept differentiable, so tests can hold the local rule to autograd.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Collection, Mapping, Sequence

import networkx as nx
import torch
from torch import Tensor, nn

from cortex.activations import Activation, get_activation
from cortex.graph import GraphSpec, from_networkx

Grouped = list[Tensor]
"""One tensor per node group, ``(N_g, B, d_g)``."""

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class NodeGroup:
    """Columns that share dimension and activations, stacked into one tensor."""

    dim: int
    f: Activation
    g: Activation
    names: tuple[str, ...]


@dataclass(frozen=True)
class _FillStep:
    """One generation of :meth:`PCModel.fill`: the nodes to set per group, and the edges
    into them per edge group (edge positions, source and local target selectors)."""

    targets: dict
    edges: list


@dataclass(frozen=True)
class EdgeGroup:
    """Edges between two node groups, stacked into one ``(E, d_dst, d_src)`` weight tensor.

    ``source`` is ``"state"`` (W: parent at the same time), ``"past"`` (U: the node's own
    previous state) or ``"action"`` (B: the previous action, efference copy).
    """

    source: str
    src: int
    dst: int
    edges: tuple[tuple[str, str], ...]
    src_index: tuple[int, ...]
    dst_index: tuple[int, ...]


def _as_selector(index: Sequence[int]) -> slice | None:
    """A slice when ``index`` is a contiguous ascending run (a view, no copy), else None."""
    if list(index) == list(range(index[0], index[0] + len(index))):
        return slice(index[0], index[0] + len(index))
    return None


def _selector(index: Sequence[int], device: torch.device) -> slice | Tensor:
    """A slice for a contiguous ascending run, else an index tensor on ``device``."""
    return _as_selector(index) or torch.tensor(index, device=device)


class PCModel(nn.Module):
    """A generative model on a DAG of cortical columns with local inference and learning.

    Parameters
    ----------
    graph:
        A ``networkx.DiGraph`` (validated with :func:`cortex.graph.from_networkx`) or a
        :class:`GraphSpec`.
    action_dim, temporal:
        Passed to :func:`from_networkx` when ``graph`` is a DiGraph.
    generator:
        Seeds the weight initialisation (uniform in ±1/sqrt(fan_in), as ``nn.Linear``).
    device, dtype:
        Where the parameters live; states and data must match.
    """

    def __init__(
        self,
        graph: nx.DiGraph | GraphSpec,
        *,
        action_dim: int = 0,
        temporal: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        spec = graph if isinstance(graph, GraphSpec) else from_networkx(
            graph, action_dim=action_dim, temporal=temporal
        )
        self.spec = spec
        self.groups, self.edge_groups, self.slot = _compile(spec)
        self.weights = nn.ParameterList()
        for eg in self.edge_groups:
            d_dst = self.groups[eg.dst].dim
            d_src = spec.action_dim if eg.source == "action" else self.groups[eg.src].dim
            bound = 1.0 / math.sqrt(d_src)
            w = (torch.rand(len(eg.edges), d_dst, d_src, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.weights.append(nn.Parameter(w))
        self.bias = nn.ParameterList(
            nn.Parameter(torch.zeros(len(grp.names), grp.dim, dtype=dtype)) for grp in self.groups
        )
        self.log_precision = nn.ParameterList(
            nn.Parameter(
                torch.tensor([[math.log(spec.node(n).precision)] * grp.dim for n in grp.names], dtype=dtype)
            )
            for grp in self.groups
        )
        for k, grp in enumerate(self.groups):
            nodes = [spec.node(n) for n in grp.names]
            self.register_buffer(f"_energy{k}", torch.tensor([n.has_energy for n in nodes], dtype=dtype).view(-1, 1, 1), persistent=False)
            self.register_buffer(f"_learnprec{k}", torch.tensor([n.learn_precision for n in nodes], dtype=dtype).view(-1, 1), persistent=False)
        self._fill_cache: dict = {}
        self._any_learnprec = [any(spec.node(n).learn_precision for n in grp.names) for grp in self.groups]
        self._all_energy = [all(spec.node(n).has_energy for n in grp.names) for grp in self.groups]
        self._any_energy = [any(spec.node(n).has_energy for n in grp.names) for grp in self.groups]
        self._selectors: list[tuple[slice | str, slice | str]] = []
        for k, eg in enumerate(self.edge_groups):
            sel = []
            for which, index in (("src", eg.src_index), ("dst", eg.dst_index)):
                s = _as_selector(index)
                if s is None:
                    name = f"_{which}{k}"
                    self.register_buffer(name, torch.tensor(index, dtype=torch.long), persistent=False)
                    s = name
                sel.append(s)
            self._selectors.append((sel[0], sel[1]))
        # Whether an edge group covers its whole source / target group (one edge per node, in order).
        self._src_full = [eg.src >= 0 and eg.src_index == tuple(range(len(self.groups[eg.src].names)))
                          for eg in self.edge_groups]
        self._dst_full = [eg.dst_index == tuple(range(len(self.groups[eg.dst].names)))
                          for eg in self.edge_groups]
        self.to(device=device)

    # ------------------------------------------------------------------ layout helpers
    @property
    def device(self) -> torch.device:
        return self.bias[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.bias[0].dtype

    def energy_mask(self, k: int) -> Tensor:
        """``(N_g, 1, 1)``: 1 for columns with an energy term (hidden, observed), 0 for inputs."""
        return getattr(self, f"_energy{k}")

    def _ends(self, k: int) -> tuple[slice | Tensor, slice | Tensor]:
        """Edge group k's source and target selectors: slices, or index tensors (buffers)."""
        return tuple(s if isinstance(s, slice) else getattr(self, s) for s in self._selectors[k])

    def zeros(self, batch: int) -> Grouped:
        """A grouped all-zero state for ``batch`` samples."""
        return [torch.zeros(len(g.names), batch, g.dim, device=self.device, dtype=self.dtype) for g in self.groups]

    def to_grouped(self, z: Mapping[str, Tensor], batch: int) -> Grouped:
        """Pack a ``{node: (B, d)}`` mapping into grouped form (missing nodes are zero).

        One stack per group, not one write per column: a sheet clamps hundreds of columns,
        and a traced write per column made the compiled graph take minutes to lower."""
        unknown = [name for name in z if name not in self.slot]
        if unknown:
            raise KeyError(f"no nodes named {unknown}; nodes are {list(self.slot)}")
        out = []
        for grp in self.groups:
            shape = (batch, grp.dim)
            if not any(name in z for name in grp.names):
                out.append(torch.zeros((len(grp.names), *shape), device=self.device, dtype=self.dtype))
                continue
            zero = torch.zeros(shape, device=self.device, dtype=self.dtype)
            out.append(torch.stack([z[name].to(device=self.device, dtype=self.dtype).expand(shape)
                                    if name in z else zero for name in grp.names]))
        return out

    def clamped_mask(self, clamped: Collection[str], batch: int) -> Grouped:
        """``(N_g, B, 1)`` per group: 0 for the columns in ``clamped``, 1 for the free ones."""
        return [torch.tensor([0.0 if name in clamped else 1.0 for name in grp.names], device=self.device,
                             dtype=self.dtype).view(-1, 1, 1).expand(-1, batch, 1).clone() for grp in self.groups]

    def to_dict(self, z: Grouped) -> dict[str, Tensor]:
        """Views ``{node: (B, d)}`` into a grouped state."""
        return {name: z[k][i] for name, (k, i) in self.slot.items()}

    def weight(self, parent: str, child: str) -> Tensor:
        """The ``(d_child, d_parent)`` weight W_{child<-parent} (a view of the stacked tensor)."""
        return self._edge_weight("state", parent, child)

    def temporal_weight(self, node: str) -> Tensor:
        """U_n, ``(d_n, d_n)``: prediction from the node's own previous state."""
        return self._edge_weight("past", node, node)

    def action_weight(self, node: str) -> Tensor:
        """B_n, ``(d_n, action_dim)``: prediction from the previous action (efference copy)."""
        return self._edge_weight("action", "<action>", node)

    def _edge_weight(self, source: str, parent: str, child: str) -> Tensor:
        for eg, w in zip(self.edge_groups, self.weights):
            if eg.source == source and (parent, child) in eg.edges:
                return w[eg.edges.index((parent, child))]
        raise KeyError(f"the model has no {source} edge {parent!r} -> {child!r}")

    # ------------------------------------------------------------------ the forward model
    def drive(self, batch: int, past: Grouped | None = None, action: Tensor | None = None) -> Grouped:
        """The part of every node's input that does not depend on the current state.

        ``b_n + U_n f(z_{t-1}^n) + B_n a_{t-1}``, grouped, ``(N_g, B or 1, d)``. It is constant
        during inference at one time step (filtering), so it is computed once per step.
        """
        out = [b.unsqueeze(1) for b in self.bias]
        if past is None and action is None:
            return out
        out = [o.expand(-1, batch, -1).clone() for o in out]
        for k, (eg, w) in enumerate(zip(self.edge_groups, self.weights)):
            src_sel, dst_sel = self._ends(k)
            if eg.source == "past" and past is not None:
                x = _select(self.groups[eg.src].f.fn(past[eg.src]), src_sel)
            elif eg.source == "action" and action is not None:
                x = action.unsqueeze(0).expand(len(eg.edges), -1, -1)
            else:
                continue
            _bmm_into(out[eg.dst], dst_sel, x, w.transpose(1, 2))
        return out

    def fill(self, z: Grouped, drive: Grouped, done: frozenset[str] = frozenset(),
             out: Grouped | None = None) -> Grouped:
        """Set every node not in ``done`` to its prediction mu, parents first (in place).

        One pass per topological generation that has nodes to fill, computing only the
        edges into those nodes (a batched op per edge group), so a chain of L columns costs
        one forward pass in all, not L. With ``out`` the predictions from ``z`` as it stands
        are written there instead (``z`` is only read).
        """
        out = z if out is None else out
        with torch.no_grad():
            for gen in self._fill_plan(frozenset(done)):
                pre = {k: _select(drive[k], sel).expand(-1, z[k].shape[1], -1).clone()
                       for k, sel in gen.targets.items()}
                for eg_index, edges, src_sel, dst_sel in gen.edges:
                    eg = self.edge_groups[eg_index]
                    x = _select(z[eg.src], src_sel)
                    if not self.groups[eg.src].f.is_identity:
                        x = self.groups[eg.src].f.fn(x)
                    w = _select(self.weights[eg_index], edges)
                    _bmm_into(pre[eg.dst], dst_sel, x, w.transpose(1, 2))
                for k, sel in gen.targets.items():
                    mu = pre[k] if self.groups[k].g.is_identity else self.groups[k].g.fn(pre[k])
                    if isinstance(sel, slice):
                        out[k][sel] = mu
                    else:
                        out[k].index_copy_(0, sel, mu)
        return out

    def _fill_plan(self, done: frozenset[str]) -> list["_FillStep"]:
        key = (done, self.device)
        if torch.compiler.is_compiling() or key not in self._fill_cache:
            steps = []
            as_sel = functools.partial(_selector, device=self.device)
            for generation in self.spec.generations():
                todo = [n for n in generation if n not in done]
                if not todo:
                    continue
                by_group: dict[int, list[int]] = {}
                for name in todo:
                    k, i = self.slot[name]
                    by_group.setdefault(k, []).append(i)
                local = {k: {i: j for j, i in enumerate(sorted(idx))} for k, idx in by_group.items()}
                edges = []
                for e, eg in enumerate(self.edge_groups):
                    if eg.source != "state" or eg.dst not in local:
                        continue
                    pos = [p for p, d in enumerate(eg.dst_index) if d in local[eg.dst]]
                    if pos:
                        edges.append((e, as_sel(pos), as_sel([eg.src_index[p] for p in pos]),
                                      as_sel([local[eg.dst][eg.dst_index[p]] for p in pos])))
                steps.append(_FillStep({k: as_sel(sorted(idx)) for k, idx in by_group.items()}, edges))
            if torch.compiler.is_compiling():  # traced: built into the graph, no cache to guard on
                return steps
            self._fill_cache[key] = steps
        return self._fill_cache[key]

    def predict(self, z: Grouped, drive: Grouped) -> tuple[Grouped, Grouped]:
        """Summed inputs ``a`` and prediction means ``mu = g(a)`` for every node, grouped."""
        _, pre, mu = self._forward(z, drive)
        return pre, mu

    def _forward(self, z: Grouped, drive: Grouped) -> tuple[Grouped, Grouped, Grouped]:
        """Rates f(z), summed inputs a and means mu = g(a), grouped."""
        batch = z[0].shape[1]
        fz = [zg if grp.f.is_identity else grp.f.fn(zg) for grp, zg in zip(self.groups, z)]
        pre: list[Tensor | None] = [None] * len(self.groups)
        for k, (eg, w, full) in enumerate(zip(self.edge_groups, self.weights, self._dst_full)):
            if eg.source != "state":
                continue
            src_sel, dst_sel = self._ends(k)
            x = _select(fz[eg.src], src_sel)
            if pre[eg.dst] is None and full:
                # The edge group feeds every node of its target group: fuse the drive in.
                pre[eg.dst] = torch.baddbmm(drive[eg.dst], x, w.transpose(1, 2))
                continue
            if pre[eg.dst] is None:
                pre[eg.dst] = drive[eg.dst].expand(-1, batch, -1).clone()
            _bmm_into(pre[eg.dst], dst_sel, x, w.transpose(1, 2))
        pre = [d.expand(-1, batch, -1) if a is None else a for a, d in zip(pre, drive)]
        mu = [a if grp.g.is_identity else grp.g.fn(a) for grp, a in zip(self.groups, pre)]
        return fz, pre, mu

    def node_energy(self, z: Grouped, mu: Grouped) -> tuple[Grouped, Grouped, Grouped]:
        """Per-node free energy ``(N_g, B)``, errors ``eps = z - mu`` (0 at input nodes) and
        precision-weighted errors ``Pi eps``, grouped."""
        energies, errors, weighted = [], [], []
        for k, (zg, mg, lp) in enumerate(zip(z, mu, self.log_precision)):
            mask = self.energy_mask(k)
            eps = zg - mg
            if not self._all_energy[k]:
                eps = eps * mask
            pe = lp.exp().unsqueeze(1) * eps
            const = 0.5 * (zg.shape[-1] * _LOG_2PI - lp.sum(-1, keepdim=True))
            energies.append((0.5 * torch.linalg.vecdot(pe, eps) + const) * mask[:, :, 0])
            errors.append(eps)
            weighted.append(pe)
        return energies, errors, weighted

    def log_normalizer(self) -> Tensor:
        """Sum over energy-bearing columns of 1/2 log|2 pi Sigma_n|: the part of F that does not
        depend on the states (constant during inference)."""
        total = 0.0
        for k, lp in enumerate(self.log_precision):
            per_node = 0.5 * (lp.shape[-1] * _LOG_2PI - lp.sum(-1))
            total = total + (per_node * self.energy_mask(k).view(-1)).sum()
        return total.detach()

    def free_energy(self, z: Grouped, drive: Grouped | None = None) -> Tensor:
        """Total free energy per sample ``(B,)``; differentiable in z and in the parameters."""
        drive = self.drive(z[0].shape[1]) if drive is None else drive
        _, _, mu = self._forward(z, drive)
        energies, _, _ = self.node_energy(z, mu)
        return sum(e.sum(0) for e in energies)

    # ------------------------------------------------------------------ local gradients
    def plan(self, active: Sequence[bool] | None = None) -> "IterationPlan":
        """An :class:`IterationPlan` for the current parameters (build one per inference call)."""
        return IterationPlan(self, active)

    def gradient(self, z: Grouped, drive: Grouped, plan: "IterationPlan | None" = None) -> "Step":
        """The lean per-iteration evaluation: dF/dz, the back-sent errors h and the summed
        quadratic form eps^T Pi eps (a 0-d tensor: no host sync). Pass a ``plan`` to reuse it."""
        with torch.no_grad():
            _, eps, weighted, h, grad = (plan or self.plan()).run(z, drive)
            return Step.of(eps, weighted, h, grad, z[0])

    def evaluate(self, z: Grouped, drive: Grouped, plan: "IterationPlan | None" = None, *,
                 gradient: bool = True) -> "Evaluation":
        """Errors, energies and the local gradient dF/dz at state ``z`` (no autograd).
        ``gradient=False`` skips the back-projection (``grad`` is then all None)."""
        with torch.no_grad():
            fz, eps, weighted, h, grad = (plan or self.plan()).run(z, drive, gradient=gradient)
            energies, errors = [], []
            for k, (zg, e, pe, lp) in enumerate(zip(z, eps, weighted, self.log_precision)):
                if e is None:  # a group of input columns: no energy, no error
                    energies.append(zg.new_zeros(zg.shape[:2]))
                    errors.append(torch.zeros_like(zg))
                    continue
                mask = self.energy_mask(k)
                const = 0.5 * (e.shape[-1] * _LOG_2PI - lp.sum(-1, keepdim=True))
                energies.append((0.5 * torch.linalg.vecdot(pe, e) + const) * mask[:, :, 0])
                errors.append(e if self._all_energy[k] else e * mask)
        return Evaluation(energies=energies, errors=errors, grad=grad, h=h, rates=fz)

    def past_gradient(self, past: Grouped, h: Grouped) -> Grouped:
        """dF/dz_{t-1} through the temporal edges: ``-f'(z_{t-1}) * U^T (g' * Pi eps)``, grouped.

        ``h`` comes from :meth:`evaluate` at time t. Smoothing over a window adds this to the
        gradient of the state one step earlier; filtering keeps the past fixed and skips it.
        """
        with torch.no_grad():
            back = [torch.zeros_like(p) for p in past]
            for k, (eg, w) in enumerate(zip(self.edge_groups, self.weights)):
                if eg.source == "past":
                    src_sel, dst_sel = self._ends(k)
                    _bmm_into(back[eg.src], src_sel, _select(h[eg.dst], dst_sel), w)
            return [-(b if grp.f.is_identity else grp.f.grad(p) * b)
                    for grp, p, b in zip(self.groups, past, back)]

    def accumulate_grads(
        self, z: Grouped, drive: Grouped | None = None, *, past: Grouped | None = None,
        action: Tensor | None = None, evaluation: "Evaluation | None" = None,
    ) -> Evaluation:
        """Add the local-rule gradients of the batch-mean free energy to every ``.grad``.

        dF/dW_{n<-p} = -(g'_n * Pi_n eps_n) f(z^p)^T, dF/db_n = -(g'_n * Pi_n eps_n),
        dF/dU_n = -(...) f(z_{t-1}^n)^T, dF/dB_n = -(...) a_{t-1}^T and, with Pi = exp(s),
        dF/ds_n = 1/2 Pi_n eps_n^2 - 1/2 — each averaged over the batch. ``past`` and
        ``action`` must be what ``drive`` was built from. Like ``Tensor.backward`` this
        accumulates, so gradients over several time steps add up; any ``torch.optim`` applies.
        ``evaluation`` is :meth:`evaluate` at ``z`` when the caller already holds it (the last
        one of inference), which saves recomputing it.
        """
        if evaluation is None:
            drive = self.drive(z[0].shape[1], past, action) if drive is None else drive
            evaluation = self.evaluate(z, drive)
        for param, (grad, scale) in zip(self.rule_parameters(), self.local_grads(evaluation, past, action)):
            if grad is not None:
                _accumulate(param, grad, scale)
        return evaluation

    def rule_parameters(self) -> list[nn.Parameter]:
        """The parameters the local rule trains, in the order of :meth:`local_grads`."""
        # Read from the lists' registries: iterating a ParameterList costs ~2 us per entry,
        # which a compiled learning step would pay on every batch.
        return [p for plist in (self.weights, self.bias, self.log_precision) for p in plist._parameters.values()]

    def learned_parameters(self) -> list[nn.Parameter]:
        """The parameters the local rule can change: every weight, the biases of groups with
        an energy term (an input column's bias predicts nothing) and the log-precisions of
        groups where some column learns its precision. The rule's gradient for the others is
        always zero: hand these to an optimiser without weight decay to skip them; with decay,
        pass all :meth:`parameters`."""
        return [*self.weights, *(b for b, e in zip(self.bias, self._any_energy) if e),
                *(lp for lp, learn in zip(self.log_precision, self._any_learnprec) if learn)]

    def local_grads(self, ev: "Evaluation", past: Grouped | None = None,
                    action: Tensor | None = None) -> list[tuple[Tensor | None, float]]:
        """The local-rule gradients at an evaluation, one ``(g, scale)`` per
        :meth:`rule_parameters` entry (dF/dtheta = scale * g, the batch mean; g is None for a
        temporal or action weight whose input was not given). See :meth:`accumulate_grads`."""
        batch = ev.rates[0].shape[1]
        out: list[tuple[Tensor | None, float]] = []
        with torch.no_grad():
            fz = ev.rates
            fpast = None if past is None else [grp.f.fn(p) for grp, p in zip(self.groups, past)]
            for k, eg in enumerate(self.edge_groups):
                src_sel, dst_sel = self._ends(k)
                if eg.source == "state":
                    x = _select(fz[eg.src], src_sel)
                elif eg.source == "past" and fpast is not None:
                    x = _select(fpast[eg.src], src_sel)
                elif eg.source == "action" and action is not None:
                    x = action.unsqueeze(0).expand(len(eg.edges), -1, -1)
                else:
                    out.append((None, 1.0))
                    continue
                out.append((torch.bmm(_select(ev.h[eg.dst], dst_sel).transpose(1, 2), x), -1.0 / batch))
            for b, h in zip(self.bias, ev.h):
                out.append((torch.zeros_like(b) if h is None else h.sum(1), -1.0 / batch))
            for k, lp in enumerate(self.log_precision):
                if self._any_learnprec[k]:
                    s = 0.5 * (lp.exp().unsqueeze(1) * ev.errors[k] ** 2).mean(1) - 0.5
                    out.append((s * self.energy_mask(k)[:, :, 0] * getattr(self, f"_learnprec{k}"), 1.0))
                else:  # a zero gradient, as the rule gives (weight decay still sees the parameter)
                    out.append((torch.zeros_like(lp), 1.0))
        return out


@dataclass
class Step:
    """What one inference iteration needs (see :meth:`PCModel.gradient`)."""

    grad: list[Tensor | None]
    """dF/dz per group, before masking clamped nodes (None for inactive groups)."""
    h: list[Tensor | None]
    """g'(a) * Pi eps: the error each node sends back to its parents (None: only input columns)."""
    quadratic: Tensor
    """Sum over nodes and the batch of eps^T Pi eps (0-d): twice F minus its log-normaliser."""

    @staticmethod
    def of(eps: list, weighted: list, h: list, grad: list, like: Tensor) -> "Step":
        """The step from :meth:`IterationPlan.run`'s errors, weighted errors, h and dF/dz
        (``like``: a tensor of the state's dtype and device)."""
        quad = None
        for pe, e in zip(weighted, eps):
            if e is not None:
                d = torch.dot(pe.view(-1), e.view(-1))
                quad = d if quad is None else quad.add_(d)
        return Step(grad=grad, h=h, quadratic=like.new_zeros(()) if quad is None else quad)


@dataclass
class Evaluation:
    """The local quantities at one state (all grouped, ``(N_g, B, ...)``)."""

    energies: Grouped
    """Per-node free energy ``(N_g, B)``."""
    errors: Grouped
    """Prediction errors eps = z - mu (0 at input nodes)."""
    grad: list[Tensor | None]
    """dF/dz, before masking clamped nodes (None for a group the plan left out: wholly clamped)."""
    h: list[Tensor | None]
    """g'(a) * Pi eps: the error each node sends back to its parents (None: only input columns)."""
    rates: Grouped
    """f(z): what each node sends to its children."""

    def total(self) -> Tensor:
        """Free energy per sample ``(B,)``."""
        return sum(e.sum(0) for e in self.energies)


def _select(x: Tensor, sel: slice | Tensor | None, space: "_Workspace | None" = None, key=None) -> Tensor:
    """The entries of an edge group's side of a node group: all (None), a view, or a gather
    (into a reused buffer of ``space`` when given and not traced: eagerly, a fresh tensor of
    many megabytes per iteration costs more than the copy; a compiled graph plans its own
    memory)."""
    if sel is None:
        return x
    if isinstance(sel, slice):
        return x[sel]
    if space is None or torch.compiler.is_compiling():
        return x.index_select(0, sel)
    return torch.index_select(x, 0, sel, out=space(key, (len(sel), *x.shape[1:]), x))


def _bmm_into(target: Tensor, sel: slice | Tensor | None, a: Tensor, b: Tensor, alpha: float = 1.0,
              space: "_Workspace | None" = None, key=None) -> None:
    """target[sel] += alpha * a @ b, in place (a scatter-add for an index, the product going
    through a reused buffer of ``space`` when given). Traced, the product and the sum are two
    ops: Inductor fuses the sum into its neighbours, where an accumulating matmul would first
    copy its addend."""
    if torch.compiler.is_compiling():
        _add_into(target, sel, torch.bmm(a, b), alpha)
    elif sel is None:
        target.baddbmm_(a, b, alpha=alpha)
    elif isinstance(sel, slice):
        target[sel].baddbmm_(a, b, alpha=alpha)
    else:
        product = torch.bmm(a, b) if space is None else torch.bmm(
            a, b, out=space(key, (a.shape[0], a.shape[1], b.shape[2]), a))
        _add_into(target, sel, product, alpha)


def _add_into(target: Tensor, sel: slice | Tensor | None, product: Tensor, alpha: float) -> None:
    """target[sel] += alpha * product, in place (a scatter-add for an index)."""
    if sel is None:
        target.add_(product, alpha=alpha)
    elif isinstance(sel, slice):
        target[sel].add_(product, alpha=alpha)
    else:
        target.index_add_(0, sel, product, alpha=alpha)


def _edges_into(target: Tensor, to: slice | Tensor, x: Tensor, frm: slice | Tensor, w: Tensor,
                pos: slice | Tensor, alpha: float) -> None:
    """target[to] += alpha * x[frm] @ w[pos]: the product of some edges of an edge group (their
    positions ``pos``, as :meth:`Front.edges` selects them)."""
    _add_into(target, to, torch.bmm(_select(x, frm), _select(w, pos)), alpha)


def _runs(rows: list[int]) -> list[slice]:
    """Ascending row numbers as the fewest slices: [0, 1, 2, 5] -> [0:3, 5:6]."""
    runs: list[slice] = []
    for r in rows:
        if runs and runs[-1].stop == r:
            runs[-1] = slice(runs[-1].start, r + 1)
        else:
            runs.append(slice(r, r + 1))
    return runs


class _Workspace:
    """Buffers an iteration reuses for its gathers and scattered products, one per use and
    shape, made on first use (the batch is known only then)."""

    def __init__(self) -> None:
        self.buffers: dict = {}

    def __call__(self, key, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buf = self.buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = self.buffers[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buf


class IterationPlan:
    """One inference iteration as a fixed list of batched ops, resolved once per call.

    Built from the model's current parameters (which do not change during inference) and
    the groups that hold free states (``active``): per group the precision with the
    energy mask folded in (or None where it is exactly 1, which saves a multiply), whether
    it has an energy term at all; per edge group the weights, their transposes and the
    slices or index tensors of its two ends. :meth:`run` then walks these lists — a few ops
    per node group and per edge group, never a loop over columns, nothing looked up.
    """

    def __init__(self, model: PCModel, active: Sequence[bool] | None = None) -> None:
        groups = model.groups
        self.active = [True] * len(groups) if active is None else list(active)
        self.f = [None if g.f.is_identity else g.f for g in groups]
        self.g = [None if g.g.is_identity else g.g for g in groups]
        precision = [(lp.detach().exp() * model.energy_mask(k)[:, :, 0]).unsqueeze(1)
                     for k, lp in enumerate(model.log_precision)]
        self.traced = torch.compiler.is_compiling()
        self.constant: dict[int, Tensor] = {}  # traced: products from wholly clamped groups, kept
        if self.traced:
            # Traced: no read from the device (it would break the graph). A group is silent when
            # none of its columns has an energy term; a multiply by a precision of 1 is fused.
            flags = [(not energy, False) for energy in model._any_energy]
        else:  # one read from the device for all groups: is each precision all zero / all one?
            flags = torch.stack([torch.stack([(p == 0).all(), (p == 1).all()]) for p in precision]).tolist()
        self.silent = [zero for zero, _ in flags]
        self.precision = [None if one else p for p, (_, one) in zip(precision, flags)]
        self.forward, self.backward = [], []  # each entry ends with the edge group's (source, target) rows
        self.workspace = _Workspace()
        for k, (eg, param, src_full, dst_full) in enumerate(zip(model.edge_groups, model.weights,
                                                               model._src_full, model._dst_full)):
            if eg.source != "state":
                continue
            src_sel, dst_sel = model._ends(k)
            w = param.detach()
            sign = -1.0 if self.g[eg.dst] is None else 1.0
            # W^T as its own contiguous copy (once per call): the batched matmul runs faster on
            # it than on a transposed view (~10 % at B=256, width 512; 30 % at B=32, width 64;
            # one CPU thread), except into fewer than 12 columns, where MKL's sgemm takes
            # 1.4-2x longer on the copy. The compiled path takes the view there; the eager path
            # keeps the copy everywhere, so that its numbers stay those of earlier releases.
            wt = w.transpose(1, 2)
            if not (self.traced and groups[eg.dst].dim < 12):
                wt = wt.contiguous()
            ends = (eg.src_index, eg.dst_index)
            self.forward.append((eg.src, eg.dst, None if src_full else src_sel,
                                 None if dst_full else dst_sel, wt, sign, ends))
            if self.active[eg.src] and not self.silent[eg.dst]:
                self.backward.append((eg.src, eg.dst, None if src_full else src_sel,
                                      None if dst_full else dst_sel, w, ends))
        # The back-projection into a group is written, not added, by an edge group whose source
        # rows are a slice no earlier edge group touched; every row not first written that way
        # is zeroed before the first product lands (a scatter-add needs zeros beneath it).
        self.write: list[bool] = []
        written: dict[int, list[bool | None]] = {}  # per row: None untouched, True written, False zeroed
        for src, _, src_sel, *_ in self.backward:
            rows = written.setdefault(src, [None] * len(groups[src].names))
            span = range(len(rows)) if src_sel is None else (
                range(src_sel.start, src_sel.stop) if isinstance(src_sel, slice) else None)
            fresh = span is not None and all(rows[r] is None for r in span)
            self.write.append(fresh)
            for r in span if span is not None else range(len(rows)):
                if rows[r] is None:
                    rows[r] = fresh
        self.zero = {src: _runs([r for r, state in enumerate(rows) if not state])
                     for src, rows in written.items()}

    def run(self, z: Grouped, drive: Grouped, gradient: bool = True,
            front: "Front | None" = None) -> tuple[Grouped, list, list, Grouped, list]:
        """Rates f(z), errors eps, Pi eps, the error sent back h = g'(a) Pi eps, and dF/dz
        (None for inactive groups; eps, Pi eps and h are None for groups without energy).

        Groups with g = identity accumulate eps = z - drive - sum W f(z) in place (no
        separate prediction); the back-projection accumulates into one tensor per group;
        f'(z) * back is one fused op where the activation has one.

        ``front``: one of the first iterations after the forward fill (see :class:`Wavefront`).
        Where g is the identity, a row's error is z - mu_fill until one of its parents has
        moved: only the other rows take their products. Only the rows that can have a nonzero
        error send it back.
        """
        fz = [zg if f is None else f.fn(zg) for f, zg in zip(self.f, z)]
        ref = drive if front is None else front.ref
        acc = [None if q or (front is not None and not front.live[k]) else
               zg - d if g is None else drive[k].expand_as(zg).clone()
               for k, (q, g, zg, d) in enumerate(zip(self.silent, self.g, z, ref))]
        space = self.workspace
        for i, (src, dst, src_sel, dst_sel, wt, sign, ends) in enumerate(self.forward):
            if acc[dst] is None:
                continue
            if front is not None and self.g[dst] is None:  # else every row's prediction
                keep = front.edges(ends, src, dst, into=front.full)
                if keep is None:
                    continue
                if keep is not True:
                    src_sel, dst_sel, pos = keep
                    _edges_into(acc[dst], dst_sel, fz[src], src_sel, wt, pos, sign)
                    continue
            x = _select(fz[src], src_sel, space, ("x", i))
            if self.traced and not self.active[src]:
                # A wholly clamped source sends the same prediction every iteration of the
                # call: its product is taken once (in the compiled graph, where rounding may
                # differ from the eager loop's anyway).
                if i not in self.constant:
                    self.constant[i] = torch.bmm(x, wt)
                _add_into(acc[dst], dst_sel, self.constant[i], sign)
            else:
                _bmm_into(acc[dst], dst_sel, x, wt, sign, space, ("y", i))
        eps, weighted, h = [], [], []
        for g, p, zg, a in zip(self.g, self.precision, z, acc):
            if a is None:
                eps.append(None), weighted.append(None), h.append(None)
                continue
            if g is None:
                e = a
            else:
                mu = g.fn(a)
                e = zg - mu
            pe = e if p is None else p * e
            eps.append(e)
            weighted.append(pe)
            h.append(pe if g is None else g.vjp(pe, a, mu))
        if not gradient:
            return fz, eps, weighted, h, [None] * len(z)
        back: list[Tensor | None] = [None] * len(z)
        for i, (src, dst, src_sel, dst_sel, w, ends) in enumerate(self.backward):
            if h[dst] is None:  # no energy, or no live row
                continue
            if front is not None:
                # Accumulated onto zeros: a skipped edge may be the one that writes rows.
                keep = front.edges(ends, src, dst, into=front.live, free=True)
                if keep is None:
                    continue
                if back[src] is None:
                    back[src] = torch.zeros_like(z[src])
                if keep is not True:
                    src_sel, dst_sel, pos = keep
                    _edges_into(back[src], src_sel, h[dst], dst_sel, w, pos, 1.0)
                    continue
                _bmm_into(back[src], src_sel, _select(h[dst], dst_sel), w)
                continue
            hd = _select(h[dst], dst_sel, space, ("h", i))
            if back[src] is None:
                back[src] = torch.empty_like(z[src])
                for rows in self.zero[src]:
                    back[src][rows].zero_()
            if self.write[i]:
                torch.bmm(hd, w, out=back[src] if src_sel is None else back[src][src_sel])
            else:
                _bmm_into(back[src], src_sel, hd, w, 1.0, space, ("b", i))
        grad = []
        for act, f, zg, fzg, pe, bk in zip(self.active, self.f, z, fz, weighted, back):
            if not act:
                grad.append(None)
            elif bk is None:
                grad.append(torch.zeros_like(zg) if pe is None else pe)
            else:
                vjp = bk if f is None else f.vjp(bk, zg, fzg)
                grad.append(vjp.neg_() if pe is None else torch.sub(pe, vjp))
        return fz, eps, weighted, h, grad


@dataclass
class Front:
    """One of the first iterations after the forward fill, as far as the fill's effect has
    reached (built by :class:`Wavefront`). Per group: ``live[k]`` the rows whose errors can be
    nonzero, ``full[k]`` those of them with a parent that has moved (their prediction is
    recomputed), ``free[k]`` the rows inference changes, and, where g is the identity,
    ``ref[k]``: what eps = z - ref - sum W f(z) subtracts before the products, the drive in
    ``full`` rows and the prediction at the fill in the others (the filled state itself where
    the fill set it). A group with another g computes every row's prediction."""

    live: list[frozenset[int]]
    full: list[frozenset[int]]
    free: list[frozenset[int]]
    ref: Grouped
    device: torch.device

    def edges(self, ends: tuple[tuple[int, ...], tuple[int, ...]], src: int, dst: int, *,
              into: list[frozenset[int]], free: bool = False) -> tuple | bool | None:
        """Which edges of an edge group (its source and target rows ``ends``) this iteration
        needs: those into the rows ``into``, and from free rows with ``free`` (the
        back-projection). True for all of them, None for none, else the source, target and
        edge selectors of the ones kept."""
        src_rows, dst_rows = ends
        keep = [p for p, (s, d) in enumerate(zip(src_rows, dst_rows))
                if d in into[dst] and (not free or s in self.free[src])]
        if not keep:
            return None
        if len(keep) == len(src_rows):
            return True
        return tuple(_selector(index, self.device) for index in
                     ([src_rows[p] for p in keep], [dst_rows[p] for p in keep], keep))


class Wavefront:
    """The first iterations of inference from the forward fill, each computing only what
    can be nonzero.

    The fill sets every column it fills to its prediction: its error is exactly zero, and
    stays so until the column or one of its parents moves. At first only the columns the fill
    left alone (clamped data, ``start`` values) have errors; each iteration moves the free
    columns those errors reach (the columns themselves and their parents), and the next one
    has errors a level further. Until every error can be nonzero, an iteration computes only
    the errors that can, the predictions of the columns whose parents have moved (where g is
    the identity the others still have their prediction at the fill) and the back-projections
    of those errors into free columns: the first iteration of a chain costs its clamped leaf's
    error alone.

    :meth:`steps` gives those iterations, in order; the plan's full iteration follows them.
    """

    def __init__(self, model: PCModel, plan: IterationPlan, z: Grouped, drive: Grouped,
                 clamped: Collection[str], done: Collection[str], steps: int) -> None:
        spec = model.spec
        energetic = {n.name for n in spec.nodes if n.has_energy}
        free = set(spec.names) - set(clamped)
        parents: dict[str, set[str]] = {n: set() for n in spec.names}
        children: dict[str, set[str]] = {n: set() for n in spec.names}
        for p, c in spec.edges:
            parents[c].add(p)
            children[p].add(c)
        # per iteration: the columns whose errors can be nonzero, and those with a moved parent
        self.schedule: list[tuple[set[str], set[str]]] = []
        moved: set[str] = set()
        while len(self.schedule) < steps:
            live = {n for n in energetic if n in done or n in moved or parents[n] & moved}
            grow = {n for n in free if n in live or children[n] & live}
            if live == energetic and grow <= moved:
                break
            self.schedule.append((live, {n for n in live if parents[n] & moved}))
            moved = moved | grow
        self.plan, self.drive, self.device, self.groups = plan, drive, model.device, model.groups
        self.free = self._rows(free)
        # mu at the fill where g is the identity: the filled state itself, and the prediction
        # of the columns the fill left alone
        targets = {n for n in energetic & set(done) if model.groups[model.slot[n][0]].g.is_identity}
        self.base = model.fill(z, drive, frozenset(set(spec.names) - targets), out=[zg.clone() for zg in z])

    def steps(self) -> list[Callable[[Grouped], "Step"]]:
        return [functools.partial(self._step, t) for t in range(len(self.schedule))]

    def _rows(self, names: set[str]) -> list[frozenset[int]]:
        """The rows of ``names`` in each group."""
        return [frozenset(i for i, n in enumerate(g.names) if n in names) for g in self.groups]

    def _step(self, t: int, z: Grouped) -> "Step":
        live, full = map(self._rows, self.schedule[t])
        ref = [b if not rows or g is not None else torch.where(
            torch.tensor([i in rows for i in range(len(b))], device=self.device).view(-1, 1, 1), d, b)
            for rows, g, b, d in zip(full, self.plan.g, self.base, self.drive)]
        front = Front(live, full, self.free, ref, self.device)
        with torch.no_grad():
            _, eps, weighted, h, grad = self.plan.run(z, self.drive, front=front)
        return Step.of(eps, weighted, h, grad, z[0])


def _accumulate(param: Tensor, grad: Tensor, scale: float = 1.0) -> None:
    """param.grad += scale * grad (set on the first call)."""
    if param.grad is None:
        param.grad = grad if scale == 1.0 else grad.mul_(scale) if grad._base is None else grad * scale
    else:
        param.grad.add_(grad, alpha=scale)


def _compile(spec: GraphSpec) -> tuple[list[NodeGroup], list[EdgeGroup], dict[str, tuple[int, int]]]:
    """Group columns by (dim, f, g) and edges by (source kind, source group, target group)."""
    keyed: dict[tuple, list[str]] = {}
    for node in spec.nodes:
        keyed.setdefault((node.dim, node.activation, node.output), []).append(node.name)
    groups = [NodeGroup(dim, get_activation(f), get_activation(g), tuple(names))
              for (dim, f, g), names in keyed.items()]
    slot = {name: (k, i) for k, grp in enumerate(groups) for i, name in enumerate(grp.names)}

    edge_keys: dict[tuple, list[tuple[str, str]]] = {}
    for p, c in spec.edges:
        edge_keys.setdefault(("state", slot[p][0], slot[c][0]), []).append((p, c))
    for node in spec.nodes:
        k = slot[node.name][0]
        if node.temporal:
            edge_keys.setdefault(("past", k, k), []).append((node.name, node.name))
        if node.action:
            edge_keys.setdefault(("action", -1, k), []).append(("<action>", node.name))
    edge_groups = []
    for (source, src, dst), edges in edge_keys.items():
        edges.sort(key=lambda e: slot[e[1]][1])
        src_index = tuple(0 if source == "action" else slot[p][1] for p, _ in edges)
        edge_groups.append(EdgeGroup(source, src, dst, tuple(edges), src_index,
                                     tuple(slot[c][1] for _, c in edges)))
    return groups, edge_groups, slot
