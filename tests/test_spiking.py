"""Spiking readouts with brian2 (the numpy target: the compiled one's first build takes
15–50 s): rate tracking, reproducibility, placement of
update-level signals, clear errors and an untouched recording on failure."""

import hashlib
import sys

import numpy as np
import pytest

from analysis.recording import Recorder, Recording
from analysis.spiking import SpikeMapping, add_spikes, load_signal

pytest.importorskip("brian2", reason="the spiking extra is not installed")


def make_recording(path, signal: np.ndarray, **series) -> None:
    """A recording with `basal_ganglia/dopamine` = signal (T, units) and env/reward beside."""
    with Recorder(path, sim="test", seed=0, config={}) as rec:
        rec.extend("basal_ganglia/dopamine", signal.astype(np.float32))
        rec.extend("env/reward", np.zeros((len(signal), 1), np.float32))
        for name, rows in series.items():
            rec.extend(name.replace(".", "/"), rows)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_population_rate_tracks_a_slow_signal_and_matches_the_mapping(tmp_path):
    steps = 200
    phase = np.linspace(0, 4 * np.pi, steps)
    signal = np.stack([np.sin(phase), np.cos(phase / 2)], -1)
    path = tmp_path / "run.h5"
    make_recording(path, signal)
    mapping = SpikeMapping(target="numpy", neurons=200, baseline=20.0, gain=15.0,
                           gain_negative=10.0)
    rho = add_spikes(path, ["basal_ganglia/dopamine=da"], mapping, seed=3)["da"]
    assert rho >= 0.9
    with Recording(path) as rec:
        t, i = rec["spikes/da/t"], rec["spikes/da/i"]
        rate = rec["spikes/da/rate"]
        attrs = rec.attrs("spikes/da")
    expected = 20 + 15 * np.maximum(signal, 0) - 10 * np.maximum(-signal, 0)
    np.testing.assert_allclose(rate, expected, rtol=1e-5)
    assert attrs["rate_correlation"] == pytest.approx(rho) and attrs["gain"] == 15.0
    assert attrs["signal"] == "basal_ganglia/dopamine" and attrs["neurons"] == 200
    # total spikes of each unit: Poisson with mean neurons · Σ rate · step
    for unit in range(2):
        count = np.sum(i // 200 == unit)
        mean = 200 * expected[:, unit].sum() * 0.1
        assert abs(count - mean) < 5 * np.sqrt(mean)
    assert t.max() < steps * 0.1 and i.max() < 400


def test_same_seed_same_spikes(tmp_path):
    signal = np.linspace(-0.2, 1, 40)[:, None]
    runs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        path = tmp_path / f"{name}.h5"
        make_recording(path, signal)
        add_spikes(path, ["basal_ganglia/dopamine=da"], SpikeMapping(target="numpy", neurons=20),
                   seed=seed)
        with Recording(path) as rec:
            runs.append((rec["spikes/da/t"], rec["spikes/da/i"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert len(runs[0][0]) != len(runs[2][0]) or not np.array_equal(runs[0][0], runs[2][0])


def test_update_level_signal_is_held_on_the_step_axis(tmp_path):
    path = tmp_path / "run.h5"
    make_recording(path, np.zeros((10, 1)),
                   **{"cortex.world_model.loss.prediction_error": np.array([4.0, 2.0, 1.0]),
                      "cortex.world_model.env_step": np.array([2, 5, 8])})
    with Recording(path) as rec:
        signal, index = load_signal(rec, "cortex/world_model/loss/prediction_error")
    assert index == "cortex/world_model/env_step"
    # each value holds from the step after its update; before the first, 0 (the baseline)
    np.testing.assert_array_equal(signal[:, 0], [0, 0, 4, 4, 4, 2, 2, 2, 1, 1])


def test_update_steps_count_every_parallel_environment(tmp_path):
    """rl/update_env_step counts the steps of all n environments: row = step // n."""
    path = tmp_path / "run.h5"
    with Recorder(path, sim="test", seed=0, config={}) as rec:
        rec.extend("env/reward", np.zeros((12, 4), np.float32))
        rec.extend("rl/loss/value", np.array([3.0, 1.0], np.float32))
        rec.extend("rl/update_env_step", np.array([16, 32]))
        rec.extend("rl/episode_return", np.array([1.0, 2.0, 3.0], np.float32))
    with Recording(path) as rec:
        signal, index = load_signal(rec, "rl/loss/value")
        assert index == "rl/update_env_step"
        np.testing.assert_array_equal(signal[:, 0], [0] * 4 + [3] * 4 + [1] * 4)
        with pytest.raises(ValueError, match="no step index of 3 rows"):
            load_signal(rec, "rl/episode_return")


def test_populations_get_their_own_random_numbers_and_silent_ones_are_recorded(tmp_path):
    from analysis.report import write_figures

    path = tmp_path / "run.h5"
    make_recording(path, np.full((30, 1), 0.5))
    add_spikes(path, ["basal_ganglia/dopamine=a", "basal_ganglia/dopamine=b"],
               SpikeMapping(target="numpy", neurons=10), seed=0)
    silent = tmp_path / "silent.h5"
    make_recording(silent, np.zeros((30, 1)))
    add_spikes(silent, ["basal_ganglia/dopamine=quiet"],
               SpikeMapping(target="numpy", neurons=10, baseline=0.0))
    with Recording(path) as rec:
        assert not np.array_equal(rec["spikes/a/t"], rec["spikes/b/t"])
        assert rec.attrs("spikes/a")["seed"] != rec.attrs("spikes/b")["seed"]
    with Recording(silent) as rec:
        assert rec["spikes/quiet/t"].shape == (0,) and rec["spikes/quiet/i"].shape == (0,)
    assert [p.name for p in write_figures(silent, tmp_path)] == ["silent_spike_raster.png"]


def test_annotate_refuses_groups_the_file_already_has(tmp_path):
    path = tmp_path / "run.h5"
    make_recording(path, np.zeros((5, 1)))
    with Recorder.open_existing(path) as rec:
        with pytest.raises(ValueError, match="'summary' is already"):
            rec.annotate("summary", score=1.0)
        with pytest.raises(ValueError, match="'basal_ganglia' is already"):
            rec.annotate("basal_ganglia", note="x")


def test_lif_population_fires_more_for_a_stronger_drive(tmp_path):
    path = tmp_path / "run.h5"
    make_recording(path, np.repeat([[0.0], [1.0], [3.0]], 20, axis=0))
    add_spikes(path, ["basal_ganglia/dopamine=lif"],
               SpikeMapping(target="numpy", model="lif", neurons=20, baseline=30.0, gain=30.0,
                            dt_ms=0.5), seed=0)
    with Recording(path) as rec:
        t = rec["spikes/lif/t"]
    counts = np.histogram(t, [0, 2, 4, 6])[0]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("signals, mapping, match", [
    (["no/such_signal"], SpikeMapping(target="numpy"), "no dataset 'no/such_signal'"),
    (["basal_ganglia/dopamine"], SpikeMapping(target="numpy", baseline=1.0, gain_negative=10.0),
     "negative rate"),
    (["env/reward=a", "basal_ganglia/dopamine=a"], SpikeMapping(target="numpy"), "repeat"),
])
def test_bad_requests_fail_clearly_and_leave_the_recording_untouched(tmp_path, signals, mapping,
                                                                    match):
    path = tmp_path / "run.h5"
    make_recording(path, np.linspace(-1, 1, 20)[:, None])
    before = digest(path)
    with pytest.raises(ValueError, match=match):
        add_spikes(path, signals, mapping)
    assert digest(path) == before


def test_wrong_shapes_missing_files_and_repeats_fail_clearly(tmp_path):
    path = tmp_path / "run.h5"
    make_recording(path, np.zeros((1, 1)))
    with pytest.raises(ValueError, match="not a series over time"):
        add_spikes(path, ["basal_ganglia/dopamine"])
    with pytest.raises(FileNotFoundError):
        add_spikes(tmp_path / "absent.h5", ["basal_ganglia/dopamine"])
    path = tmp_path / "twice.h5"
    make_recording(path, np.zeros((5, 1)))
    add_spikes(path, ["basal_ganglia/dopamine=da"], SpikeMapping(target="numpy", neurons=2))
    before = digest(path)
    with pytest.raises(ValueError, match="already has spikes"):
        add_spikes(path, ["basal_ganglia/dopamine=da"], SpikeMapping(target="numpy", neurons=2))
    assert digest(path) == before
    with pytest.raises(ValueError, match="'model' must be one of poisson, lif"):
        SpikeMapping(target="numpy", model="izhikevich")


def test_cli_spikes_on_a_conditioning_run_and_its_figures(tmp_path, capsys):
    from analysis.report import write_figures
    from sims.cli import main
    from sims.runner import run_simulation

    out = tmp_path / "cond.h5"
    run_simulation("conditioning", out=out, quiet=True,
                   overrides=["trials=40", "trial_length=12", "cs_time=3", "delay=4",
                              "omission_prob=0.3"])
    assert main(["spikes", str(out), "--signal", "basal_ganglia/dopamine=dopamine",
                 "--neurons", "10", "--gain-negative", "5", "--target", "numpy"]) == 0
    assert "rate_correlation" in capsys.readouterr().out
    names = {p.name for p in write_figures(out, tmp_path)}
    assert {"cond_spike_raster.png", "cond_dopamine_psth.png"} <= names


def test_without_brian2_the_command_says_how_to_install(tmp_path, monkeypatch, capsys):
    from sims.cli import main

    path = tmp_path / "run.h5"
    make_recording(path, np.zeros((5, 1)))
    monkeypatch.setitem(sys.modules, "brian2", None)
    assert main(["spikes", str(path), "--signal", "basal_ganglia/dopamine"]) == 2
    assert "pip install -e '.[spiking]'" in capsys.readouterr().err


def test_a_readout_section_adds_spikes_after_the_run(tmp_path):
    from sims.runner import ReadoutError, run_simulation

    out = tmp_path / "cond.h5"
    base = ["trials=20", "trial_length=10", "cs_time=2", "delay=3"]
    figures = run_simulation("conditioning", out=out, quiet=True, seed=4, overrides=[
        *base, "readout.signals=basal_ganglia/dopamine=da", "readout.mapping.neurons=5",
        "readout.mapping.target=numpy"])
    with Recording(out) as rec:
        from analysis.spiking import population_seed
        assert rec.attrs("spikes/da")["neurons"] == 5
        assert rec.attrs("spikes/da")["seed"] == population_seed(4, 0)  # from the run's seed
        assert rec.summary["rate_correlation_da"] == pytest.approx(figures["rate_correlation_da"])
        assert "delta_cs_last" in rec.summary
    out = tmp_path / "bad.h5"
    with pytest.raises(ReadoutError, match="no dataset 'missing/signal'"):
        run_simulation("conditioning", out=out, quiet=True,
                       overrides=[*base, "readout.signals=missing/signal"])
    with Recording(out) as rec:  # the run itself is kept, untouched by the failed readout
        assert "basal_ganglia/dopamine" in rec.datasets() and "spikes/da/t" not in rec.datasets()
