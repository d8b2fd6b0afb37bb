"""Iterative inference (the E-step): gradient descent of the free energy on the free states.

``infer`` clamps the columns it is given data for, initialises the others (amortised
recognition, the forward/prior pass, the previous state, or zeros) and runs K steps of
``z <- z - lr * dF/dz`` with the explicit local gradient of :meth:`PCModel.evaluate`
(optionally with momentum and an early stop when F stops falling). It returns the beliefs —
states, per-node energies and the free-energy trace — rather than hiding them on the model.
Non-finite values stop inference with an error that names the node and the step.
"""
from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass, replace
from typing import Callable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from cortex.model import Evaluation, Grouped, PCModel, Step, Wavefront
from cortex.recognition import Recognizer

InitMode = Literal["forward", "amortised", "zeros"]


@dataclass(frozen=True)
class InferenceConfig:
    """How the E-step runs."""

    steps: int = 20
    """K: inference iterations per sample (per time step in a temporal model)."""
    lr: float = 0.1
    """Step size eta of z <- z - eta dF/dz."""
    momentum: float = 0.0
    """Heavy-ball momentum on the state updates (0 = plain gradient descent)."""
    init: InitMode = "forward"
    """``forward``: each free node starts at its prediction from its parents (the prior /
    feed-forward pass); ``amortised``: the learned bottom-up recogniser; ``zeros``."""
    tol: float = 0.0
    """Stop early once one step lowers the batch free energy by less than ``tol`` (relative).
    This reads F on the host at every iteration; without it the loop never waits on the device."""
    check_every: int = 8
    """Read the divergence check (is the free-energy trace finite?) every this many iterations."""
    compile: bool = False
    """Run inference as one ``torch.compile``d unit. On a CPU the unit is the whole call:
    initialisation, the K iterations, the final evaluation and, in :func:`~cortex.learning.learn_step`,
    the local-rule gradients, with a C++ wrapper calling the kernels; on a GPU it is the K
    iterations, as CUDA graphs. The first call per shape compiles (seconds to a minute). The
    numbers equal the eager path's to float rounding (traced, tanh is a rational form within
    4e-7 of torch's). The first call of each kind is checked against the eager path (a
    disagreeing compiled unit is reported and not used again). A divergence is replayed eagerly
    to name its node and step. Not with ``tol`` (an early stop reads F on the host every
    iteration)."""

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"inference steps must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"inference lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"inference momentum must be in [0, 1), got {self.momentum}")
        if self.compile and self.tol:
            raise ValueError("inference compile=True cannot stop early (tol > 0): set one of them")
        if self.check_every < 1:
            raise ValueError(f"inference check_every must be >= 1, got {self.check_every}")
        if self.init not in ("forward", "amortised", "zeros"):
            raise ValueError(f"inference init must be forward, amortised or zeros, got {self.init!r}")


class InferenceDivergedError(FloatingPointError):
    """Inference produced a non-finite state or energy; names the node and the step."""

    def __init__(self, node: str, step: int, what: str = "state") -> None:
        super().__init__(f"inference diverged: non-finite {what} at node {node!r} on inference step {step} "
                         "(lower the inference lr or check the data)")
        self.node, self.step = node, step


@dataclass
class Beliefs:
    """The result of inference: states and the free energy, for a batch of B samples."""

    z: Grouped
    """Converged states, grouped ``(N_g, B, d_g)``; ``model.to_dict(z)`` or ``beliefs[name]``."""
    energy: Grouped
    """Per-node free energy at the final state, ``(N_g, B)``."""
    errors: Grouped
    """Prediction errors eps = z - mu at the final state, ``(N_g, B, d_g)`` (0 at input nodes)."""
    trace: Tensor
    """Batch-mean free energy before each iteration and after the last, ``(steps + 1,)``."""
    free: Grouped
    """Mask ``(N_g, B, 1)`` of the entries inference may change (1 = free, 0 = clamped)."""
    drive: Grouped
    """The state-independent input b + U f(z_prev) + B a_prev used (see ``PCModel.drive``)."""
    slot: Mapping[str, tuple[int, int]]
    evaluation: Evaluation | None = None
    """The full local evaluation at the final state (what the M-step reuses)."""

    def __getitem__(self, node: str) -> Tensor:
        k, i = self.slot[node]
        return self.z[k][i]

    def error(self, node: str) -> Tensor:
        """Prediction error of one column at the final state, ``(B, d)``."""
        k, i = self.slot[node]
        return self.errors[k][i]

    def node_energy(self, node: str) -> Tensor:
        """Free energy of one column per sample, ``(B,)``."""
        k, i = self.slot[node]
        return self.energy[k][i]

    @property
    def free_energy(self) -> Tensor:
        """Total free energy per sample at the final state, ``(B,)``."""
        return sum(e.sum(0) for e in self.energy)

    @property
    def steps(self) -> int:
        return self.trace.numel() - 1


def _finite(x: Tensor) -> bool:
    """Whether every entry of ``x`` is finite: one reduction and one read from the device (the
    largest magnitude is NaN or inf exactly when some entry is; half the cost of isfinite().all())."""
    return x.numel() == 0 or math.isfinite(x.abs().amax().item())


def check_data(model: PCModel, data: Mapping[str, Tensor], finite: bool = True) -> int:
    """Validate clamped data against the model and return the batch size.

    Every ``input`` node needs data; each tensor must be ``(B, d_node)`` with one B for all,
    finite (unless ``finite=False``: the caller checks that itself), on the model's device.
    Errors name the node.
    """
    spec = model.spec
    for node in spec.nodes:
        if node.kind == "input" and node.name not in data:
            raise ValueError(f"input node {node.name!r} needs data (it cannot be inferred)")
    batch, device = None, model.device
    for name, x in data.items():
        if name not in model.slot:
            raise ValueError(f"data for unknown node {name!r}; nodes are {list(spec.names)}")
        if not isinstance(x, Tensor):
            raise TypeError(f"data for node {name!r} must be a torch.Tensor, got {type(x).__name__}")
        dim = spec.node(name).dim
        if x.dim() != 2 or x.shape[1] != dim:
            raise ValueError(f"data for node {name!r} has shape {tuple(x.shape)}; expected (batch, {dim})")
        if batch is None:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            raise ValueError(f"data for node {name!r} has batch size {x.shape[0]}, others have {batch}")
        if x.device != device:
            raise ValueError(f"data for node {name!r} is on {x.device}, the model on {device}")
    if batch is None:
        raise ValueError("infer() needs data for at least one node")
    if finite and batch and not _finite(torch.stack([x.abs().amax() for x in data.values()])):  # one read for all
        bad = next(name for name, x in data.items() if not _finite(x))
        raise ValueError(f"data for node {bad!r} contains NaN or inf")
    return batch


def initial_state(
    model: PCModel, data: Mapping[str, Tensor], batch: int, drive: Grouped, init: InitMode, start: Mapping[str, Tensor] | None = None, recognizer: Recognizer | None = None,
) -> Grouped:
    """The starting state: clamped data in place, free nodes set by ``init`` (or ``start``)."""
    z = model.to_grouped({n: x.to(model.dtype) for n, x in data.items()}, batch)
    start = dict(start or {})
    for name, x in start.items():
        if name not in model.slot:
            raise ValueError(f"start value for unknown node {name!r}; nodes are {list(model.slot)}")
        if x.shape != (batch, model.spec.node(name).dim):
            raise ValueError(f"start value for node {name!r} has shape {tuple(x.shape)}; "
                             f"expected ({batch}, {model.spec.node(name).dim})")
        if name not in data:
            k, i = model.slot[name]
            z[k][i] = x
    if init == "zeros":
        return z
    if init == "amortised":
        if recognizer is None:
            raise ValueError("init='amortised' needs a recogniser: pass recognizer=cortex.Recognizer(model)")
        for name, value in recognizer(model.to_dict(z), clamped=set(data) | set(start)).items():
            k, i = model.slot[name]
            z[k][i] = value
        done = set(data) | set(start) | set(recognizer.targets)
    else:
        done = set(data) | set(start)
    return forward_fill(model, z, drive, done)


def forward_fill(model: PCModel, z: Grouped, drive: Grouped, done: set[str] = frozenset()) -> Grouped:
    """Set every node not in ``done`` to its prediction mu, parents first (in place): the
    feed-forward sweep of a discriminative net, or the prior (imagination) of a generative /
    temporal one. See :meth:`PCModel.fill`."""
    return model.fill(z, drive, frozenset(done))


def infer(
    model: PCModel,
    data: Mapping[str, Tensor],
    config: InferenceConfig = InferenceConfig(),
    *,
    past: Grouped | None = None,
    action: Tensor | None = None,
    start: Mapping[str, Tensor] | None = None,
    recognizer: Recognizer | None = None,
) -> Beliefs:
    """Infer the free states given ``data`` (``{node: (B, d)}``, clamped).

    ``past`` (grouped previous states) and ``action`` (``(B, action_dim)``, the previous
    action) enter a temporal model's prior; ``start`` overrides the initial value of free
    nodes (e.g. the previous state); ``recognizer`` serves ``init="amortised"``. Observed nodes without data are inferred like hidden
    ones — free the label node at test time to read it out.
    """
    return _run(model, data, config, past, action, start, recognizer, rule=False)[0]


def _run(model: PCModel, data: Mapping[str, Tensor], config: InferenceConfig, past: Grouped | None,
         action: Tensor | None, start: Mapping[str, Tensor] | None, recognizer: Recognizer | None,
         rule: bool) -> tuple[Beliefs, list[Tensor | None] | None]:
    """:func:`infer`; with ``rule`` and ``config.compile`` also the local-rule gradients at the
    converged state (``dF/dtheta`` per :meth:`PCModel.rule_parameters`), computed in the same
    compiled unit. The gradients are None when the eager path ran (the caller accumulates them)."""
    compiled = bool(config.compile and config.steps and model.device.type == "cpu")
    batch = check_data(model, data, finite=not compiled)  # compiled: checked in the graph
    if action is not None and (action.dim() != 2 or action.shape != (batch, model.spec.action_dim)):
        raise ValueError(
            f"action has shape {tuple(action.shape)}; expected (batch={batch}, action_dim={model.spec.action_dim})"
        )
    if compiled and batch:
        result = _run_compiled(model, data, config, batch, past, action, start, recognizer, rule)
        if result is not None:
            return result
        config = replace(config, compile=False)
    return _infer(model, data, config, batch, past, action, start, recognizer, False)


def _run_compiled(model: PCModel, data: Mapping[str, Tensor], config: InferenceConfig, batch: int,
                  past: Grouped | None, action: Tensor | None, start: Mapping[str, Tensor] | None,
                  recognizer: Recognizer | None, rule: bool) -> tuple[Beliefs, list | None] | None:
    """The whole call as one compiled unit (on a CPU), or None where the eager path must run:
    the trace or the data is not finite (the eager path names the node), or this kind of call
    disagreed with the eager path on its first call.

    The first call of each kind (model, clamped nodes, batch, config) is checked against the
    eager path: a compiler that mis-orders the graph (as torch 2.13's Inductor did a sheet's
    compiled loop) must not pass for a result."""
    # On a GPU only the loop is compiled (in descend), as CUDA graphs: their outputs are
    # overwritten by the next replay, which the beliefs of a whole compiled call would be.
    verified = _VERIFIED.setdefault(model, {})
    key = (tuple(data), batch, config, rule, past is None, action is None, tuple(start or ()), recognizer is None)
    if not verified.get(key, True):
        return None
    model.spec.generations()  # built once on the host (networkx), then only read when traced
    args = (config, batch, past, action, start, recognizer)
    beliefs, grads, finite = _compiled(_infer_checked, model.device.type)(model, data, *args, rule)
    if not math.isfinite(finite.item()):  # one read from the device per call
        check_data(model, data)
        return None
    if key in verified:
        return beliefs, grads
    eager = _infer(model, data, replace(config, compile=False), *args[1:], False)
    verified[key] = bool(torch.allclose(beliefs.trace, eager[0].trace, rtol=1e-3))
    if verified[key]:
        return beliefs, grads
    warnings.warn(f"compile=True: the compiled inference's free-energy trace {beliefs.trace.tolist()} "
                  f"differs from the eager path's {eager[0].trace.tolist()}; this model runs eager "
                  "for data of these nodes and shape (a compiler bug, or inference so "
                  "unstable that float rounding changes its course)")
    return eager


# Per model, per kind of compiled call: whether its first call agreed with the eager path.
_VERIFIED: weakref.WeakKeyDictionary[PCModel, dict[tuple, bool]] = weakref.WeakKeyDictionary()


def _infer(model: PCModel, data: Mapping[str, Tensor], config: InferenceConfig, batch: int,
           past: Grouped | None, action: Tensor | None, start: Mapping[str, Tensor] | None,
           recognizer: Recognizer | None, rule: bool) -> tuple[Beliefs, list[Tensor | None] | None]:
    """The body of :func:`infer` after its checks: what ``compile=True`` compiles as one unit
    (initialisation, the K iterations, the final evaluation and with ``rule`` the gradients)."""
    with torch.no_grad():
        drive = model.drive(batch, past, action)
        free = model.clamped_mask(data, batch)
        z = initial_state(model, data, batch, drive, config.init, start, recognizer)
        plan = model.plan(active=[any(n not in data for n in g.names) for g in model.groups])
        lead = []
        if torch.compiler.is_compiling() and config.init == "forward":
            # The fill set the columns it filled to their predictions: the first iterations
            # compute only the errors that its clamped columns have reached. Traced only, so the
            # eager path's numbers stay those of earlier releases (they differ in rounding).
            lead = Wavefront(model, plan, z, drive, data, set(data) | set(start or {}), config.steps).steps()
        z, ev, trace = descend(model, z, free, config, lambda state: model.gradient(state, drive, plan),
                               lambda state: model.evaluate(state, drive, plan, gradient=False), lead)
        grads = [None if g is None else g * scale for g, scale in model.local_grads(ev, past, action)] if rule else None
    return Beliefs(z=z, energy=ev.energies, errors=ev.errors, trace=trace, free=free, drive=drive,
                   slot=model.slot, evaluation=ev), grads


def _infer_checked(model: PCModel, data: Mapping[str, Tensor], *args) -> tuple[Beliefs, list | None, Tensor]:
    """:func:`_infer`, and the one number its compiled caller reads: finite iff the data and the
    free-energy trace are (0 * x is NaN for an infinite or NaN x)."""
    beliefs, grads = _infer(model, data, *args)
    with torch.no_grad():
        return beliefs, grads, beliefs.trace.sum() + sum(x.abs().amax() for x in data.values()) * 0


def descend(
    model: PCModel, z: Grouped, free: Grouped, config: InferenceConfig,
    step: Callable[[Grouped], Step], evaluate: Callable[[Grouped], Evaluation],
    lead: Sequence[Callable[[Grouped], Step]] = (),
) -> tuple[Grouped, Evaluation, Tensor]:
    """K local gradient steps on the free entries of ``z`` (in place).

    ``step(z)`` gives dF/dz and the quadratic energy at a state (:meth:`PCModel.gradient`
    with a fixed drive when filtering; a window's when smoothing); ``lead`` replaces it at
    the first iterations (the same steps, skipping work known to be zero: :class:`Wavefront`);
    ``evaluate(z)`` the :class:`Evaluation` (its ``grad`` is not needed), taken once at the
    final state. Returns the final state, its evaluation and the trace of the batch-mean free
    energy.

    Nothing here waits on the device inside the loop unless ``config.tol`` asks for an early
    stop: the trace stays a list of 0-d tensors, and its finiteness is read every
    ``config.check_every`` iterations. When it fails, the iterations since the last check are
    replayed one at a time from a saved copy of the state, to name the node and the step.
    """
    batch = z[0].shape[1]
    traced = torch.compiler.is_compiling()  # inside a compiled infer: the caller checks the trace
    rate = _rates(free, config.lr, traced)
    velocity = [torch.zeros_like(zg) for zg in z] if config.momentum else None
    log_norm = model.log_normalizer()
    trace: list[Tensor] = []
    checked, saved = 0, None if traced else _snapshot(z, velocity)
    stopped = False
    if config.compile and config.steps:
        loop = _loop if traced else _compiled(_loop, z[0].device.type)
        trace = list(loop(step, z, free, rate, velocity, config, lead))
    for it in range(len(trace), config.steps):
        s = (lead[it] if it < len(lead) else step)(z)
        trace.append(s.quadratic)
        if config.tol:
            f = trace[-1] = 0.5 * s.quadratic / batch + log_norm
            if not torch.isfinite(f):
                _locate_divergence(model, saved, free, config, step, evaluate, checked)
            if it > 0 and trace[-2] - f < config.tol * trace[-2].abs():
                stopped = True
                break
        _update(z, s.grad, free, rate, velocity, config)
        if not config.tol and len(trace) - checked >= config.check_every:
            if not _finite(torch.stack(trace[checked:])):
                _locate_divergence(model, saved, free, config, step, evaluate, checked)
            checked, saved = len(trace), _snapshot(z, velocity)  # z is now state number len(trace)
    ev = evaluate(z)
    trace = torch.stack(trace) if trace else ev.energies[0].new_zeros(0)
    if not config.tol:  # the plain loop kept eps^T Pi eps summed over the batch: make it F
        trace = 0.5 * trace / batch + log_norm
    if not stopped:
        trace = torch.cat([trace, ev.total().mean().reshape(1)])
    if not traced and not _finite(trace[checked:]):
        _locate_divergence(model, saved, free, config, step, evaluate, checked)
    return z, ev, trace


def _loop(step: Callable[[Grouped], Step], z: Grouped, free: Grouped, rate: list,
          velocity: Grouped | None, config: InferenceConfig,
          lead: Sequence[Callable[[Grouped], Step]] = ()) -> Tensor:
    """The K iterations with nothing read on the host: what ``compile=True`` compiles."""
    quadratic = []
    for it in range(config.steps):
        s = (lead[it] if it < len(lead) else step)(z)
        quadratic.append(s.quadratic)
        _update(z, s.grad, free, rate, velocity, config)
    return torch.stack(quadratic)


_COMPILED: dict[tuple[Callable, str], Callable] = {}


def _compiled(fn: Callable, device_type: str) -> Callable:
    """``fn`` compiled as one graph for a device type, once per process: on a GPU as CUDA
    graphs (the K iterations are one launch), on a CPU with a C++ wrapper calling the kernels
    (at pc-digits' sizes ~15 % faster than Python calling them).

    In the K iterations compiled alone (the temporal filter, a GPU) Inductor's reordering for
    peak memory is off: in torch 2.13 it mis-ordered that loop for a three-level sheet, whose
    free-energy trace then lost every other update (the eager and ``aot_eager`` traces agree;
    Inductor's agrees with them once the pass is off; ``tests/test_cortex_kernel.py``). The
    whole call keeps the pass (4-10 % faster at B = 256, width 512); :func:`_run_compiled` checks the
    first call of each kind against the eager path."""
    key = (fn, device_type)
    if key not in _COMPILED:
        # reduce-overhead is CUDA graphs; on a CPU a C++ wrapper calls the kernels
        options = {"triton.cudagraphs": True} if device_type == "cuda" else {"cpp_wrapper": True}
        if fn is _loop:
            options["reorder_for_peak_memory"] = False
        _COMPILED[key] = torch.compile(fn, fullgraph=True, dynamic=False, options=options)
    return _COMPILED[key]


def _rates(free: Grouped, lr: float, traced: bool = False) -> list[float | Tensor]:
    """-lr where a whole group is free (a scalar step: the fast path), else -lr * mask; always
    the mask when ``traced`` (reading the mask on the host would break the graph)."""
    return [f * -lr if traced or not bool(f.all()) else -lr for f in free]


def _update(z: Grouped, grad: list[Tensor | None], free: Grouped, rate: Grouped,
            velocity: Grouped | None, config: InferenceConfig) -> None:
    """z <- z - lr * dF/dz on the free entries (heavy-ball with momentum)."""
    for k, (zg, gk) in enumerate(zip(z, grad)):
        if gk is None:
            continue
        if velocity is None:
            if isinstance(rate[k], float):
                zg.add_(gk, alpha=rate[k])
            else:
                zg.addcmul_(gk, rate[k])
        else:
            velocity[k].mul_(config.momentum).addcmul_(gk, free[k])
            zg.sub_(velocity[k], alpha=config.lr)


def _snapshot(z: Grouped, velocity: Grouped | None) -> tuple[Grouped, Grouped | None]:
    return [zg.clone() for zg in z], None if velocity is None else [v.clone() for v in velocity]


def _locate_divergence(model: PCModel, saved: tuple[Grouped, Grouped | None], free: Grouped,
                       config: InferenceConfig, step: Callable[[Grouped], Step],
                       evaluate: Callable[[Grouped], Evaluation], first: int) -> None:
    """Replay from the state saved at iteration ``first``, checking every step, and raise
    :class:`InferenceDivergedError` at the first non-finite one."""
    z = [zg.clone() for zg in saved[0]]
    velocity = None if saved[1] is None else [v.clone() for v in saved[1]]
    rate = _rates(free, config.lr)
    for it in range(first, config.steps + 1):
        ev = evaluate(z)
        if not torch.isfinite(ev.total().mean()):
            _raise_diverged(model, z, ev, it)
        _update(z, step(z).grad, free, rate, velocity, config)
    raise InferenceDivergedError(model.spec.names[0], config.steps, "free energy (not reproduced on replay)")


def _raise_diverged(model: PCModel, z: Grouped, ev: Evaluation, step: int) -> None:
    for name, (k, i) in model.slot.items():
        if not torch.isfinite(z[k][i]).all():
            raise InferenceDivergedError(name, step, "state")
    for name, (k, i) in model.slot.items():
        if not torch.isfinite(ev.energies[k][i]).all():
            raise InferenceDivergedError(name, step, "energy")
    # Every term is finite but their sum overflowed: name the largest contributor.
    largest = max(model.slot, key=lambda n: ev.energies[model.slot[n][0]][model.slot[n][1]].abs().max().item())
    raise InferenceDivergedError(largest, step, "free energy (overflow; largest term)")
