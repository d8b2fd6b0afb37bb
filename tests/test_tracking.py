"""tracking: the Kalman filter against brute-force Gaussian conditioning, tPC against its
closed-form one-step posterior, and the simulation end to end on a tiny budget."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from analysis.recording import Recording
from sims.runner import run_simulation
from sims.tracking import (
    TrackingConfig, auto_inference_lr, control_input, fixed_gain_filter, kalman_filter, make_system,
    prior_covariance_basis, simulate, steady_state_prior_covariance, tpc_model, track,
)


def _data(cfg: TrackingConfig, steps: int, batch: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    system = make_system(cfg)
    u = control_input(steps, batch, cfg.dt, cfg.control_amplitude, cfg.control_period, generator)
    s, y = simulate(system, u, generator)
    return system, u, s, y


def _batch_posterior_mean(system, y, u, t: int) -> torch.Tensor:
    """E[s_t | y_0..t] by conditioning the joint Gaussian of (s_0..s_t, y_0..t) directly: (B, 3)."""
    A, B, C, Q, R = system.A, system.B, system.C, system.Q, system.R
    n, dy = t + 1, C.shape[0]
    # s_k = sum_{j<=k} A^{k-j} (w_j + B u_{j-1}): stacked, s = L (w + b).
    L = torch.zeros(3 * n, 3 * n, dtype=torch.float64)
    for k in range(n):
        for j in range(k + 1):
            L[3 * k:3 * k + 3, 3 * j:3 * j + 3] = torch.linalg.matrix_power(A, k - j)
    drive = torch.stack([u[j - 1] @ B.T if j > 0 else torch.zeros(u.shape[1], 3, dtype=torch.float64)
                         for j in range(n)], dim=1).reshape(u.shape[1], 3 * n)
    mean = drive @ L.T
    cov = L @ torch.block_diag(*[Q] * n) @ L.T
    H = torch.block_diag(*[C] * n)
    S = H @ cov @ H.T + torch.block_diag(*[R] * n)
    obs = y[:n].transpose(0, 1).reshape(y.shape[1], dy * n)
    posterior = mean + (obs - mean @ H.T) @ torch.linalg.solve(S, H @ cov)
    return posterior[:, -3:]


@pytest.mark.parametrize("observe", ["all", "position"])
def test_kalman_filter_is_the_exact_filtering_posterior(observe) -> None:
    cfg = TrackingConfig(observe=observe)
    system, u, s, y = _data(cfg, steps=6, batch=3)
    means, _ = kalman_filter(system, y, u)
    for t in range(6):
        torch.testing.assert_close(means[t], _batch_posterior_mean(system, y, u, t), rtol=1e-9, atol=1e-9)


def test_kalman_prior_covariance_converges_to_the_riccati_fixed_point() -> None:
    system, u, _, y = _data(TrackingConfig(), steps=400, batch=1)
    P = steady_state_prior_covariance(system)
    A, C, Q, R = system.A, system.C, system.Q, system.R
    riccati = A @ (P - P @ C.T @ torch.linalg.solve(C @ P @ C.T + R, C @ P)) @ A.T + Q
    torch.testing.assert_close(riccati, P, rtol=1e-9, atol=1e-12)
    _, priors = kalman_filter(system, y, u)
    torch.testing.assert_close(priors[-1], P, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("prior_precision,basis,observe", [
    ("true_q", "physical", "all"), ("steady_state", "physical", "all"),
    ("steady_state", "eigen", "position"),
])
def test_tpc_reaches_its_closed_form_one_step_posterior(prior_precision, basis, observe) -> None:
    cfg = TrackingConfig(prior_precision=prior_precision, basis=basis, observe=observe)
    system, u, _, y = _data(cfg, steps=5, batch=2)
    sigma, V = prior_covariance_basis(cfg, system)
    precision = 1.0 / (V.T @ sigma @ V).diagonal()
    model = tpc_model(system, precision, V)
    lr = auto_inference_lr(system, precision, V)
    # Gradient descent with step 1/lambda_max shrinks the error by (1 - 1/condition) per step.
    CV = system.C @ V
    eig = torch.linalg.eigvalsh(torch.diag(precision) + CV.T @ torch.linalg.solve(system.R, CV))
    steps = int(25 * eig.max() / eig.min()) + 1
    estimate = track(model, y, u, steps=steps, lr=lr).z["s"] @ V.T
    torch.testing.assert_close(estimate, fixed_gain_filter(system, precision, V, y, u), rtol=1e-8, atol=1e-8)


def test_eigenbasis_steady_state_tpc_is_the_steady_state_kalman_filter() -> None:
    cfg = TrackingConfig(prior_precision="steady_state", basis="eigen", observe="position")
    system, u, _, y = _data(cfg, steps=20, batch=2)
    sigma, V = prior_covariance_basis(cfg, system)
    P, C, R = sigma, system.C, system.R
    gain = P @ C.T @ torch.linalg.inv(C @ P @ C.T + R)
    m, expected = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(20):
        mu = m @ system.A.T + (u[t - 1] if t else torch.zeros_like(u[0])) @ system.B.T
        m = mu + (y[t] - mu @ C.T) @ gain.T
        expected.append(m)
    estimate = fixed_gain_filter(system, 1.0 / (V.T @ P @ V).diagonal(), V, y, u)
    torch.testing.assert_close(estimate, torch.stack(expected), rtol=1e-9, atol=1e-9)


def test_default_steady_state_precision_is_within_ten_percent_of_kalman() -> None:
    """The K -> infinity limit of the headline; the K = 20 run itself is the simulation's job."""
    cfg = TrackingConfig()
    system, u, s, y = _data(cfg, steps=cfg.steps, batch=cfg.batch)
    kalman_mse = (kalman_filter(system, y, u)[0] - s).pow(2).mean()
    sigma, V = prior_covariance_basis(cfg, system)
    tpc = fixed_gain_filter(system, 1.0 / (V.T @ sigma @ V).diagonal(), V, y, u)
    true_q = fixed_gain_filter(system, 1.0 / system.Q.diagonal(), V, y, u)
    assert (tpc - s).pow(2).mean() / kalman_mse <= 1.10
    assert (true_q - s).pow(2).mean() / kalman_mse > 2.0


TINY = ["steps=40", "batch=3", "steps_sweep=1,5", "inference_steps=5"]


def test_sim_records_both_estimates_and_the_sweep(tmp_path) -> None:
    out = tmp_path / "t.h5"
    figures = run_simulation("tracking", out=out, overrides=TINY, seed=1, quiet=True)
    assert set(figures) >= {"tpc_mse", "kalman_mse", "mse_ratio", "mse_ratio_k1", "mse_ratio_converged"}
    assert figures["mse_ratio"] == pytest.approx(figures["tpc_mse"] / figures["kalman_mse"])
    with Recording(out) as rec:
        for name in ("tracking/true_state", "tracking/observation", "tracking/tpc_estimate",
                     "tracking/kalman_estimate", "cortex/s/z", "cortex/s/error", "cortex/y/error"):
            assert rec[name].shape == (40, 3, 3), name
            assert rec.attrs(name).get("units") or rec.attrs(name).get("description")
        assert rec["cortex/free_energy"].shape == (40,)
        np.testing.assert_array_equal(rec["tracking/sweep_steps"], [1, 5])
        assert rec["tracking/sweep_ratio"].shape == (2,)
        assert rec.summary["mse_ratio"] == pytest.approx(figures["mse_ratio"])
        assert rec["tracking/sweep_ratio"][1] == pytest.approx(figures["mse_ratio"])


@pytest.mark.parametrize("overrides", [["prior_precision=learned"], ["observe=position", "basis=eigen"]])
def test_sim_options_run_and_are_reproducible(tmp_path, overrides) -> None:
    paths = [tmp_path / f"run{i}.h5" for i in range(2)]
    for path in paths:
        run_simulation("tracking", out=path, overrides=TINY + overrides, seed=2, quiet=True)
    with Recording(paths[0]) as a, Recording(paths[1]) as b:
        assert a.datasets() == b.datasets()
        for name in a.datasets():
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert a["tracking/observation"].shape[-1] == (1 if "observe=position" in overrides else 3)


def test_figures_draw_from_a_tiny_run(tmp_path) -> None:
    from analysis.report import write_figures

    out = tmp_path / "t.h5"
    run_simulation("tracking", out=out, overrides=TINY, quiet=True)
    names = {path.name for path in write_figures(out)}
    assert {"t_tracking_estimates.png", "t_tracking_sweep.png"} <= names


def test_config_fields_are_documented() -> None:
    for f in dataclasses.fields(TrackingConfig):
        assert f.metadata.get("help"), f.name
