"""Variational Laplace for a temporal column: a Gaussian posterior that carries its uncertainty.

The point-mass posterior of DESIGN.md §3 cannot correct a part of the state that the
observations do not see at the same moment (a velocity behind an observed angle): with an
isotropic prior precision the update moves z_t only within the row space of the readout. Here
q(s_t) = N(mu_t, Sigma_t) instead (the Laplace approximation, linearised at the mean), and

- :func:`laplace_filter` is the extended Kalman filter of the column: the prior covariance
  ``A Sigma_{t-1} A^T + Sigma_s`` (A = U diag f'(mu_{t-1})) carries the cross-covariances that
  let an angle error correct the velocity; on a linear-Gaussian model it *is* the Kalman filter;
- ``smooth=True`` adds the Rauch-Tung-Striebel backward pass, which gives each state the
  evidence of later observations and the lag-one cross-covariances;
- :func:`learn_sequences_laplace` is EM: the smoother (E-step), then one optimiser step on
  the expected free energy ``E_q[F]`` (M-step). Its gradients are still local — each weight
  sees its own column's error and rates — plus a covariance term, e.g. for U

      dE[F]/dU = -(Pi_s eps_s) f(mu_{t-1})^T + Pi_s (U F Sigma_{t-1} - Sigma_{t,t-1}) F,
      F = diag f'(mu_{t-1}),

  and the expected squared errors ``eps^2 + diag(J Sigma J^T)`` replace ``eps^2`` in the
  precision rule. With the covariances the readout cannot grow freely while the state
  shrinks (its term ``W F Sigma F W^T`` grows), which the point-mass objective allows.

Scope: one hidden column (``b``, optionally ``U`` and ``B``; without ``U`` the prior of
every step is N(b + B a, Sigma_s), the past forgotten; no parents, identity ``g``) that
predicts one or more observed columns (no temporal or action input, identity ``g``).
Other graphs fail with an error naming the node. The recursions run in float64 whatever the
model's dtype. Before the first step the state is N(0, ``initial_variance`` I) and the action
zero (the convention of :mod:`cortex.temporal`, with the uncertainty made explicit).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from cortex.activations import Activation
from cortex.model import PCModel
from cortex.temporal import check_sequences

_F64 = torch.float64


@dataclass
class GaussianPath:
    """The Gaussian posterior of the column's state over a batch of sequences."""

    mean: Tensor
    """Filtered (or smoothed) means ``(T, B, d)``."""
    cov: Tensor
    """Their covariances ``(T, B, d, d)``."""
    prior_mean: Tensor
    """One-step predictions ``(T, B, d)`` made before seeing x_t (filtering)."""
    prior_cov: Tensor
    """Their covariances ``(T, B, d, d)``."""
    log_evidence: Tensor
    """log p(x_{1:T}) per sequence ``(B,)``, summed from the one-step predictive densities
    N(x_t; prediction, H P H^T + Sigma_x) (exact for a linear-Gaussian model)."""
    jacobian: Tensor
    """A_t = U diag f'(mu_{t-1}) of each prediction, ``(T, B, d, d)``."""
    cross: Tensor | None = None
    """Smoothed lag-one cross-covariances ``Cov(s_t, s_{t-1})``, ``(T, B, d, d)`` (t = 0 is
    against the state before the first step); only with ``smooth=True``."""
    smoothed: bool = False
    innovation: Tensor | None = None
    """Filtering's one-step prediction errors of the observations ``(T, B, d_obs)``: x_t minus
    the observation predicted from q(s_{t-1} | x_{<t}) and a_{t-1}."""


@dataclass(frozen=True)
class ColumnParts:
    """The column's parameters in float64, and the names needed to report."""

    state: str
    observed: tuple[str, ...]
    f: Activation
    U: Tensor         # zero for a column without a temporal term
    temporal: bool
    B: Tensor | None
    b: Tensor
    W: Tensor          # (d_obs_total, d): the stacked readouts of the observed columns
    c: Tensor          # (d_obs_total,)
    pi_s: Tensor       # (d,)
    pi_o: Tensor       # (d_obs_total,)
    slices: dict[str, slice]  # each observed column's entries in the stacked observation


def check_laplace_model(model: PCModel) -> tuple[str, tuple[str, ...]]:
    """The state column and the observed columns, or a ``ValueError`` naming what is unsupported."""
    spec = model.spec
    hidden = [n for n in spec.nodes if n.kind == "hidden"]
    if len(hidden) != 1:
        raise ValueError(f"the Laplace posterior supports one hidden column, the model has "
                         f"{[n.name for n in hidden]}")
    state = hidden[0]
    observed = []
    for node in spec.nodes:
        if node.kind == "input":
            raise ValueError(f"input node {node.name!r}: the Laplace posterior supports hidden and observed columns only")
        if node.output != "identity":
            raise ValueError(f"node {node.name!r} has output {node.output!r}; the Laplace posterior needs identity")
        if node.kind == "observed":
            parents = list(spec.parents(node.name))
            if parents != [state.name]:
                raise ValueError(f"observed node {node.name!r} must have the hidden column {state.name!r} as its only "
                                 f"parent, it has {parents}")
            if node.temporal or node.action:
                raise ValueError(f"observed node {node.name!r} has a temporal or action input; the Laplace "
                                 "posterior needs none")
            observed.append(node.name)
    if list(spec.parents(state.name)):
        raise ValueError(f"hidden column {state.name!r} must have no parents for the Laplace posterior")
    return state.name, tuple(observed)


def laplace_parts(model: PCModel) -> ColumnParts:
    """The column's parameters in float64 (what :func:`filter_step` takes)."""
    state, observed = check_laplace_model(model)
    k, i = model.slot[state]
    prec = [model.log_precision[model.slot[n][0]][model.slot[n][1]] for n in observed]
    bias = [model.bias[model.slot[n][0]][model.slot[n][1]] for n in observed]
    B = model.action_weight(state).to(_F64) if model.spec.node(state).action else None
    temporal, d = model.spec.node(state).temporal, model.spec.node(state).dim
    slices, start = {}, 0
    for name in observed:
        slices[name] = slice(start, start + model.spec.node(name).dim)
        start = slices[name].stop
    return ColumnParts(
        state=state, observed=observed, f=model.groups[k].f,
        U=(model.temporal_weight(state).to(_F64) if temporal
           else torch.zeros(d, d, dtype=_F64, device=model.device)),
        temporal=temporal, B=B, b=model.bias[k][i].to(_F64),
        W=torch.cat([model.weight(state, n) for n in observed]).to(_F64),
        c=torch.cat(bias).to(_F64),
        pi_s=model.log_precision[k][i].exp().to(_F64), pi_o=torch.cat(prec).exp().to(_F64), slices=slices,
    )


def _stack_observations(parts: ColumnParts, observations: Mapping[str, Tensor]) -> Tensor:
    missing = [n for n in parts.observed if n not in observations]
    if missing:
        raise ValueError(f"the Laplace posterior needs observations for every observed node; missing {missing}")
    extra = [n for n in observations if n not in parts.observed]
    if extra:
        raise ValueError(f"observations for {extra}: only the observed nodes {list(parts.observed)} take data")
    return torch.cat([observations[n].to(_F64) for n in parts.observed], dim=-1)


def _symmetric(m: Tensor) -> Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


@dataclass
class FilterStep:
    """One step of the filter: the belief after x_t and what led to it (all float64)."""

    mean: Tensor
    """``(B, d)``, the posterior mean after x_t."""
    cov: Tensor
    """``(B, d, d)``."""
    prior_mean: Tensor
    """``(B, d)``, the prediction before x_t."""
    prior_cov: Tensor
    """``(B, d, d)``."""
    jacobian: Tensor
    """``(B, d, d)``, A = U diag f'(mu_{t-1})."""
    innovation: Tensor
    """``(B, d_obs)``, x_t minus its one-step prediction: the world model's prediction error."""
    log_evidence: Tensor
    """``(B,)``, log N(x_t; prediction, H P H^T + Sigma_x)."""


def initial_belief(p: "ColumnParts", batch: int, initial_variance: float) -> tuple[Tensor, Tensor]:
    """The belief before the first step: N(0, ``initial_variance`` I), float64."""
    d = p.U.shape[0]
    eye = torch.eye(d, dtype=_F64, device=p.U.device)
    return torch.zeros(batch, d, dtype=_F64, device=eye.device), initial_variance * eye.expand(batch, d, d)


def filter_step(p: "ColumnParts", mean: Tensor, cov: Tensor, x: Tensor, action: Tensor | None) -> FilterStep:
    """The extended Kalman step: predict s_t from the belief about s_{t-1} and a_{t-1} (None:
    no action term), then correct with x_t ``(B, d_obs)``, linearised at the prediction."""
    eye = torch.eye(mean.shape[-1], dtype=_F64, device=mean.device)
    # Predict: s_t ~ N(U f(mu) + B a + b, A Sigma A^T + Sigma_s), A = U diag f'(mu).
    A = p.U * p.f.grad(mean).unsqueeze(1)
    m = p.f.fn(mean) @ p.U.T + p.b
    if p.B is not None and action is not None:
        m = m + action.to(_F64) @ p.B.T
    P = _symmetric(A @ cov @ A.transpose(1, 2) + torch.diag(1 / p.pi_s))
    # Update with x_t, linearised at the prediction (the Laplace / extended step).
    H = p.W * p.f.grad(m).unsqueeze(1)
    r_o = torch.diag(1 / p.pi_o)
    S = _symmetric(H @ P @ H.transpose(1, 2) + r_o)
    chol = torch.linalg.cholesky(S)
    gain = torch.cholesky_solve(H @ P, chol).transpose(1, 2)
    innovation = x.to(_F64) - p.f.fn(m) @ p.W.T - p.c
    log_evidence = -0.5 * (
        (innovation * torch.cholesky_solve(innovation.unsqueeze(-1), chol).squeeze(-1)).sum(-1)
        + 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1) + x.shape[-1] * math.log(2 * math.pi))
    keep = eye - gain @ H
    return FilterStep(
        mean=m + (gain @ innovation.unsqueeze(-1)).squeeze(-1),
        cov=_symmetric(keep @ P @ keep.transpose(1, 2) + gain @ r_o @ gain.transpose(1, 2)),  # Joseph form
        prior_mean=m, prior_cov=P, jacobian=A, innovation=innovation, log_evidence=log_evidence)


def laplace_filter(
    model: PCModel,
    observations: Mapping[str, Tensor],
    actions: Tensor | None = None,
    *,
    smooth: bool = False,
    initial_variance: float = 1.0,
) -> GaussianPath:
    """The Gaussian posterior of the state column over a batch of sequences.

    ``observations[name]`` is ``(T, B, d)`` for every observed column and ``actions``
    ``(T, B, action_dim)`` (``actions[t]`` taken after x_t), as in :func:`run_sequence`.
    Filtering gives q(s_t | x_{<=t}); ``smooth=True`` gives q(s_t | x_{1:T}) and the lag-one
    cross-covariances that learning needs. Returns float64 tensors.
    """
    if not initial_variance > 0:
        raise ValueError(f"initial_variance must be > 0, got {initial_variance}")
    steps, batch = check_sequences(model, observations, actions)
    with torch.no_grad():
        p = laplace_parts(model)
        x = _stack_observations(p, observations)
        d = p.U.shape[0]
        eye = torch.eye(d, dtype=_F64, device=x.device)
        mean, cov = initial_belief(p, batch, initial_variance)
        log_evidence = torch.zeros(batch, dtype=_F64, device=x.device)
        means, covs, priors, prior_covs, jacobians, innovations = [], [], [], [], [], []
        for t in range(steps):
            step = filter_step(p, mean, cov, x[t], None if t == 0 or actions is None else actions[t - 1])
            mean, cov = step.mean, step.cov
            log_evidence = log_evidence + step.log_evidence
            means.append(mean), covs.append(cov), priors.append(step.prior_mean)
            prior_covs.append(step.prior_cov), jacobians.append(step.jacobian)
            innovations.append(step.innovation)
        path = GaussianPath(mean=torch.stack(means), cov=torch.stack(covs), prior_mean=torch.stack(priors),
                            prior_cov=torch.stack(prior_covs), log_evidence=log_evidence,
                            jacobian=torch.stack(jacobians), innovation=torch.stack(innovations))
        if not torch.isfinite(path.mean).all() or not torch.isfinite(path.cov).all():
            raise FloatingPointError(f"the Laplace filter of column {p.state!r} produced non-finite values "
                                     "(the model's precisions or weights have grown too large)")
        if smooth:
            _smooth(path, initial_variance, eye)
    return path


def _smooth(path: GaussianPath, initial_variance: float, eye: Tensor) -> None:
    """Rauch-Tung-Striebel backward pass with the filter's linearisation, in place; also fills the
    lag-one cross-covariances."""
    steps = path.mean.shape[0]
    mean, cov = path.mean.clone(), path.cov.clone()
    cross = torch.empty_like(cov)
    for t in range(steps - 1, -1, -1):
        # Gain from s_t back to s_{t-1} (for t = 0, the state before the first step).
        before = initial_variance * eye if t == 0 else path.cov[t - 1]
        G = torch.linalg.solve(path.prior_cov[t], path.jacobian[t] @ before).transpose(1, 2)
        cross[t] = cov[t] @ G.transpose(1, 2)
        if t > 0:
            mean[t - 1] = path.mean[t - 1] + (G @ (mean[t] - path.prior_mean[t]).unsqueeze(-1)).squeeze(-1)
            cov[t - 1] = _symmetric(path.cov[t - 1] + G @ (cov[t] - path.prior_cov[t]) @ G.transpose(1, 2))
    path.mean, path.cov, path.cross, path.smoothed = mean, cov, cross, True


def _expected_terms(p: ColumnParts, path: GaussianPath, x: Tensor, actions: Tensor | None) -> dict[str, Tensor]:
    """Errors at the smoothed means and the expected squared errors (per entry); the state
    terms are for the transitions t-1 -> t, t >= 1 (the first state's prior is not learned).
    Expectations linearise f at the means."""
    f, U = p.f, p.U
    rates, slope = f.fn(path.mean), f.grad(path.mean)                         # (T, B, d)
    eps_o = x - rates @ p.W.T - p.c                                             # (T, B, d_o)
    WF = p.W * slope.unsqueeze(-2)                                              # (T, B, d_o, d)
    var_o = torch.einsum("tbid,tbde,tbie->tbi", WF, path.cov, WF)
    eps_s = path.mean[1:] - rates[:-1] @ U.T - p.b
    if p.B is not None and actions is not None:
        eps_s = eps_s - actions[:-1] @ p.B.T
    UF = U * slope[:-1].unsqueeze(-2)                                           # (T-1, B, d, d)
    cross = path.cross[1:]                                                      # Cov(s_t, s_{t-1})
    var_s = (torch.diagonal(path.cov[1:], dim1=-2, dim2=-1)
             - 2 * torch.einsum("tbij,tbij->tbi", UF, cross)
             + torch.einsum("tbij,tbjk,tbik->tbi", UF, path.cov[:-1], UF))
    return dict(rates=rates, slope=slope, eps_o=eps_o, var_o=var_o, cross=cross, eps_s=eps_s, var_s=var_s)


def _terms(model: PCModel, path: GaussianPath, observations: Mapping[str, Tensor],
           actions: Tensor | None) -> tuple[ColumnParts, Tensor, dict[str, Tensor]]:
    """The column's parameters, the stacked observations and :func:`_expected_terms`."""
    if not path.smoothed:
        raise ValueError("the expected free energy needs a smoothed path: laplace_filter(..., smooth=True)")
    p = laplace_parts(model)
    x = _stack_observations(p, observations)
    return p, x, _expected_terms(p, path, x, None if actions is None else actions.to(_F64))


def expected_free_energy(
    model: PCModel, path: GaussianPath, observations: Mapping[str, Tensor], actions: Tensor | None = None,
) -> Tensor:
    """E_q[F] per time step, averaged over the batch, differentiable in the model's parameters
    (the smoothed path is held fixed): the M-step objective, with the log-normalisers; the
    expectations linearise f at the posterior means."""
    p, x, e = _terms(model, path, observations, actions)
    log2pi = math.log(2 * math.pi)
    obs = 0.5 * ((e["eps_o"].pow(2) + e["var_o"]) * p.pi_o - p.pi_o.log() + log2pi).sum()
    st = 0.5 * ((e["eps_s"].pow(2) + e["var_s"]) * p.pi_s - p.pi_s.log() + log2pi).sum()
    return (obs + st) / (x.shape[0] * x.shape[1])


def learn_sequences_laplace(
    model: PCModel,
    optimizer: torch.optim.Optimizer,
    observations: Mapping[str, Tensor],
    actions: Tensor | None = None,
    *,
    initial_variance: float = 1.0,
    precision_rate: float = 0.05,
    min_variance: float = 1e-5,
    max_grad_norm: float | None = None,
) -> GaussianPath:
    """One EM step on a batch of stored sequences; returns the smoothed path (the E-step).

    M-step: the local gradients of :func:`expected_free_energy` in U, B, b and the readouts
    go to ``.grad`` and ``optimizer`` takes one step. Columns declared with
    ``learn_precision=True`` get their precision in closed form instead, the M-step of a
    Gaussian's variance moved a share ``precision_rate`` of the way:
    ``1/Pi <- (1 - rate)/Pi + rate * mean(eps^2 + diag(J Sigma J^T))``, never below
    ``min_variance``. (A gradient step on log Pi reaches the same fixed point far more slowly.)
    ``max_grad_norm`` rescales the gradient of the weights to at most that norm before the step:
    an EM step taken from a poor smoother can be large.
    """
    if not 0 < precision_rate <= 1:
        raise ValueError(f"precision_rate must be in (0, 1], got {precision_rate}")
    if not min_variance > 0:
        raise ValueError(f"min_variance must be > 0, got {min_variance}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be > 0, got {max_grad_norm}")
    path = laplace_filter(model, observations, actions, smooth=True, initial_variance=initial_variance)
    with torch.no_grad():
        p, x, e = _terms(model, path, observations, actions)
        n = x.shape[0] * x.shape[1]
        h_o, h_s = p.pi_o * e["eps_o"], p.pi_s * e["eps_s"]      # precision-weighted errors
        slope = e["slope"]
        FSF_o = slope.unsqueeze(-1) * path.cov * slope.unsqueeze(-2)
        FSF_s = slope[:-1].unsqueeze(-1) * path.cov[:-1] * slope[:-1].unsqueeze(-2)
        grads = {
            "W": (-torch.einsum("tbi,tbj->ij", h_o, e["rates"])
                  + p.pi_o.unsqueeze(-1) * torch.einsum("ij,tbjk->ik", p.W, FSF_o)) / n,
            "c": -h_o.sum((0, 1)) / n,
            "U": (-torch.einsum("tbi,tbj->ij", h_s, e["rates"][:-1])
                  + p.pi_s.unsqueeze(-1) * (torch.einsum("ij,tbjk->ik", p.U, FSF_s)
                                            - (e["cross"] * slope[:-1].unsqueeze(-2)).sum((0, 1)))) / n,
            "b": -h_s.sum((0, 1)) / n,
        }
        if p.B is not None and actions is not None:
            grads["B"] = -torch.einsum("tbi,tbj->ij", h_s, actions[:-1].to(_F64)) / n
    optimizer.zero_grad(set_to_none=True)
    _route_grads(model, p, grads)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.grad is not None], max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        _closed_form_precisions(model, p, e, precision_rate, min_variance)
    return path


def _route_grads(model: PCModel, p: ColumnParts, grads: dict[str, Tensor]) -> None:
    """Add explicit gradients to the parameters that hold U, B, b, W and c (views of stacked tensors)."""
    views, values = [], []
    with torch.enable_grad():
        k, i = model.slot[p.state]
        views.append(model.bias[k][i]), values.append(grads["b"])
        if p.temporal:
            views.append(model.temporal_weight(p.state)), values.append(grads["U"])
        if "B" in grads:
            views.append(model.action_weight(p.state)), values.append(grads["B"])
        for name, rows in p.slices.items():
            kk, ii = model.slot[name]
            views += [model.weight(p.state, name), model.bias[kk][ii]]
            values += [grads["W"][rows], grads["c"][rows]]
        torch.autograd.backward(views, [v.to(view.dtype) for view, v in zip(views, values)])


def _closed_form_precisions(model: PCModel, p: ColumnParts, e: dict[str, Tensor], rate: float, floor: float) -> None:
    """1/Pi <- (1 - rate)/Pi + rate * E_q[eps^2], never below ``floor``, for learnable columns."""
    sq_o = (e["eps_o"].pow(2) + e["var_o"]).mean((0, 1))
    expected = {p.state: (e["eps_s"].pow(2) + e["var_s"]).mean((0, 1))}
    expected.update({name: sq_o[rows] for name, rows in p.slices.items()})
    for name, sq in expected.items():
        if model.spec.node(name).learn_precision:
            k, i = model.slot[name]
            variance = (1 - rate) * (-model.log_precision[k][i].to(_F64)).exp() + rate * sq
            model.log_precision[k][i] = -variance.clamp(min=floor).log().to(model.dtype)


def mean_errors(model: PCModel, path: GaussianPath, observations: Mapping[str, Tensor],
                actions: Tensor | None = None) -> dict[str, Tensor]:
    """Prediction errors of every column at the posterior means, ``{node: (T or T-1, B, d)}``
    (the state column's from t = 1: its transitions); for recording."""
    with torch.no_grad():
        p, _, e = _terms(model, path, observations, actions)
    return {p.state: e["eps_s"], **{name: e["eps_o"][..., rows] for name, rows in p.slices.items()}}
