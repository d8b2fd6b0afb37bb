"""Temporal, active predictive coding: inference step by step as observations arrive.

Every temporal column's prior mean also depends on its own previous state (U) and on the
previous action (B, the efference copy) — DESIGN.md §2. At time t the model infers z_t from
x_t with the past fixed (filtering, ``window=1``), or re-infers the last W steps together
given the state just before them (smoothing, ``window=W``): then the free energy of the
window is ``sum_tau F_tau`` and a state also feels the error it causes one step later,
through ``U^T``. Learning (the world model) is the same local rule at the converged states.

Conventions: ``observations[name]`` is ``(T, B, d)``; ``actions`` is ``(T, B, action_dim)``
with ``actions[t]`` the action taken *after* seeing x_t, so the prior at t uses
``actions[t-1]``; before the first step the state and the action are zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from cortex.inference import InferenceConfig, check_data, descend, forward_fill
from cortex.model import Evaluation, Grouped, PCModel, Step


@dataclass
class Trajectory:
    """What temporal inference produced at each time step (the online, filtered estimates)."""

    z: dict[str, Tensor]
    """States ``(T, B, d)`` per node, as estimated at time t."""
    errors: dict[str, Tensor]
    """Prediction errors ``(T, B, d)`` per node at time t."""
    energy: dict[str, Tensor]
    """Free energy of each node per step and sample, ``(T, B)``."""
    trace: Tensor
    """Batch-mean free energy of the step (or window) over inference iterations, ``(T, K+1)``;
    after an early stop (``tol``) the last value repeats."""
    final: Grouped
    """The last state, grouped; pass it as ``start_state`` to continue, or to :func:`rollout`."""


def check_sequences(model: PCModel, observations: Mapping[str, Tensor], actions: Tensor | None) -> tuple[int, int]:
    """Validate sequences against the model; returns (T, B). Errors name the culprit."""
    if not observations:
        raise ValueError("temporal inference needs observations for at least one node")
    lengths = {name: x.shape[0] for name, x in observations.items() if isinstance(x, Tensor) and x.dim() == 3}
    for name, x in observations.items():
        if not isinstance(x, Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"observations for node {name!r} must be (T, B, d), got {shape}")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"observation sequences differ in length: {lengths}")
    steps = next(iter(lengths.values()))
    batch = check_data(model, {n: x[0] for n, x in observations.items()})
    action_dim = model.spec.action_dim
    if actions is not None:
        if action_dim == 0:
            raise ValueError("actions were given but the model has action_dim=0 (no efference copy)")
        if actions.dim() != 3 or actions.shape != (steps, batch, action_dim):
            raise ValueError(
                f"actions have shape {tuple(actions.shape)}; expected (T={steps}, B={batch}, action_dim={action_dim})"
            )
        if not torch.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf")
    return steps, batch


class _Window:
    """Free energy of the states z_{lo..t} (folded into the batch) given z_{lo-1}."""

    def __init__(self, model: PCModel, before: Grouped, actions_prev: Tensor | None, width: int, batch: int):
        self.model, self.before, self.actions_prev = model, before, actions_prev
        self.width, self.batch = width, batch
        self.drive: Grouped | None = None
        self.past: Grouped | None = None
        self.plan = None

    def past_of(self, z: Grouped) -> Grouped:
        if self.width == 1:
            return self.before
        return [torch.cat([b, zg[:, :-self.batch]], dim=1) for b, zg in zip(self.before, z)]

    def _drive(self, z: Grouped) -> Grouped:
        if self.drive is None or self.width > 1:
            self.past = self.past_of(z)
            self.drive = self.model.drive(self.width * self.batch, self.past, self.actions_prev)
        return self.drive

    def _through_time(self, grad: list[Tensor | None], h: Grouped) -> None:
        """A state in the window also explains the next step through U: add that gradient."""
        if self.width > 1:
            for k, extra in enumerate(self.model.past_gradient(self.past, h)):
                if grad[k] is not None:  # a copy: the gradient may share memory with the errors
                    grad[k] = grad[k].clone()
                    grad[k][:, :-self.batch] += extra[:, self.batch:]

    def step(self, z: Grouped) -> Step:
        if self.plan is None:
            self.plan = self.model.plan()
        s = self.model.gradient(z, self._drive(z), self.plan)
        self._through_time(s.grad, s.h)
        return s

    def __call__(self, z: Grouped) -> Evaluation:
        ev = self.model.evaluate(z, self._drive(z))
        self._through_time(ev.grad, ev.h)
        return ev


def run_sequence(
    model: PCModel,
    observations: Mapping[str, Tensor],
    actions: Tensor | None = None,
    config: InferenceConfig = InferenceConfig(),
    *,
    window: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    online: bool = True,
    start_state: Grouped | None = None,
    missing: Tensor | None = None,
) -> Trajectory:
    """Infer the states over a batch of sequences, one inference per time step.

    With an ``optimizer`` the model also learns (the M-step at every step's converged window):
    ``online=True`` takes an optimiser step after every time step; ``online=False``
    accumulates the gradients over the sequence and takes one step at the end (their mean).
    ``missing`` (bool ``(T, B)``) marks steps whose observations the model does not get: there
    the observed columns are inferred like hidden ones and the states follow the prior.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    steps, batch = check_sequences(model, observations, actions)
    if missing is not None and (missing.shape != (steps, batch) or missing.dtype != torch.bool):
        raise ValueError(f"missing must be a bool tensor of shape (T={steps}, B={batch}), "
                         f"got {missing.dtype} {tuple(missing.shape)}")
    zero_action = None if model.spec.action_dim == 0 else torch.zeros(
        batch, model.spec.action_dim, device=model.device, dtype=model.dtype)
    history: list[Grouped] = []  # current estimates of z_0 .. z_{t-1}
    start = model.zeros(batch)
    if start_state is not None:
        if len(start_state) != len(start) or any(a.shape != b.shape for a, b in zip(start_state, start)):
            raise ValueError(
                f"start_state must be a grouped state of shapes {[tuple(b.shape) for b in start]} "
                f"(e.g. Trajectory.final of a batch of {batch}), got {[tuple(a.shape) for a in start_state]}"
            )
        start = start_state
    out_z, out_err, out_energy, traces = [], [], [], []
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)

    for t in range(steps):
        lo = max(0, t - window + 1)
        width = t - lo + 1
        before = history[lo - 1] if lo > 0 else start
        prev_actions = None if zero_action is None else torch.cat(
            [zero_action if tau == 0 else actions[tau - 1] if actions is not None else zero_action
             for tau in range(lo, t + 1)])
        data = {n: x[lo:t + 1].reshape(width * batch, -1).to(model.dtype) for n, x in observations.items()}
        seen = None if missing is None else ~missing[lo:t + 1].reshape(width * batch, 1)
        with torch.no_grad():
            # The newest step starts at its prior given the latest estimate of z_{t-1}.
            newest = forward_fill(model, model.zeros(batch), model.drive(
                batch, history[-1] if history else start, None if prev_actions is None else prev_actions[-batch:]))
            parts = history[lo:t] + [newest]
            z = [torch.cat([part[k] for part in parts], dim=1) for k in range(len(model.groups))]
            free = [torch.ones(len(g.names), width * batch, 1, device=model.device, dtype=model.dtype)
                    for g in model.groups]
            for name, x in data.items():
                k, i = model.slot[name]
                if seen is None:
                    free[k][i] = 0.0
                    z[k][i] = x
                else:
                    free[k][i] = (~seen).to(model.dtype)
                    z[k][i] = torch.where(seen, x, z[k][i])
            evaluate = _Window(model, before, prev_actions, width, batch)
            z, ev, trace = descend(model, z, free, config, evaluate.step, evaluate)

        if optimizer is not None:
            model.accumulate_grads(z, evaluate.drive, past=evaluate.past, action=prev_actions, evaluation=ev)
            if online:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        slices = [zg.view(zg.shape[0], width, batch, -1) for zg in z]
        history[lo:t] = [[s[:, j] for s in slices] for j in range(width - 1)]
        history.append([s[:, -1].clone() for s in slices])
        out_z.append(history[-1])
        out_err.append([e.view(e.shape[0], width, batch, -1)[:, -1] for e in ev.errors])
        out_energy.append([e.view(e.shape[0], width, batch)[:, -1] for e in ev.energies])
        # an early stop (config.tol) leaves F where it stopped for the remaining iterations
        traces.append(torch.cat([trace, trace[-1:].expand(config.steps + 1 - len(trace))]))

    if optimizer is not None and not online:
        for p in model.parameters():
            if p.grad is not None:
                p.grad /= steps
        optimizer.step()
    return Trajectory(
        z=_stack_nodes(model, out_z), errors=_stack_nodes(model, out_err),
        energy=_stack_nodes(model, out_energy), trace=torch.stack(traces), final=history[-1],
    )


def learn_sequences(
    model: PCModel,
    optimizer: torch.optim.Optimizer,
    observations: Mapping[str, Tensor],
    actions: Tensor | None = None,
    config: InferenceConfig = InferenceConfig(),
    *,
    window: int = 1,
) -> Trajectory:
    """Learn the world model from a batch of stored sequences (x_{1:T}, a_{1:T}), e.g. replay.

    Infers the states step by step, accumulates the local-rule gradients of every step's free
    energy and takes one optimiser step on their mean (``run_sequence(..., online=False)``).
    """
    return run_sequence(model, observations, actions, config, window=window, optimizer=optimizer, online=False)


def _stack_nodes(model: PCModel, per_step: list[Grouped]) -> dict[str, Tensor]:
    return {name: torch.stack([g[k][i] for g in per_step]) for name, (k, i) in model.slot.items()}


def rollout(model: PCModel, state: Grouped, actions: Tensor | None = None, steps: int | None = None) -> dict[str, Tensor]:
    """Imagine ahead: the prior means of every node for n steps from ``state`` under ``actions``.

    ``state`` is the grouped estimate of z_t; ``actions`` is ``(n, B, action_dim)`` with
    ``actions[0] = a_t`` (or give ``steps`` for a model without actions). Returns
    ``{node: (n, B, d)}`` for times t+1 .. t+n. Nothing is clamped: each step is the forward
    (prior) sweep from the previous imagined state.
    """
    batch = state[0].shape[1]
    if actions is None:
        if model.spec.action_dim:
            raise ValueError(f"this model takes actions (action_dim={model.spec.action_dim}): pass them")
        if steps is None or steps < 1:
            raise ValueError("rollout without actions needs steps >= 1")
        sequence: list[Tensor | None] = [None] * steps
    else:
        if actions.dim() != 3 or actions.shape[1:] != (batch, model.spec.action_dim) or model.spec.action_dim == 0:
            raise ValueError(
                f"actions have shape {tuple(actions.shape)}; expected (n, B={batch}, action_dim={model.spec.action_dim})"
            )
        sequence = list(actions)
    imagined = []
    with torch.no_grad():
        z = state
        for a in sequence:
            z = forward_fill(model, model.zeros(batch), model.drive(batch, z, a))
            imagined.append(z)
    return _stack_nodes(model, imagined)
