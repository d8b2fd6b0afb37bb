"""pendulum-model: the simulated physics, the partially observed variant, and a tiny run."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from analysis.recording import Recording
from cortex import InferenceConfig
from sims.pendulum_model import PendulumModelConfig, imagination_errors, simulate, world_model
from sims.runner import run_simulation


def test_undriven_undamped_pendulum_keeps_its_energy() -> None:
    cfg = PendulumModelConfig(damping=0.0, max_torque=0.0, episode_steps=200)
    x, u, state = simulate(cfg, 8, torch.Generator().manual_seed(0))
    assert x.shape == (200, 8, 3) and u.shape == (200, 8, 1) and torch.count_nonzero(u) == 0
    theta, omega = state[..., 0].double(), state[..., 1].double()
    energy = 0.5 * omega**2 - 9.81 * torch.cos(theta)
    assert (energy - energy[0]).abs().max() < 0.05 * 9.81
    assert torch.allclose(x[..., 0], torch.cos(theta).float(), atol=1e-5)


def test_partial_variant_hides_the_velocity() -> None:
    x, _, _ = simulate(PendulumModelConfig(partial=True, episode_steps=10, warmup=5, horizon=4), 4, torch.Generator().manual_seed(0))
    assert x.shape == (10, 4, 2)
    assert torch.allclose(x.pow(2).sum(-1), torch.ones(10, 4), atol=1e-5)  # (cos, sin) only


def test_tiny_run_learns_something_and_records(tmp_path) -> None:
    out = tmp_path / "p.h5"
    figures = run_simulation("pendulum-model", out=out, quiet=True, seed=1, overrides=[
        "epochs=3", "train_episodes=128", "test_episodes=16", "episode_steps=30", "warmup=10",
        "horizon=5", "hidden=16", "inference_steps=10", "lr=3e-3"])
    assert set(figures) >= {"prediction_error_10", "nochange_error_10", "improvement_10"}
    with Recording(out) as rec:
        err, still = rec["pendulum/prediction_error"], rec["pendulum/nochange_error"]
        assert err.shape == still.shape == (5,)
        assert np.all(np.isfinite(err))
        # Three seconds of learning already beat "no change" at the horizon.
        assert err[-1] < 0.8 * still[-1]
        assert rec["metrics/prediction_error_10"].shape == (3,)
        assert rec.summary["prediction_error_10"] == float(err[-1])


def test_imagination_errors_can_score_a_subset_of_the_observation() -> None:
    cfg = PendulumModelConfig(episode_steps=20, warmup=5, horizon=4)
    gen = torch.Generator().manual_seed(0)
    x, u, _ = simulate(cfg, 3, gen)
    model = world_model(cfg, 3, gen)
    infer_cfg = InferenceConfig(steps=3)
    err_all, still_all, _ = imagination_errors(model, x, u, cfg, infer_cfg)
    err_cs, still_cs, _ = imagination_errors(model, x, u, cfg, infer_cfg, scored=2)
    # What scoring (cos, sin) leaves out is exactly the velocity channel's share.
    starts = range(cfg.warmup, cfg.episode_steps - cfg.horizon)
    omega_share = torch.stack([
        torch.stack([(x[t + k + 1, :, 2] - x[t, :, 2]).pow(2) for t in starts]).mean() for k in range(cfg.horizon)])
    assert torch.allclose(still_all - still_cs, omega_share, atol=1e-6)
    assert torch.all(err_cs < err_all)


def test_negative_weight_decay_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        run_simulation("pendulum-model", out=tmp_path / "p.h5", quiet=True, overrides=["weight_decay=-1"])


def test_tiny_laplace_run_learns_and_records(tmp_path) -> None:
    out = tmp_path / "p.h5"
    figures = run_simulation("pendulum-model", out=out, quiet=True, seed=1, overrides=[
        "posterior=laplace", "epochs=3", "train_episodes=128", "test_episodes=16", "episode_steps=30",
        "warmup=10", "horizon=5", "hidden=8", "lr=1e-2", "state_precision=100", "obs_precision=1000"])
    assert np.isfinite(figures["prediction_error_10"])
    with Recording(out) as rec:
        assert rec["cortex/free_energy"].shape == (3 * 128 // 32,)
        assert np.all(np.isfinite(rec["cortex/s/error_rms"])) and np.all(np.isfinite(rec["cortex/x/error_rms"]))
        assert rec["cortex/x/precision"].shape == (12,) and np.all(rec["cortex/x/precision"] > 0)
        # EM lowers the expected free energy over a dozen batches.
        energy = rec["cortex/free_energy"]
        assert energy[-3:].mean() < energy[:3].mean()


@pytest.mark.parametrize("override, culprit", [
    ("window=3", "window"), ("hidden=[8,8]", "hidden"), ("dropout=0.1", "dropout"), ("posterior=exact", "posterior"),
])
def test_laplace_settings_it_cannot_honour_are_refused(tmp_path, override: str, culprit: str) -> None:
    with pytest.raises(ValueError, match=culprit):
        run_simulation("pendulum-model", out=tmp_path / "p.h5", quiet=True,
                       overrides=["posterior=laplace", override] if override.split("=")[0] != "posterior" else [override])


def test_validation_selects_an_epoch_and_reports_its_test_figures(tmp_path) -> None:
    out = tmp_path / "p.h5"
    figures = run_simulation("pendulum-model", out=out, quiet=True, seed=1, overrides=[
        "posterior=laplace", "epochs=4", "train_episodes=64", "test_episodes=8", "validation_episodes=8",
        "episode_steps=30", "warmup=10", "horizon=5", "hidden=8", "lr=3e-2", "state_precision=100",
        "obs_precision=1000"])
    with Recording(out) as rec:
        val, test = rec["metrics/validation_error_10"], rec["metrics/prediction_error_10"]
        assert val.shape == test.shape == (4,)
        assert figures["selected_epoch"] == int(np.argmin(val)) + 1
        assert figures["selected_epoch"] < 4  # this seed's best epoch is not the last: selection matters
        # The headline is the selected epoch's test error, not the last epoch's.
        assert figures["prediction_error_10"] == pytest.approx(float(test[figures["selected_epoch"] - 1]), rel=1e-6)
        assert rec.summary["selected_epoch"] == figures["selected_epoch"]
