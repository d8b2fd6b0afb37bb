"""The `brainloop` CLI, runner and report, driven by a tiny fake simulation and synthetic data."""

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from analysis.recording import Recorder, Recording, lock_path
from analysis.report import summarize, write_figures
from sims import registry
from sims.cli import main
from sims.runner import resolve_device, run_simulation


@dataclass(frozen=True)
class FakeConfig:
    steps: int = field(default=5, metadata={"help": "steps to simulate"})
    scale: float = field(default=1.0, metadata={"help": "noise scale"})


def _fake_run(cfg: FakeConfig, ctx) -> dict:
    bar = ctx.progress(range(cfg.steps), desc="fake")
    for step in bar:
        z = cfg.scale * torch.randn(1, 3, generator=ctx.generator).to(ctx.device)
        ctx.recorder.append("cortex/h1/z", z)
        ctx.recorder.append("cortex/h1/error", z - 1.0)
        bar.set_postfix(step=step)
    return {"final_error": float(z.abs().mean()), "steps": cfg.steps}


@pytest.fixture(autouse=True)
def fake_sim(monkeypatch):
    """Registers the 'fake' simulation, alone, for one test only."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "SIMULATION_MODULES", [])
    return registry.register(registry.Simulation(
        name="fake", summary="a fake simulation for tests", config=FakeConfig, run=_fake_run))


def test_list_and_show(capsys):
    assert main(["list"]) == 0
    assert re.search(r"^fake +a fake simulation for tests$", capsys.readouterr().out, re.M)
    assert main(["show", "fake"]) == 0
    assert "scale: float = 1.0" in capsys.readouterr().out


def test_run_then_report(tmp_path, capsys):
    out = tmp_path / "runs" / "fake.h5"
    assert main(["run", "fake", "--set", "steps=4", "--seed", "3", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "final_error" in printed and "steps       = 4" in printed
    with Recording(out) as rec:
        assert rec.sim == "fake" and rec.seed == 3 and rec.config == {"steps": 4, "scale": 1.0}
        assert rec.summary["steps"] == 4 and rec.shape("cortex/h1/z") == (4, 1, 3)

    assert main(["report", str(out), "--out-dir", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    assert "sim      fake" in printed and "cortex/h1/z" in printed and "(4, 1, 3) float32" in printed
    assert (tmp_path / "figs" / "fake_node_errors.png").is_file()
    assert "fake_node_errors.png" in printed


def test_same_seed_same_device_gives_identical_datasets(tmp_path, device):
    for name in ("a", "b"):
        run_simulation("fake", out=tmp_path / f"{name}.h5", seed=1, device=str(device), quiet=True)
    with Recording(tmp_path / "a.h5") as a, Recording(tmp_path / "b.h5") as b:
        assert a.datasets() == b.datasets()
        for name in a.datasets():
            assert np.array_equal(a[name], b[name])


def test_failing_simulation_still_leaves_its_recording(tmp_path, monkeypatch):
    def crash(cfg, ctx):
        ctx.recorder.append("env/reward", 1.0)
        raise RuntimeError("diverged")
    monkeypatch.setitem(registry._REGISTRY, "crash", registry.Simulation(
        name="crash", summary="crashes", config=FakeConfig, run=crash))
    with pytest.raises(RuntimeError, match="diverged"):
        run_simulation("crash", out=tmp_path / "crash.h5", quiet=True)
    with Recording(tmp_path / "crash.h5") as rec:
        assert len(rec["env/reward"]) == 1 and rec.summary == {}


@pytest.mark.parametrize("argv, culprit", [
    (["run", "nosuchsim", "--out", "{tmp}/x.h5"], "'nosuchsim'"),
    (["show", "nosuchsim"], "available: .*fake"),
    (["run", "fake", "--set", "stepz=3", "--out", "{tmp}/x.h5"], "'stepz'"),
    (["run", "fake", "--set", "steps=many", "--out", "{tmp}/x.h5"], "'steps' expects int"),
    (["run", "fake", "--config", "{tmp}/missing.toml", "--out", "{tmp}/x.h5"], "missing.toml"),
    (["run", "fake", "--out", "{tmp}/blocker/x.h5"], "blocker"),
    (["run", "fake", "--device", "tpu", "--out", "{tmp}/x.h5"], "'tpu'"),
    (["run", "fake", "--seed", "-1", "--out", "{tmp}/x.h5"], "seed must be"),
    (["report", "{tmp}/absent.h5"], "absent.h5"),
])
def test_user_errors_exit_2_naming_the_culprit(tmp_path, capsys, argv, culprit):
    (tmp_path / "blocker").write_text("")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error: ") and "Traceback" not in err
    assert re.search(culprit, err)
    assert [p.name for p in tmp_path.iterdir()] == ["blocker"]  # no output, temp or lock file


def _register(monkeypatch, name, run):
    monkeypatch.setitem(registry._REGISTRY, name, registry.Simulation(
        name=name, summary=name, config=FakeConfig, run=run))


def _refuse_at_start(cfg, ctx):
    raise ValueError("steps=5 is too many for this test simulation")


def _diverge(cfg, ctx):
    for step in range(cfg.steps):
        ctx.recorder.append("env/reward", float(step))
    raise FloatingPointError(f"free energy is inf at step {cfg.steps}; lower 'scale'")


def test_existing_out_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run.h5"
    out.write_bytes(b"a precious recording")
    assert main(["run", "fake", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error: ") and "Traceback" not in err
    assert f"{out} already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"a precious recording"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]

    assert main(["run", "fake", "--quiet", "--overwrite", "--out", str(out)]) == 0
    with Recording(out) as rec:
        assert rec.sim == "fake" and rec.summary["steps"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_overwrite_is_documented(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert re.search(r"--overwrite +replace an existing recording", capsys.readouterr().out)


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("existing", [True, False])
def test_a_simulation_refusing_its_input_leaves_out_untouched(tmp_path, capsys, monkeypatch,
                                                              overwrite, existing):
    _register(monkeypatch, "picky", _refuse_at_start)
    out = tmp_path / "run.h5"
    if existing:
        run_simulation("fake", out=out, quiet=True)
        original = out.read_bytes()
    assert main(["run", "picky", "--quiet", "--out", str(out), *overwrite]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if existing and not overwrite:
        assert "already exists" in err
    else:
        assert err == "brainloop: error: steps=5 is too many for this test simulation\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == (["run.h5"] if existing else [])
    if existing:
        assert out.read_bytes() == original


def test_a_divergence_exits_2_and_keeps_the_partial_recording(tmp_path, capsys, monkeypatch):
    _register(monkeypatch, "diverging", _diverge)
    out = tmp_path / "run.h5"
    assert main(["run", "diverging", "--quiet", "--set", "steps=3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error: simulation 'diverging' stopped: free energy is inf "
                          "at step 3; lower 'scale'") and "Traceback" not in err
    assert f"what was recorded until then is in {out}" in err
    with Recording(out) as rec:
        assert rec["env/reward"].tolist() == [0.0, 1.0, 2.0] and rec.summary == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]


def test_a_divergence_before_recording_leaves_no_file(tmp_path, capsys, monkeypatch):
    _register(monkeypatch, "diverging", _diverge)
    assert main(["run", "diverging", "--quiet", "--set", "steps=0", "--out",
                 str(tmp_path / "run.h5")]) == 2
    assert "nothing was recorded" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_bug_after_the_start_keeps_its_traceback(tmp_path, monkeypatch):
    def buggy(cfg, ctx):
        ctx.recorder.append("env/reward", 1.0)
        raise ValueError("index out of range in the simulation")
    _register(monkeypatch, "buggy", buggy)
    with pytest.raises(RuntimeError, match="simulation 'buggy' failed"):
        main(["run", "buggy", "--quiet", "--out", str(tmp_path / "run.h5")])


def test_a_locked_out_is_refused(tmp_path, capsys):
    out = tmp_path / "run.h5"
    lock_path(out).write_text(f"{os.getpid()}\n")
    assert main(["run", "fake", "--quiet", "--overwrite", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} is being written by another run (pid {os.getpid()}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5.lock"]


def test_run_simulation_takes_a_config_object(tmp_path):
    figures = run_simulation("fake", config=FakeConfig(steps=2, scale=0.5), out=tmp_path / "a.h5",
                             quiet=True)
    assert figures["steps"] == 2
    with Recording(tmp_path / "a.h5") as rec:
        assert rec.config == {"steps": 2, "scale": 0.5}
    with pytest.raises(ValueError, match="config object or config_path/overrides, not both"):
        run_simulation("fake", config=FakeConfig(), overrides=["steps=3"], out=tmp_path / "b.h5")

    @dataclass(frozen=True)
    class OtherConfig:
        steps: int = field(default=1, metadata={"help": "steps"})

    with pytest.raises(TypeError, match="'fake' takes a FakeConfig config, got a OtherConfig"):
        run_simulation("fake", config=OtherConfig(), out=tmp_path / "b.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5"]


@pytest.fixture
def pc_recording(tmp_path):
    """A synthetic predictive-coding training run following the figures_pc naming."""
    path = tmp_path / "pc.h5"
    with Recorder(path, sim="pc_fake", seed=0, config={}) as rec:
        for step in range(50):
            rec.append("cortex/free_energy", 100.0 * math.exp(-step / 20))
            for node in ("h1", "h2", "y"):
                rec.append(f"cortex/{node}/error", np.full((2, 4), math.exp(-step / 30)))
            if step % 10 == 0:
                rec.append("cortex/free_energy_trace", 50.0 / (1 + np.arange(21)) + 1)
                rec.append("cortex/free_energy_trace_step", step)
        for epoch in range(1, 4):
            rec.append("metrics/epoch", epoch, units="epochs", description="epochs completed")
            rec.append("metrics/test_accuracy", 0.8 + 0.05 * epoch, units="fraction",
                       description="fraction correct")
            rec.append("metrics/train_loss", 1.0 / epoch, units="nats", description="training loss")
            rec.append("metrics/test_loss", float("nan") if epoch == 2 else 1.2 / epoch,
                       units="nats", description="held-out loss")
    return path


def test_pc_figures_on_a_synthetic_recording(pc_recording, tmp_path):
    written = write_figures(pc_recording)
    names = {path.name for path in written}
    assert {"pc_learning_curves.png", "pc_free_energy_trace.png", "pc_node_errors.png"} <= names
    assert all(path.parent == tmp_path and path.stat().st_size > 10_000 for path in written)
    text = summarize(pc_recording)
    assert re.search(r"cortex/free_energy_trace +\(5, 21\) float64 +\[nats\]", text)
    assert "summary (none: the run did not finish)" in text


def test_figures_skip_recordings_without_their_data(tmp_path):
    Recorder(tmp_path / "empty.h5", sim="x", seed=0, config={}).close()
    assert write_figures(tmp_path / "empty.h5") == []


def test_registry_skips_absent_modules_but_not_broken_ones(tmp_path, monkeypatch):
    (tmp_path / "broken_sim_module.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "SIMULATION_MODULES", ["sims.not_written_yet"])
    assert "fake" in [sim.name for sim in registry.available()]  # the absent module is skipped
    monkeypatch.setattr(registry, "SIMULATION_MODULES", ["broken_sim_module"])
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        registry.available()


def test_registry_rejects_undocumented_config_fields():
    @dataclass(frozen=True)
    class Undocumented:
        steps: int = 3

    with pytest.raises(ValueError, match="Undocumented.steps"):
        registry.register(registry.Simulation(name="bad", summary="x", config=Undocumented,
                                              run=_fake_run))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when CUDA is absent")
def test_asking_for_absent_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="'cuda:0'.*CUDA is not available"):
        resolve_device("cuda:0")
