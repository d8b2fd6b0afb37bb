"""The HDF5 recording format: round trip, validation and crash safety."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from analysis.monitors import MONITORS, about, lookup
from analysis.recording import (FORMAT, FORMAT_VERSION, Recorder, Recording, lock_path,
                                package_versions)

REPO = Path(__file__).resolve().parents[1]


def test_round_trip_of_metadata_series_static_and_summary(tmp_path):
    path = tmp_path / "run.h5"
    config = {"lr": 0.1, "sizes": [256, 256], "name": "x"}
    with Recorder(path, sim="demo", seed=7, config=config, flush_every=3) as rec:
        for step in range(10):
            rec.append("/cortex/h1/z", torch.full((4,), float(step)), units="a.u.")
            rec.append("cortex/free_energy", 10.0 - step)
            rec.append("env/terminated", step == 9)
        rec.write("rl/final_eval_returns", np.arange(3.0))
        rec.summary(final_loss=np.float32(0.5), steps=10)

    with Recording(path) as run:
        assert (run.sim, run.seed, run.config, run.format_version) == ("demo", 7, config, FORMAT_VERSION)
        assert run.versions["python"] and run.versions == json.loads(json.dumps(run.versions))
        assert "T" in run.created
        assert run.summary == {"final_loss": 0.5, "steps": 10}
        assert run.datasets() == ["cortex/free_energy", "cortex/h1/z", "env/terminated",
                                  "rl/final_eval_returns"]
        z = run["cortex/h1/z"]
        assert z.shape == (10, 4) and z.dtype == np.float32 and np.all(z[:, 0] == np.arange(10))
        assert np.array_equal(run["/cortex/free_energy"], 10.0 - np.arange(10))
        assert run["env/terminated"].dtype == bool and run["env/terminated"][-1]
        assert np.array_equal(run["rl/final_eval_returns"], np.arange(3.0))
        assert run.attrs("cortex/h1/z") == {"units": "a.u.", "description": "state z of column h1",
                                            "shape": "(step, env, d_node)"}
        assert run.attrs("cortex/free_energy") == {
            "units": "nats", "shape": "(step,)",
            "description": "batch-mean free energy F, including its log-normaliser ½ log|2πΣ|"}
        assert "cortex/h1/z" in run and "cortex/h1" not in run and "nope" not in run

    with h5py.File(path, "r") as file:
        assert file.attrs["format"] == FORMAT
        series = file["cortex/h1/z"]
        assert series.maxshape == (None, 4) and series.chunks is not None
        assert series.compression == "gzip"


def test_extend_appends_several_rows_at_once(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}, flush_every=5) as rec:
        rec.append("basal_ganglia/dopamine", np.zeros(2))
        rec.extend("basal_ganglia/dopamine", np.ones((7, 2)))
        with pytest.raises(ValueError, match=r"basal_ganglia/dopamine.*\(3,\).*\(2,\)"):
            rec.extend("basal_ganglia/dopamine", np.ones((4, 3)))
    with Recording(tmp_path / "run.h5") as run:
        assert np.array_equal(run["basal_ganglia/dopamine"], np.r_[np.zeros((1, 2)), np.ones((7, 2))])


def test_non_finite_values_are_recorded(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        for value in (1.0, float("nan"), float("inf")):
            rec.append("cortex/free_energy", value)
    with Recording(tmp_path / "run.h5") as run:
        values = run["cortex/free_energy"]
    assert values[0] == 1.0 and np.isnan(values[1]) and np.isposinf(values[2])


def test_shape_mismatch_names_dataset_and_both_shapes(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        rec.append("cortex/h1/z", np.zeros(3), units="a.u.")
        with pytest.raises(ValueError, match=r"cortex/h1/z.*\(4,\).*\(3,\)"):
            rec.append("cortex/h1/z", np.zeros(4))


def test_names_outside_the_monitor_table_are_refused(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        with pytest.raises(ValueError, match=r"'cortex/dopamine' is not in the monitor table.*"
                                             r"analysis/monitors.py"):
            rec.append("cortex/dopamine", 0.0)
        with pytest.raises(ValueError, match=r"'weights' is not in the monitor table"):
            rec.write("weights", np.eye(2))


def test_units_and_description_come_from_the_table(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        with pytest.raises(ValueError, match=r"cortex/free_energy.*units='a.u.'.*'nats'.*monitors.py"):
            rec.append("cortex/free_energy", 0.0, units="a.u.")
        with pytest.raises(ValueError, match=r"env/reward.*description='money'"):
            rec.append("env/reward", 0.0, description="money")
        rec.append("env/reward", 0.0, units="reward")  # the table's own units: allowed
        with pytest.raises(ValueError, match=r"metrics/accuracy.*needs units= and description="):
            rec.append("metrics/accuracy", 0.5, units="fraction")
        rec.append("metrics/accuracy", 0.5, units="fraction", description="test accuracy")
    with Recording(tmp_path / "run.h5") as run:
        assert run.attrs("metrics/accuracy") == {"units": "fraction", "description": "test accuracy",
                                                 "shape": "(epoch or evaluation,)"}


def test_series_and_static_arrays_are_recorded_as_the_table_says(tmp_path):
    with Recorder(tmp_path / "run.h5", sim="demo", seed=0, config={}) as rec:
        with pytest.raises(ValueError, match=r"rl/final_eval_returns.*static.*Recorder.write"):
            rec.append("rl/final_eval_returns", 1.0)
        with pytest.raises(ValueError, match=r"rl/episode_return.*series.*Recorder.append"):
            rec.write("rl/episode_return", np.zeros(3))


def test_every_monitor_is_documented_and_matches_only_itself():
    patterns = [entry.pattern for entry in MONITORS]
    assert len(set(patterns)) == len(patterns)
    for entry in MONITORS:
        assert re.fullmatch(r"\(.*\)", entry.shape), entry.pattern
        if entry.caller_documented:
            assert about(entry), entry.pattern
        else:
            assert entry.units and entry.description, entry.pattern
        example = re.sub(r"\{\w+\}", "x1", entry.pattern)
        assert lookup(example).pattern == entry.pattern
        assert "{" not in (lookup(example).description or "").replace("{t+1}", "")


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
        rec.append("env/reward", float(step))
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


def _files(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_an_existing_file_is_replaced_only_when_asked(tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match=r"run.h5 already exists.*--overwrite"):
        Recorder(path, sim="demo", seed=0, config={})
    assert path.read_bytes() == b"precious" and _files(tmp_path) == ["run.h5"]
    with Recorder(path, sim="demo", seed=0, config={}, overwrite=True) as rec:
        assert path.read_bytes() == b"precious"  # not in place until it records something
        rec.append("env/reward", 1.0)
    assert Recording(path).sim == "demo" and _files(tmp_path) == ["run.h5"]


def test_the_recording_moves_into_place_at_its_first_flush_of_data(tmp_path):
    path = tmp_path / "run.h5"
    rec = Recorder(path, sim="demo", seed=0, config={}, flush_every=2, flush_seconds=1e9)
    assert _files(tmp_path) == [f".run.h5.{os.getpid()}.tmp", "run.h5.lock"]
    rec.flush()  # nothing to write: still not in place
    rec.append("env/reward", 1.0)
    assert not path.exists()
    rec.append("env/reward", 2.0)
    assert _files(tmp_path) == ["run.h5", "run.h5.lock"]
    with Recording(path) as run:
        assert len(run["env/reward"]) == 2
    rec.close()
    assert _files(tmp_path) == ["run.h5"]


@pytest.mark.parametrize("existing", [True, False])
def test_a_run_failing_before_it_records_leaves_the_path_untouched(tmp_path, existing):
    path = tmp_path / "run.h5"
    if existing:
        path.write_bytes(b"precious")
    with pytest.raises(ValueError, match="bad setting"):
        with Recorder(path, sim="demo", seed=0, config={}, overwrite=True):
            raise ValueError("bad setting")
    assert _files(tmp_path) == (["run.h5"] if existing else [])
    if existing:
        assert path.read_bytes() == b"precious"


def test_a_run_failing_after_it_recorded_keeps_what_it_recorded(tmp_path):
    path = tmp_path / "run.h5"
    with pytest.raises(RuntimeError):
        with Recorder(path, sim="demo", seed=0, config={}) as rec:
            rec.append("env/reward", 1.0)
            raise RuntimeError("bug")
    with Recording(path) as run:
        assert len(run["env/reward"]) == 1 and run.summary == {}
    assert _files(tmp_path) == ["run.h5"]


def test_a_second_writer_is_refused_naming_the_path_and_the_first_pid(tmp_path):
    path = tmp_path / "run.h5"
    first = Recorder(path, sim="demo", seed=0, config={})
    with pytest.raises(ValueError, match=rf"run.h5 is being written by another run \(pid "
                                         rf"{os.getpid()}; lock file .*run.h5.lock\)"):
        Recorder(path, sim="demo", seed=1, config={}, overwrite=True)
    first.append("env/reward", 1.0)
    first.close()
    assert Recording(path).seed == 0 and not lock_path(path).exists()


def test_a_stale_lock_is_taken_over_with_its_temporary_file(tmp_path):
    path = tmp_path / "run.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(path).write_text(f"{dead.pid}\n")
    (tmp_path / f".run.h5.{dead.pid}.tmp").write_bytes(b"half a run")
    with Recorder(path, sim="demo", seed=0, config={}) as rec:
        assert lock_path(path).read_text().split()[0] == str(os.getpid())
        rec.append("env/reward", 1.0)
    assert _files(tmp_path) == ["run.h5"]


def _contents(path) -> dict:
    """Every dataset's bytes and attributes, and the root and summary attributes."""
    with h5py.File(path, "r") as file:
        items = {}
        file.visititems(lambda name, item: items.__setitem__(name, (
            item[()].tobytes() if isinstance(item, h5py.Dataset) else None, dict(item.attrs))))
        return {"root": dict(file.attrs), **items}


def test_append_mode_adds_a_group_and_keeps_everything_else(tmp_path):
    path = tmp_path / "run.h5"
    with Recorder(path, sim="demo", seed=3, config={"lr": 0.1}) as rec:
        for step in range(5):
            rec.append("cortex/h1/z", np.full((2, 3), step, np.float32))
        rec.write("rl/final_eval_returns", np.arange(4.0))
        rec.summary(score=1.5)
    before = _contents(path)

    with Recorder.open_existing(path) as rec:
        assert lock_path(path).exists()
        with pytest.raises(ValueError, match=r"run.h5 is being written by another run"):
            Recorder.open_existing(path)
        with pytest.raises(ValueError, match=r"'cortex/h1/z' already exists"):
            rec.append("cortex/h1/z", np.zeros((2, 3)))
        with pytest.raises(ValueError, match=r"'cortex/h1/z/x' clashes with dataset 'cortex/h1/z'"):
            rec.write("cortex/h1/z/x", np.zeros(2))
        with pytest.raises(ValueError, match=r"\['score'\] are already in"):
            rec.summary(score=2.0)
        rec.append("cortex/h2/error_rms", 0.5)
        rec.summary(spikes=7)

    after = _contents(path)
    assert {key: after[key] for key in before if key != "summary"} == {
        key: before[key] for key in before if key != "summary"}
    assert after["summary"][1] == {"score": 1.5, "spikes": 7}
    with Recording(path) as run:
        assert run["cortex/h2/error_rms"].tolist() == [0.5] and (run.sim, run.seed) == ("demo", 3)
    assert _files(tmp_path) == ["run.h5"]


def test_append_mode_failing_leaves_the_file_byte_identical(tmp_path):
    path = tmp_path / "run.h5"
    with Recorder(path, sim="demo", seed=0, config={}) as rec:
        rec.append("env/reward", 1.0)
    original = path.read_bytes()
    with pytest.raises(RuntimeError):
        with Recorder.open_existing(path, flush_every=1) as rec:
            rec.append("cortex/h1/error_rms", 0.5)
            raise RuntimeError("readout failed")
    assert path.read_bytes() == original and _files(tmp_path) == ["run.h5"]
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        Recorder.open_existing(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="text.h5 is not a brainloop recording"):
        Recorder.open_existing(tmp_path / "text.h5")
    assert _files(tmp_path) == ["run.h5", "text.h5"]


def test_a_lock_held_from_another_host_is_never_taken_over(tmp_path):
    path = tmp_path / "run.h5"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is dead here may be alive on the other host
    lock_path(path).write_text(f"{dead.pid} some-other-host\n")
    with pytest.raises(ValueError, match=rf"pid {dead.pid} on some-other-host"):
        Recorder(path, sim="demo", seed=0, config={})
    assert lock_path(path).exists()
