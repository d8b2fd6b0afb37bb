"""Amortised inference: a learned bottom-up recogniser that starts the E-step near its answer.

Hybrid predictive coding (Tschantz et al. 2023): a fast feed-forward sweep proposes the
states of hidden columns from their children (data flows up the hierarchy, against the
generative arrows), and iterative inference refines it. The recogniser is trained to predict
the *converged* states, so a familiar input needs few iterations. Each column's map sees
only its children's states and its own target, so its learning rule is local too.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from cortex.model import PCModel


class Recognizer(nn.Module):
    """Bottom-up maps ``z^n ~ R_n [f(z^c) for c in children(n)] + r_n`` for hidden columns.

    Columns are visited children-first, so a column's proposal uses its children's data or
    their own proposals. ``targets`` lists the columns it initialises (hidden, with children).
    """

    def __init__(self, model: PCModel, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        spec = model.spec
        self.targets = tuple(
            n.name for n in reversed(spec.nodes) if n.kind == "hidden" and spec.children(n.name)
        )
        self.children_of = {n: spec.children(n) for n in self.targets}
        self._f = {n.name: model.groups[model.slot[n.name][0]].f for n in spec.nodes}
        self.maps = nn.ModuleDict()
        for name in self.targets:
            fan_in = sum(spec.node(c).dim for c in self.children_of[name])
            layer = nn.Linear(fan_in, spec.node(name).dim, device=model.device, dtype=model.dtype)
            bound = fan_in ** -0.5
            with torch.no_grad():
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator) * 2 - 1) * bound)
                layer.bias.zero_()
            self.maps[name] = layer

    def _features(self, name: str, z: Mapping[str, Tensor]) -> Tensor:
        return torch.cat([self._f[c].fn(z[c]) for c in self.children_of[name]], dim=-1)

    def forward(self, z: Mapping[str, Tensor], clamped: set[str] = frozenset()) -> dict[str, Tensor]:
        """Proposals ``{node: (B, d)}`` for the target columns not in ``clamped``."""
        z = dict(z)
        out = {}
        for name in self.targets:
            if name not in clamped:
                out[name] = z[name] = self.maps[name](self._features(name, z))
        return out

    def loss(self, converged: Mapping[str, Tensor]) -> Tensor:
        """1/2 squared distance to the converged states, batch mean, each map fed the
        converged children (teacher forcing keeps every column's update local)."""
        total = 0.0
        for name in self.targets:
            pred = self.maps[name](self._features(name, {k: v.detach() for k, v in converged.items()}))
            total = total + 0.5 * ((pred - converged[name].detach()) ** 2).sum(-1).mean()
        return total
