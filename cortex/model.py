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

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

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
        self._all_energy = [all(spec.node(n).has_energy for n in grp.names) for grp in self.groups]
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

    def _select(self, x: Tensor, sel: slice | str) -> Tensor:
        return x[sel] if isinstance(sel, slice) else x.index_select(0, getattr(self, sel))

    def _add_into(self, target: Tensor, sel: slice | str, value: Tensor) -> None:
        if isinstance(sel, slice):
            target[sel] += value
        else:
            target.index_add_(0, getattr(self, sel), value)

    def zeros(self, batch: int) -> Grouped:
        """A grouped all-zero state for ``batch`` samples."""
        return [torch.zeros(len(g.names), batch, g.dim, device=self.device, dtype=self.dtype) for g in self.groups]

    def to_grouped(self, z: Mapping[str, Tensor], batch: int) -> Grouped:
        """Pack a ``{node: (B, d)}`` mapping into grouped form (missing nodes are zero)."""
        out = self.zeros(batch)
        for name, value in z.items():
            k, i = self.slot[name]
            out[k][i] = value
        return out

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
        for eg, w, (src_sel, dst_sel) in zip(self.edge_groups, self.weights, self._selectors):
            if eg.source == "past" and past is not None:
                x = self._select(self.groups[eg.src].f.fn(past[eg.src]), src_sel)
            elif eg.source == "action" and action is not None:
                x = action.unsqueeze(0).expand(len(eg.edges), -1, -1)
            else:
                continue
            self._add_into(out[eg.dst], dst_sel, torch.bmm(x, w.transpose(1, 2)))
        return out

    def predict(self, z: Grouped, drive: Grouped) -> tuple[Grouped, Grouped]:
        """Summed inputs ``a`` and prediction means ``mu = g(a)`` for every node, grouped."""
        _, pre, mu = self._forward(z, drive)
        return pre, mu

    def _forward(self, z: Grouped, drive: Grouped) -> tuple[Grouped, Grouped, Grouped]:
        """Rates f(z), summed inputs a and means mu = g(a), grouped."""
        batch = z[0].shape[1]
        fz = [zg if grp.f.is_identity else grp.f.fn(zg) for grp, zg in zip(self.groups, z)]
        pre: list[Tensor | None] = [None] * len(self.groups)
        for eg, w, (src_sel, dst_sel), full in zip(self.edge_groups, self.weights, self._selectors, self._dst_full):
            if eg.source != "state":
                continue
            x = self._select(fz[eg.src], src_sel)
            if pre[eg.dst] is None and full:
                # The edge group feeds every node of its target group: fuse the drive in.
                pre[eg.dst] = torch.baddbmm(drive[eg.dst], x, w.transpose(1, 2))
                continue
            if pre[eg.dst] is None:
                pre[eg.dst] = drive[eg.dst].expand(-1, batch, -1).clone()
            self._add_into(pre[eg.dst], dst_sel, torch.bmm(x, w.transpose(1, 2)))
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
    def evaluate(self, z: Grouped, drive: Grouped) -> "Evaluation":
        """Errors, energies and the local gradient dF/dz at state ``z`` (no autograd)."""
        with torch.no_grad():
            fz, pre, mu = self._forward(z, drive)
            energies, eps, weighted = self.node_energy(z, mu)
            h = [w if grp.g.is_identity else grp.g.derivative(a, m) * w
                 for grp, a, m, w in zip(self.groups, pre, mu, weighted)]
            back: list[Tensor | None] = [None] * len(self.groups)
            for eg, w, (src_sel, dst_sel), full in zip(self.edge_groups, self.weights, self._selectors, self._src_full):
                if eg.source != "state":
                    continue
                contrib = torch.bmm(self._select(h[eg.dst], dst_sel), w)
                if back[eg.src] is None and full:
                    back[eg.src] = contrib
                    continue
                if back[eg.src] is None:
                    back[eg.src] = torch.zeros_like(z[eg.src])
                self._add_into(back[eg.src], src_sel, contrib)
            grad = [
                wg if bk is None else wg - bk if grp.f.is_identity
                else torch.addcmul(wg, grp.f.derivative(zg, f), bk, value=-1.0)
                for grp, zg, f, wg, bk in zip(self.groups, z, fz, weighted, back)
            ]
        return Evaluation(energies=energies, errors=eps, grad=grad, h=h, rates=fz)

    def past_gradient(self, past: Grouped, h: Grouped) -> Grouped:
        """dF/dz_{t-1} through the temporal edges: ``-f'(z_{t-1}) * U^T (g' * Pi eps)``, grouped.

        ``h`` comes from :meth:`evaluate` at time t. Smoothing over a window adds this to the
        gradient of the state one step earlier; filtering keeps the past fixed and skips it.
        """
        with torch.no_grad():
            back = [torch.zeros_like(p) for p in past]
            for eg, w, (src_sel, dst_sel) in zip(self.edge_groups, self.weights, self._selectors):
                if eg.source == "past":
                    self._add_into(back[eg.src], src_sel, torch.bmm(self._select(h[eg.dst], dst_sel), w))
            return [-(b if grp.f.is_identity else grp.f.grad(p) * b)
                    for grp, p, b in zip(self.groups, past, back)]

    def accumulate_grads(
        self, z: Grouped, drive: Grouped | None = None, *, past: Grouped | None = None,
        action: Tensor | None = None,
    ) -> Evaluation:
        """Add the local-rule gradients of the batch-mean free energy to every ``.grad``.

        dF/dW_{n<-p} = -(g'_n * Pi_n eps_n) f(z^p)^T, dF/db_n = -(g'_n * Pi_n eps_n),
        dF/dU_n = -(...) f(z_{t-1}^n)^T, dF/dB_n = -(...) a_{t-1}^T and, with Pi = exp(s),
        dF/ds_n = 1/2 Pi_n eps_n^2 - 1/2 — each averaged over the batch. ``past`` and
        ``action`` must be what ``drive`` was built from. Like ``Tensor.backward`` this
        accumulates, so gradients over several time steps add up; any ``torch.optim`` applies.
        """
        batch = z[0].shape[1]
        drive = self.drive(batch, past, action) if drive is None else drive
        ev = self.evaluate(z, drive)
        with torch.no_grad():
            fz = ev.rates
            fpast = None if past is None else [grp.f.fn(p) for grp, p in zip(self.groups, past)]
            for eg, w, (src_sel, dst_sel) in zip(self.edge_groups, self.weights, self._selectors):
                if eg.source == "state":
                    x = self._select(fz[eg.src], src_sel)
                elif eg.source == "past":
                    if fpast is None:
                        continue
                    x = self._select(fpast[eg.src], src_sel)
                else:
                    if action is None:
                        continue
                    x = action.unsqueeze(0).expand(len(eg.edges), -1, -1)
                g = -torch.bmm(self._select(ev.h[eg.dst], dst_sel).transpose(1, 2), x) / batch
                _accumulate(w, g)
            for k, (b, lp) in enumerate(zip(self.bias, self.log_precision)):
                _accumulate(b, -ev.h[k].sum(1) / batch)
                s = 0.5 * (lp.exp().unsqueeze(1) * ev.errors[k] ** 2).mean(1) - 0.5
                _accumulate(lp, s * self.energy_mask(k)[:, :, 0] * getattr(self, f"_learnprec{k}"))
        return ev


@dataclass
class Evaluation:
    """The local quantities at one state (all grouped, ``(N_g, B, ...)``)."""

    energies: Grouped
    """Per-node free energy ``(N_g, B)``."""
    errors: Grouped
    """Prediction errors eps = z - mu (0 at input nodes)."""
    grad: Grouped
    """dF/dz, before masking clamped nodes."""
    h: Grouped
    """g'(a) * Pi eps: the error each node sends back to its parents."""
    rates: Grouped
    """f(z): what each node sends to its children."""

    def total(self) -> Tensor:
        """Free energy per sample ``(B,)``."""
        return sum(e.sum(0) for e in self.energies)


def _accumulate(param: Tensor, grad: Tensor) -> None:
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad += grad


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
