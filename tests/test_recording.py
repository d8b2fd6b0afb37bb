"""The HDF5 recording format: round trip, validation and crash safety."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from analysis.recording import FORMAT, FORMAT_VERSION, Recorder, Recording, package_versions

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_of_metadata_series_static_and_summary(tmp_path):
    path = tmp_path / "run.h5"
    config = {"lr": 0.1, "sizes": [256, 256], "name": "x"}
    with Recorder(path, sim="demo", seed=7, config=config, flush_every=3) as rec:
        for step in range(10):
            rec.append("/cortex/h1/z", torch.full((4,), float(step)), units="a.u.")
            rec.append("cortex/free_energy", 10.0 - step, description="F per step")
            rec.append("env/terminated", step == 9, description="episode ended")
        rec.write("cortex/h1/W", np.eye(3), description="final weights")
        rec.summary(final_loss=np.float32(0.5), steps=10)

    with Recording(path) as run:
        assert (run.sim, run.seed, run.config, run.format_version) == ("demo", 7, config, FORMAT_VERSION)
        assert run.versions["python"] and run.versions == json.loads(json.dumps(run.versions))
        assert "T" in run.created
        assert run.summary == {"final_loss": 0.5, "steps": 10}
        assert run.datasets() == ["cortex/free_energy", "cortex/h1/W", "cortex/h1/z", "env/terminated"]
        z = run["cortex/h1/z"]
        assert z.shape == (10, 4) and z.dtype == np.float32 and np.all(z[:, 0] == np.arange(10))
        assert np.array_equal(run["/cortex/free_energy"], 10.0 - np.arange(10))
        assert run["env/terminated"].dtype == bool and run["env/terminated"][-1]
        assert np.array_equal(run["cortex/h1/W"], np.eye(3))
        assert run.attrs("cortex/h1/z") == {"units": "a.u."}
        assert run.attrs("cortex/free_energy") == {"description": "F per step"}
        assert "cortex/h1/z" in run and "cortex/h1" not in run and "nope" not in run

    with h5py.File(path, "r") as file:
        assert file.attrs["format"] == FORMAT
        series = file["cortex/h1/z"]
        assert series.maxshape == (None, 4) and series.chunks is not None
        assert series.compression == "gzip"


def test_non_finite_values_are_recorded(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        for value in (1.0, float("nan"), float("inf")):
            rec.append("cortex/free_energy", value, units="nats")
    with Recording(tmp_path / "run.h5") as run:
        values = run["cortex/free_energy"]
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isposinf(values[2])


def test_shape_mismatch_names_dataset_and_both_shapes(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        rec.append("cortex/h1/z", np.zeros(3), units="a.u.")
        with pytest.raises(ValueError, match=r"cortex/h1/z.*\(4,\).*\(3,\)"):
            rec.append("cortex/h1/z", np.zeros(4))


def test_new_dataset_without_units_or_description_is_rejected(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        with pytest.raises(ValueError, match="basal_ganglia/dopamine"):
            rec.append("basal_ganglia/dopamine", 0.0)
        with pytest.raises(ValueError, match="cortex/W"):
            rec.write("cortex/W", np.eye(2))


def test_unwritable_path_is_rejected_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="a_file"):
        Recorder(blocker / "run.h5", sim="demo", seed=0, config={})


def test_missing_parents_are_created(tmp_path):
    Recorder(tmp_path / "deep" / "er" / "run.h5", sim="demo", seed=0, config={}).close()
    assert Recording(tmp_path / "deep" / "er" / "run.h5").sim == "demo"


def test_reader_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        Recording(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="text.h5 is not a brainloop recording"):
        Recording(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w"):
        pass
    with pytest.raises(ValueError, match="other.h5 is not a brainloop recording"):
        Recording(tmp_path / "other.h5")


def test_flush_every_makes_steps_visible_while_recording(tmp_path):
    path = tmp_path / "run.h5"
    rec = Recorder(path, sim="demo", seed=0, config={}, flush_every=4, flush_seconds=1e9)
    for step in range(6):
        rec.append("env/reward", float(step), units="reward")
    with Recording(path) as run:
        assert len(run["env/reward"]) == 4
    rec.close()
    rec.close()
    with Recording(path) as run:
        assert len(run["env/reward"]) == 6


def test_sigkill_leaves_a_readable_file_with_the_flushed_steps(tmp_path):
    path = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os, signal
        from analysis.recording import Recorder
        rec = Recorder({str(path)!r}, sim="demo", seed=0, config={{}},
                       flush_every=10_000, flush_seconds=1e9)
        for step in range(25):
            rec.append("cortex/h1/z", [float(step)] * 3, units="a.u.")
        rec.flush()
        for step in range(25, 40):
            rec.append("cortex/h1/z", [float(step)] * 3, units="a.u.")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    with Recording(path) as run:
        z = run["cortex/h1/z"]
        assert run.summary == {}
    assert z.shape == (25, 3) and np.array_equal(z[:, 0], np.arange(25))


def test_package_versions_lists_python_and_installed_packages():
    versions = package_versions()
    assert {"python", "torch", "numpy", "h5py"} <= versions.keys()
