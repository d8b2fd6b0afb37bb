"""Every simulation's inputs: a bad value is refused at construction, before any file exists or
an existing one is touched; a seed gives a bit-identical recording; a divergence stops the run
naming the config key and leaves the partial recording readable."""
from __future__ import annotations

import numpy as np
import pytest

from analysis.recording import Recording
from sims.cli import main
from sims.runner import run_simulation

# (simulation, bad override, the key the message must name): ranges, non-finite numbers,
# unknown choices and the cross-field conditions of each config.
BAD = [
    ("pc-digits", "epochs=-1", "epochs"),
    ("pc-digits", "lr=nan", "lr"),
    ("pc-digits", "hidden=16,0", "hidden"),
    ("pc-digits", "activation=gelu", "activation"),
    ("pc-digits", "test_fraction=1", "test_fraction"),
    ("tracking", "steps=0", "steps"),
    ("tracking", "process_noise=0.1,-1,0.2", "process_noise"),
    ("tracking", "inference_lr=inf", "inference_lr"),
    ("tracking", "steps_sweep=", "steps_sweep"),
    ("pendulum-model", "lr=nan", "lr"),
    ("pendulum-model", "dropout=1", "dropout"),
    ("pendulum-model", "posterior=exact", "posterior"),
    ("pendulum-model", "horizon=50", "episode_steps"),
    ("pendulum-model", "grad_clip=1", "grad_clip"),
    ("conditioning", "lr=nan", "lr"),
    ("conditioning", "gamma=2", "gamma"),
    ("conditioning", "omission_prob=5", "omission_prob"),
    ("conditioning", "delay=40", "trial_length"),
    ("rl", "steps=-5", "steps"),
    ("rl", "ppo.gamma=2", "ppo.gamma"),
    ("rl", "ppo.learning_rate=nan", "ppo.learning_rate"),
    ("agent", "observe=0,5", "observe"),
    ("agent", "obs_noise=-1", "obs_noise"),
    ("agent", "state_nodes=x,v", "state_nodes"),
    ("agent", "algo=ppo", "algo"),
    ("agent", "cortex.posterior=exact", "cortex.posterior"),
    ("agent", "cortex.hidden=8,8", "hidden"),
    ("agent", "cortex.lr=nan", "cortex.lr"),
    ("agent", "sac.learning_starts=10", "sac.learning_starts"),
]


@pytest.mark.parametrize("sim, override, key", BAD)
def test_a_bad_value_is_refused_before_the_recording_exists(tmp_path, capsys, sim, override, key) -> None:
    out = tmp_path / "run.h5"
    assert main(["run", sim, "--quiet", "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error:") and _names(err, key) and "Traceback" not in err, err
    assert not out.exists()


def _names(message: str, key: str) -> bool:
    """The message names `key`, dotted ('ppo.gamma') or by section and key ("section 'ppo':
    config key 'gamma'")."""
    return f"'{key}'" in message or all(f"'{part}'" in message for part in key.split("."))


@pytest.mark.parametrize("sim, override, key", [bad for bad in BAD if bad[1] in (
    "epochs=-1", "steps=0", "lr=nan", "gamma=2", "steps=-5")])
def test_a_bad_value_leaves_an_existing_recording_byte_identical(tmp_path, capsys, sim, override, key) -> None:
    out = tmp_path / "run.h5"
    out.write_bytes(b"a recording that must survive\x00\x01")
    before = out.read_bytes()
    assert main(["run", sim, "--quiet", "--overwrite", "--out", str(out), "--set", override]) == 2
    assert _names(capsys.readouterr().err, key)
    assert out.read_bytes() == before


# The rl mistakes measured in issue 10, each of which used to truncate --out and then end in a
# traceback: they now fail at construction, with or without --overwrite.
RL_BAD = [
    (["--set", "env=NoSuchEnv-v0"], r"'NoSuchEnv-v0' is not a registered"),
    (["--set", "algo=foo"], r"'algo' must be one of"),
    (["--set", "algo=dqn", "env=Pendulum-v1"], r"dqn needs a Discrete action space"),
    (["--set", "algo=sac", "env=CartPole-v1"], r"sac needs a continuous"),
    (["--set", "dqn.learning_rte=1"], r"unknown config key 'dqn.learning_rte'"),
    (["--set", "params=learning_rate=1e-3;hidden=8"], r"unknown config key 'params'"),
    (["--set", "algo=ppo", "sac.tau=0.5"], r"sac\.\* were set, but algo='ppo'"),
    (["--config", "{tmp}/module.toml"], r"names a module to import"),
]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("args, message", RL_BAD)
def test_rl_mistakes_leave_an_existing_recording_byte_identical(tmp_path, capsys, args, message,
                                                                overwrite) -> None:
    import re

    (tmp_path / "module.toml").write_text('env = "os:Env-v0"\n')
    out = tmp_path / "run.h5"
    out.write_bytes(b"a recording that must survive\x00\x01")
    before = out.read_bytes()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["run", "rl", "--quiet", "--out", str(out), *overwrite, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error:") and "Traceback" not in err
    assert re.search(message, err), err
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["module.toml", "run.h5"]


TINY = {
    "pc-digits": ["epochs=1", "hidden=8", "inference_steps=3", "batch_size=128", "trace_every=4"],
    "tracking": ["steps=20", "batch=2", "steps_sweep=1,3", "inference_steps=3"],
    "pendulum-model": ["epochs=1", "train_episodes=16", "test_episodes=4", "episode_steps=16", "warmup=4",
                       "horizon=3", "hidden=4", "batch=8", "inference_steps=3"],
    "pendulum-model/laplace": ["posterior=laplace", "epochs=2", "train_episodes=16", "test_episodes=4",
                               "validation_episodes=4", "episode_steps=16", "warmup=4", "horizon=3", "hidden=4",
                               "batch=8"],
    "conditioning": ["trials=12", "trial_length=8", "cs_time=2", "delay=3", "omission_prob=0.3", "lam=0.5"],
    "rl": ["algo=dqn", "steps=120", "eval_every=60", "eval_episodes=1", "dqn.hidden=8",
           "dqn.learning_starts=40", "dqn.train_freq=20", "dqn.batch_size=16"],
    "agent": ["algo=dqn", "env=CartPole-v1", "steps=150", "eval_every=75", "eval_episodes=1",
              "dqn.hidden=8", "dqn.learning_starts=40", "dqn.batch_size=16", "cortex.hidden=4",
              "cortex.sequence_length=4", "cortex.batch_size=4", "cortex.warmup_updates=2",
              "cortex.refresh_every=30", "cortex.burn_in=2", "imagine=2", "imagine_horizon=2"],
}
TIMING = {"wall_time_s", "pc_seconds_per_epoch", "bp_seconds_per_epoch", "steps_per_second"}


def _untimed(figures: dict) -> dict:
    return {k: v for k, v in figures.items() if k not in TIMING and not k.startswith("time_share_")}


@pytest.mark.parametrize("variant", TINY)
def test_same_seed_gives_a_bit_identical_recording(tmp_path, variant) -> None:
    sim = variant.split("/")[0]
    paths = [tmp_path / f"run{i}.h5" for i in range(2)]
    figures = [run_simulation(sim, out=path, overrides=TINY[variant], seed=5, quiet=True) for path in paths]
    assert _untimed(figures[0]) == _untimed(figures[1])
    with Recording(paths[0]) as a, Recording(paths[1]) as b:
        assert a.datasets() == b.datasets() and a.datasets()
        for name in a.datasets():
            assert a.dtype(name) == b.dtype(name), name
            assert np.array_equal(a[name], b[name], equal_nan=True), name
            assert a.attrs(name) == b.attrs(name), name
        assert _untimed(a.summary) == _untimed(b.summary)
        assert a.config == b.config


@pytest.mark.parametrize("sim, overrides, quantity, key", [
    ("pc-digits", ["epochs=1", "hidden=8", "inference_steps=3", "lr=1e6"], "PC free energy F", "lr"),
    ("conditioning", ["trials=50", "lr=5"], "dopamine δ", "lr"),
    ("pendulum-model", TINY["pendulum-model"] + ["lr=1e4"], "free energy F", "lr"),
])
def test_a_divergence_stops_the_run_naming_the_key(tmp_path, capsys, sim, overrides, quantity, key) -> None:
    out = tmp_path / "diverged.h5"
    assert main(["run", sim, "--quiet", "--out", str(out), "--set", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainloop: error:") and "Traceback" not in err, err
    assert quantity in err and f"most likely responsible is '{key}'" in err, err
    with Recording(out) as rec:  # the partial recording: readable, holding the step that blew up
        assert rec.sim == sim and rec.summary == {}
        series = rec["basal_ganglia/dopamine" if sim == "conditioning" else "cortex/free_energy"]
        assert len(series) and not np.all(np.abs(series) < 1e3)


def test_tracking_divergence_names_the_inference_step_size(tmp_path, capsys) -> None:
    out = tmp_path / "diverged.h5"
    code = main(["run", "tracking", "--quiet", "--out", str(out), "--set", *TINY["tracking"], "inference_lr=1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "free energy F_t" in err and "most likely responsible is 'inference_lr'" in err, err
