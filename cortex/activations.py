"""Pointwise nonlinearities used by cortical columns, each with its derivative.

A column applies ``f`` to its own state when it predicts others (the firing-rate readout of
z) and ``g`` to the summed input of its own prediction. The local learning and inference
rules need the derivatives explicitly (DESIGN.md §3), so each activation is a pair of pure
functions of the *input* x.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """A named nonlinearity ``fn`` with its elementwise derivative ``grad`` (both of x).

    ``grad_given`` is the same derivative computed from x *and* fn(x), which the inference
    loop already holds; for tanh and sigmoid it saves a second transcendental evaluation.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    grad_given: Callable[[Tensor, Tensor], Tensor] | None = None
    fused_vjp: Callable[[Tensor, Tensor], Tensor] | None = None
    """``(v, fx) -> f'(x) * v`` as one kernel (torch's own backward of the activation)."""

    def derivative(self, x: Tensor, fx: Tensor) -> Tensor:
        """f'(x), given x and fx = f(x)."""
        return self.grad(x) if self.grad_given is None else self.grad_given(x, fx)

    def vjp(self, v: Tensor, x: Tensor, fx: Tensor) -> Tensor:
        """f'(x) * v, given x and fx = f(x): one fused op for tanh and sigmoid."""
        if self.fused_vjp is not None:
            return self.fused_vjp(v, fx)
        return v if self.is_identity else self.derivative(x, fx) * v

    @property
    def is_identity(self) -> bool:
        return self.name == "identity"


# tanh x ~ x P(x^2) / Q(x^2) on [-c, c] (+-1 beyond): the minimax rational form that Eigen and
# XLA evaluate on CPUs (their published coefficients); within 3.6e-7 of tanh in absolute and in
# relative error over the floats.
_TANH_CLAMP = 7.90531110763549805
_TANH_P = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
           -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
_TANH_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _horner(coefficients: tuple[float, ...], x: Tensor) -> Tensor:
    out = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = out * x + c
    return out


def _tanh(x: Tensor) -> Tensor:
    """tanh x; inside a ``torch.compile``d region on a CPU as the rational form above, which
    Inductor fuses into its neighbours: its own vectorised tanh costs ~5 ns per float there
    (AVX2), a fifth of a compiled pc-digits step. Eager calls ``torch.tanh``."""
    if torch.compiler.is_compiling() and x.device.type == "cpu":
        x = x.clamp(-_TANH_CLAMP, _TANH_CLAMP)
        x2 = x * x
        return x * _horner(_TANH_P, x2) / _horner(_TANH_Q, x2)
    return torch.tanh(x)


def _tanh_grad(x: Tensor) -> Tensor:
    t = _tanh(x)
    return 1.0 - t * t


def _sigmoid_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 - s)


_LEAK = 0.01
_ONE = torch.ones(())

ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("identity", lambda x: x, torch.ones_like),
        Activation("tanh", _tanh, _tanh_grad, lambda x, fx: torch.addcmul(_ONE.to(fx), fx, fx, value=-1.0),
                   torch.ops.aten.tanh_backward),
        Activation("sigmoid", torch.sigmoid, _sigmoid_grad, lambda x, fx: fx * (1.0 - fx),
                   torch.ops.aten.sigmoid_backward),
        Activation("relu", torch.relu, lambda x: (x > 0).to(x.dtype)),
        Activation(
            "leaky_relu",
            lambda x: torch.nn.functional.leaky_relu(x, _LEAK),
            lambda x: torch.where(x > 0, torch.ones_like(x), torch.full_like(x, _LEAK)),
        ),
        Activation("softplus", torch.nn.functional.softplus, torch.sigmoid),
    )
}


def get_activation(name: str) -> Activation:
    """Look an activation up by name; unknown names list the valid ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None
