"""tracking: temporal predictive coding against a Kalman filter on a linear-Gaussian system.

The setting of Millidge, Tang, Osanlouy, Harper & Bogacz (2024), "Predictive coding networks
for temporal prediction" (PLOS Comp Biol): a noisy target whose hidden state is
s = (position, velocity, acceleration),

    s_t = A s_{t-1} + B u_{t-1} + w_t,   w ~ N(0, Q),   A = [[1, dt, dt^2/2], [0, 1, dt], [0, 0, 1]]
    y_t = C s_t + v_t,                   v ~ N(0, R),   C = I (observe all) or [1, 0, 0] (position)

driven by a known sinusoidal jerk u (B = (dt^3/6, dt^2/2, dt)). ``u[t]`` is taken after y_t is
seen, as in :func:`cortex.temporal.run_sequence`, and s_{-1} = 0, u_{-1} = 0. The temporal PC
model is a hidden column ``s`` (U = A, B_s = B) predicting an observed column ``y`` (W = C)
with the true parameters; filtering (window 1) minimises at each step

    F_t = 1/2 (z_t - A z_{t-1} - B u_{t-1})^T Pi_s (...) + 1/2 (y_t - C z_t)^T R^-1 (...)

by K gradient steps. Its minimiser is a Kalman update with the prior covariance Pi_s^-1 in place
of the propagated A P A^T + Q, so the choice of the diagonal prior precision Pi_s decides how
close tPC can come to the Kalman filter run on the same data (``prior_precision``):

- ``true_q``: Pi_s = Q^-1, the generative model's own noise. It ignores the uncertainty carried
  over from z_{t-1}, so the filter trusts its prediction far too much.
- ``steady_state``: Pi_s = 1 / diag(P), P the Kalman filter's steady-state prior covariance
  (the discrete algebraic Riccati equation): the variance of the actual one-step prediction error.
- ``learned``: starts from Q^-1 and learns Pi_s online with the local rule
  dF/dlog Pi = 1/2 Pi eps^2 - 1/2. With a point estimate, eps_s is the posterior update
  z_t - mu_t, whose variance is P - P_post, smaller than P: the rule makes the prior ever more
  confident where the observations are informative, and the growing precision can outrun the
  inference step size. Kept to show that failure, not as a fix.

With one inference step from the prior the Pi_s term of dF/dz is zero, so K = 1 gives
z = mu + eta W^T R^-1 (y - W mu) whatever Pi_s: the sweep's K = 1 end measures the step size.

A diagonal Pi_s cannot carry the correlations between position, velocity and acceleration; with
``basis="eigen"`` the column's state is expressed in the eigenbasis V of P (z = V^T s), where the
steady-state precision is diagonal and the tPC fixed point is exactly the steady-state Kalman
filter. Observing position only needs it: in the physical basis velocity and acceleration would
never feel the observation error.

Recorded per time step of the headline run: ``tracking/{true_state, observation, tpc_estimate,
kalman_estimate}``, the column states and error vectors ``cortex/s/z``, ``cortex/{s,y}/error``
(step, sequence, d) and ``cortex/free_energy`` (batch-mean F_t with its log-normaliser); per K of
the sweep ``tracking/sweep_*``. A free energy that becomes non-finite or explodes stops the run,
naming ``inference_lr`` (or ``precision_lr`` when learned).

Summary figures: ``tpc_mse``, ``kalman_mse`` (mean over time steps, sequences and the three
state components of the squared estimation error), ``mse_ratio`` (tPC / Kalman) at
``inference_steps``; ``mse_ratio_k1`` (one inference step), ``mse_ratio_converged`` (the exact
minimiser of F_t, i.e. infinitely many steps; absent for ``learned``), ``inference_lr``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import networkx as nx
import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from cortex import InferenceConfig, PCModel, Trajectory, run_sequence
from cortex.params import check_finite, param, validate
from sims.registry import Simulation, register
from sims.runner import Context

PriorPrecision = Literal["true_q", "steady_state", "learned"]


@dataclass(frozen=True)
class TrackingConfig:
    steps: int = param(1000, "time steps per sequence", ge=1)
    batch: int = param(16, "independent sequences, filtered in parallel", ge=1)
    dt: float = param(0.1, "time step (s)", gt=0)
    process_noise: tuple[float, float, float] = param(
        (0.05, 0.1, 0.2), "std of w per step: position, velocity, acceleration", gt=0)
    observation_noise: tuple[float, float, float] = param(
        (0.5, 0.5, 0.5), "std of v per observed component (position only uses the first)", gt=0)
    observe: Literal["all", "position"] = param("all", "all: y = s + v; position: y = s_position + v")
    control_amplitude: float = param(1.0, "amplitude of the sinusoidal jerk u (m/s^3)", ge=0)
    control_period: float = param(5.0, "period of u (s); each sequence has a random phase", gt=0)
    inference_steps: int = param(20, "K: inference iterations per time step (headline)", ge=1)
    inference_lr: float | None = param(
        None, "inference step size; none: 1/lambda_max of the Hessian of F_t", gt=0)
    steps_sweep: tuple[int, ...] = param((1, 2, 5, 10, 20, 50), "values of K for the MSE-ratio sweep", ge=1)
    prior_precision: PriorPrecision = param(
        "steady_state", "Pi_s: true_q (Q^-1), steady_state (1/diag of the Riccati prior covariance) or learned")
    basis: Literal["physical", "eigen"] = param(
        "physical", "coordinates of the column s: physical, or the eigenbasis of the steady-state prior covariance")
    precision_lr: float = param(0.01, "SGD step size on log Pi_s (prior_precision=learned)", gt=0)

    def __post_init__(self) -> None:
        validate(self)
        if not self.steps_sweep:
            raise ValueError("config key 'steps_sweep' needs at least one number of inference steps")


@dataclass(frozen=True)
class LinearGaussianSystem:
    """s_t = A s_{t-1} + B u_{t-1} + w, y_t = C s_t + v (float64). A: (3, 3), B: (3, 1),
    C: (d_y, 3), Q: (3, 3), R: (d_y, d_y)."""

    A: Tensor
    B: Tensor
    C: Tensor
    Q: Tensor
    R: Tensor


def make_system(cfg: TrackingConfig) -> LinearGaussianSystem:
    dt = cfg.dt
    A = torch.tensor([[1.0, dt, dt * dt / 2], [0.0, 1.0, dt], [0.0, 0.0, 1.0]], dtype=torch.float64)
    B = torch.tensor([[dt ** 3 / 6], [dt ** 2 / 2], [dt]], dtype=torch.float64)
    C = torch.eye(3, dtype=torch.float64) if cfg.observe == "all" else torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    Q = torch.diag(torch.tensor(cfg.process_noise, dtype=torch.float64) ** 2)
    R = torch.diag(torch.tensor(cfg.observation_noise[:C.shape[0]], dtype=torch.float64) ** 2)
    return LinearGaussianSystem(A, B, C, Q, R)


def control_input(steps: int, batch: int, dt: float, amplitude: float, period: float,
                  generator: torch.Generator) -> Tensor:
    """u: (T, B, 1), a sinusoidal jerk with a random phase per sequence."""
    phase = torch.rand(batch, generator=generator, dtype=torch.float64) * 2 * math.pi
    t = torch.arange(steps, dtype=torch.float64).unsqueeze(1) * dt
    return (amplitude * torch.sin(2 * math.pi * t / period + phase)).unsqueeze(-1)


def _previous(u: Tensor, t: int) -> Tensor:
    """u_{t-1}, zero at t = 0 (the run_sequence convention)."""
    return u[t - 1] if t > 0 else torch.zeros_like(u[0])


def simulate(system: LinearGaussianSystem, u: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """True states s: (T, B, 3) and observations y: (T, B, d_y), from s_{-1} = 0."""
    steps, batch, _ = u.shape
    w_std, v_std = system.Q.diagonal().sqrt(), system.R.diagonal().sqrt()
    w = torch.randn(steps, batch, 3, generator=generator, dtype=torch.float64) * w_std
    v = torch.randn(steps, batch, len(v_std), generator=generator, dtype=torch.float64) * v_std
    s = torch.empty(steps, batch, 3, dtype=torch.float64)
    prev = torch.zeros(batch, 3, dtype=torch.float64)
    for t in range(steps):
        prev = prev @ system.A.T + _previous(u, t) @ system.B.T + w[t]
        s[t] = prev
    return s, s @ system.C.T + v


def kalman_filter(system: LinearGaussianSystem, y: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Filtered means m_t = E[s_t | y_0..t]: (T, B, 3), and prior covariances P_t: (T, 3, 3).

    y: (T, B, d_y), u: (T, B, 1) with u[t] acting after y_t. Starts from s_{-1} = 0 known
    exactly, so the prior of s_0 is N(0, Q) — the same prior the tPC model starts from.
    """
    A, B, C, Q, R = system.A, system.B, system.C, system.Q, system.R
    m = torch.zeros(y.shape[1], 3, dtype=torch.float64)
    P = torch.zeros(3, 3, dtype=torch.float64)
    means, priors = [], []
    for t in range(y.shape[0]):
        mu = m @ A.T + _previous(u, t) @ B.T
        P = A @ P @ A.T + Q
        gain = torch.linalg.solve(C @ P @ C.T + R, C @ P).T  # P C^T S^-1 (S symmetric)
        m = mu + (y[t] - mu @ C.T) @ gain.T
        priors.append(P)
        P = (torch.eye(3, dtype=torch.float64) - gain @ C) @ P
        means.append(m)
    return torch.stack(means), torch.stack(priors)


def steady_state_prior_covariance(system: LinearGaussianSystem) -> Tensor:
    """P: (3, 3), the fixed point of P = A (P - P C^T (C P C^T + R)^-1 C P) A^T + Q."""
    P = scipy.linalg.solve_discrete_are(system.A.T.numpy(), system.C.T.numpy(), system.Q.numpy(), system.R.numpy())
    return torch.from_numpy(np.ascontiguousarray(P))


def prior_covariance_basis(cfg: TrackingConfig, system: LinearGaussianSystem) -> tuple[Tensor, Tensor]:
    """The prior covariance Sigma_s that Pi_s is taken from (before learning), and the basis V
    (3, 3, orthogonal) of the column s: z = V^T s. Pi_s = 1 / diag(V^T Sigma_s V)."""
    steady = steady_state_prior_covariance(system)
    V = torch.linalg.eigh(steady).eigenvectors if cfg.basis == "eigen" else torch.eye(3, dtype=torch.float64)
    return (steady if cfg.prior_precision == "steady_state" else system.Q), V


def tpc_model(system: LinearGaussianSystem, precision: Tensor, V: Tensor, *, learn_precision: bool = False,
              device: torch.device | str = "cpu") -> PCModel:
    """The temporal PC model with the true parameters in the basis V: U = V^T A V,
    B_s = V^T B, W_{y<-s} = C V, biases 0, Pi_s = ``precision`` (3,), Pi_y = diag R^-1."""
    graph = nx.DiGraph()
    graph.add_node("s", dim=3, temporal=True, action=True, learn_precision=learn_precision)
    graph.add_node("y", dim=system.C.shape[0], kind="observed")
    graph.add_edge("s", "y")
    model = PCModel(graph, temporal=True, action_dim=1, dtype=torch.float64)
    with torch.no_grad():
        model.temporal_weight("s").copy_(V.T @ system.A @ V)
        model.action_weight("s").copy_(V.T @ system.B)
        model.weight("s", "y").copy_(system.C @ V)
        for b in model.bias:
            b.zero_()
        for name, value in (("s", precision), ("y", 1.0 / system.R.diagonal())):
            k, i = model.slot[name]
            model.log_precision[k][i] = value.log()
    return model.to(device)


def auto_inference_lr(system: LinearGaussianSystem, precision: Tensor, V: Tensor) -> float:
    """1 / lambda_max of the Hessian of F_t in z, diag(Pi_s) + (C V)^T R^-1 (C V): the largest
    step that descends every direction without overshoot."""
    CV = system.C @ V
    hessian = torch.diag(precision) + CV.T @ torch.linalg.solve(system.R, CV)
    return 1.0 / torch.linalg.eigvalsh(hessian).max().item()


def fixed_gain_filter(system: LinearGaussianSystem, precision: Tensor, V: Tensor, y: Tensor, u: Tensor) -> Tensor:
    """The exact minimiser of F_t at every step (tPC after infinitely many inference steps):
    z_t = (Pi + W^T R^-1 W)^-1 (Pi mu_t + W^T R^-1 y_t), mu_t = U z_{t-1} + V^T B u_{t-1},
    returned in physical coordinates s = V z: (T, B, 3)."""
    U, Bz, W = V.T @ system.A @ V, V.T @ system.B, system.C @ V
    Pi = torch.diag(precision)
    WtRi = torch.linalg.solve(system.R, W).T
    H = Pi + WtRi @ W
    z = torch.zeros(y.shape[1], 3, dtype=torch.float64)
    out = []
    for t in range(y.shape[0]):
        mu = z @ U.T + _previous(u, t) @ Bz.T
        z = torch.linalg.solve(H, (mu @ Pi + y[t] @ WtRi.T).T).T
        out.append(z @ V.T)
    return torch.stack(out)


def track(model: PCModel, y: Tensor, u: Tensor, steps: int, lr: float,
          optimizer: torch.optim.Optimizer | None = None) -> Trajectory:
    """Filter y: (T, B, d_y) given u: (T, B, 1) with K = ``steps`` inference steps per time step."""
    return run_sequence(model, {"y": y.to(model.device)}, u.to(model.device),
                        InferenceConfig(steps=steps, lr=lr), window=1, optimizer=optimizer)


def mse(estimate: Tensor, truth: Tensor) -> float:
    return (estimate.cpu() - truth).pow(2).mean().item()


def run(cfg: TrackingConfig, ctx: Context) -> dict:
    rec = ctx.recorder
    system = make_system(cfg)
    u = control_input(cfg.steps, cfg.batch, cfg.dt, cfg.control_amplitude, cfg.control_period, ctx.generator)
    s, y = simulate(system, u, ctx.generator)
    kalman, _ = kalman_filter(system, y, u)
    kalman_mse = mse(kalman, s)

    sigma, V = prior_covariance_basis(cfg, system)
    precision = 1.0 / (V.T @ sigma @ V).diagonal()
    lr = cfg.inference_lr if cfg.inference_lr is not None else auto_inference_lr(system, precision, V)
    learned = cfg.prior_precision == "learned"
    # The model holds the true parameters: only the inference step or the learned precision can
    # make F blow up.
    suspect = "precision_lr" if learned else "inference_lr"

    def filter_with(k: int) -> tuple[PCModel, Trajectory, Tensor]:
        model = tpc_model(system, precision, V, learn_precision=learned, device=ctx.device)
        optimizer = None
        if learned:
            ks, _ = model.slot["s"]
            optimizer = torch.optim.SGD([model.log_precision[ks]], lr=cfg.precision_lr)
        trajectory = track(model, y, u, k, lr, optimizer)
        for t, f in enumerate(sum(trajectory.energy.values()).mean(1).tolist()):
            check_finite(f"free energy F_t (K={k})", f, step=t, key=suspect, where="time step")
        return model, trajectory, trajectory.z["s"].cpu() @ V.T

    sweep = {}
    for k in ctx.progress(cfg.steps_sweep, desc="tracking sweep", unit="K"):
        _, _, estimate = filter_with(k)
        sweep[k] = mse(estimate, s)
        rec.append("tracking/sweep_steps", k)
        rec.append("tracking/sweep_tpc_mse", sweep[k])
        rec.append("tracking/sweep_ratio", sweep[k] / kalman_mse)

    model, trajectory, estimate = filter_with(cfg.inference_steps)
    tpc_mse = mse(estimate, s)
    energy = sum(trajectory.energy.values()).mean(1)
    per_step = {
        "tracking/true_state": s, "tracking/observation": y, "tracking/tpc_estimate": estimate,
        "tracking/kalman_estimate": kalman, "cortex/s/z": trajectory.z["s"],
        "cortex/s/error": trajectory.errors["s"], "cortex/y/error": trajectory.errors["y"],
    }
    for name, series in per_step.items():
        rec.extend(name, series.cpu())
    rec.extend("cortex/free_energy", energy.cpu())
    ks, i = model.slot["s"]
    rec.write("tracking/prior_precision", model.log_precision[ks][i].detach().exp().cpu())

    figures = {
        "tpc_mse": tpc_mse,
        "kalman_mse": kalman_mse,
        "mse_ratio": tpc_mse / kalman_mse,
        "mse_ratio_k1": (sweep[1] if 1 in sweep else mse(filter_with(1)[2], s)) / kalman_mse,
        "inference_lr": lr,
    }
    if not learned:
        figures["mse_ratio_converged"] = mse(fixed_gain_filter(system, precision, V, y, u), s) / kalman_mse
    return figures


register(Simulation(
    name="tracking",
    summary="temporal PC vs a Kalman filter on a noisy position/velocity/acceleration target (MSE ratio, K sweep)",
    config=TrackingConfig,
    run=run,
))
