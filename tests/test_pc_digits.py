"""pc-digits end to end on a tiny budget: recording layout, summary and reproducibility."""
from __future__ import annotations

import re

import numpy as np
import pytest

from analysis.recording import Recording
from sims.runner import run_simulation

TINY = ["epochs=2", "hidden=16,16", "inference_steps=5", "trace_every=10"]
TIMING = {"pc_seconds_per_epoch", "bp_seconds_per_epoch", "wall_time_s"}


def test_records_both_networks_per_epoch(tmp_path) -> None:
    out = tmp_path / "digits.h5"
    figures = run_simulation("pc-digits", out=out, overrides=TINY, seed=3, quiet=True)
    assert set(figures) >= {"pc_test_accuracy", "bp_test_accuracy", "pc_seconds_per_epoch", "bp_seconds_per_epoch"}
    with Recording(out) as rec:
        assert rec.sim == "pc-digits" and rec.seed == 3 and rec.config["hidden"] == [16, 16]
        for name in ("metrics/pc_test_accuracy", "metrics/bp_test_accuracy", "metrics/epoch"):
            assert rec[name].shape == (2,)
        # Far above chance (0.1) even after two epochs of a tiny network.
        assert rec["metrics/pc_test_accuracy"][-1] > 0.5
        assert rec.summary["pc_test_accuracy"] == pytest.approx(rec["metrics/pc_test_accuracy"][-1])
        steps = rec["cortex/free_energy"].shape[0]
        assert rec["cortex/h1/error_rms"].shape == rec["cortex/energy"].shape == (steps,)
        # F is the energy plus the log-normaliser 1/2 log|2 pi Sigma| of the unit-precision
        # columns h1, h2 and label (16 + 16 + 10 dimensions).
        log_norm = 0.5 * (16 + 16 + 10) * np.log(2 * np.pi)
        np.testing.assert_allclose(rec["cortex/free_energy"] - rec["cortex/energy"], log_norm, rtol=1e-5)
        trace = rec["cortex/free_energy_trace"]
        assert trace.shape[1] == 6 and np.all(np.diff(trace, axis=1) <= 1e-4)


def test_same_seed_same_recording(tmp_path) -> None:
    paths = [tmp_path / f"run{i}.h5" for i in range(2)]
    for path in paths:
        run_simulation("pc-digits", out=path, overrides=TINY, seed=7, quiet=True)
    other = tmp_path / "other.h5"
    run_simulation("pc-digits", out=other, overrides=TINY, seed=8, quiet=True)
    with Recording(paths[0]) as a, Recording(paths[1]) as b, Recording(other) as c:
        assert a.datasets() == b.datasets()
        for name in a.datasets():
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert {k: v for k, v in a.summary.items() if k not in TIMING} == \
            {k: v for k, v in b.summary.items() if k not in TIMING}
        assert a.config == b.config and a.versions == b.versions
        assert not np.array_equal(a["cortex/free_energy"], c["cortex/free_energy"])


def test_inference_divergence_stops_with_node_and_step(tmp_path, capsys) -> None:
    from sims.cli import main

    out = tmp_path / "diverged.h5"
    code = main(["run", "pc-digits", "--quiet", "--out", str(out),
                 "--set", "epochs=1", "hidden=16,16", "inference_lr=20"])
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(r"inference diverged: non-finite .* at node '(h1|h2|label|image)' on inference step \d+", err), err
    # It diverges in the first batch, before anything was recorded: no file is left behind.
    assert "nothing was recorded" in err and not out.exists()
