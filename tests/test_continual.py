"""continual and small-batch: smoke runs record every promised dataset, and the learning-rate
sweep never looks at the test split."""

import numpy as np
import pytest

import sims.continual as continual
from analysis.recording import Recording
from sims.runner import run_simulation

TINY = ["epochs_per_task=1", "networks.hidden=16", "networks.inference_steps=2",
        "networks.lrs=1e-3,3e-3"]
TINY_BATCH = ["batch_sizes=4,32", "shots=3,8", "examples=64", "networks.hidden=16",
              "networks.inference_steps=2", "networks.lrs=1e-3,3e-3"]


@pytest.mark.parametrize("tasks", ["split2", "pairs5"])
def test_continual_smoke_run_records_every_dataset(tmp_path, tasks):
    out = tmp_path / "c.h5"
    figures = run_simulation("continual", out=out, quiet=True, overrides=[f"tasks={tasks}", *TINY])
    n_tasks = len(continual.TASKS[tasks])
    with Recording(out) as rec:
        for net in ("pc", "bp"):
            for scenario in ("class_il", "task_il"):
                acc = rec[f"continual/{net}/{scenario}/accuracy"]
                assert acc.shape == (n_tasks, n_tasks) and np.all((0 <= acc) & (acc <= 1))
            assert rec[f"continual/lr_selection/{net}"].shape == (2,)
        assert list(rec["continual/epoch_task"]) == list(range(n_tasks))
        parts = [set(rec[f"continual/split/{p}"]) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 1797 and len(set.union(*parts)) == 1797
    for key in ("pc_final_accuracy", "bp_final_accuracy", "pc_forgetting", "bp_forgetting",
                "pc_final_accuracy_task_il", "bp_forgetting_task_il"):
        assert key in figures


def test_small_batch_smoke_run_records_every_dataset(tmp_path):
    out = tmp_path / "s.h5"
    figures = run_simulation("small-batch", out=out, quiet=True, overrides=TINY_BATCH)
    with Recording(out) as rec:
        for net in ("pc", "bp"):
            err = rec[f"small_batch/{net}/test_error"]
            assert err.shape == (2, 2) and np.all((0 <= err) & (err <= 1))
            assert rec[f"small_batch/lr_selection/{net}"].shape == (2, 2)
        assert list(rec["small_batch/batch_sizes"]) == [4, 32]
    assert {"pc_test_error", "bp_test_error"} <= set(figures)


def test_few_shot_takes_the_asked_examples_from_the_training_split():
    data = continual.Data(continual.Networks(), seed=0)
    index = continual.few_shot(data, 5, seed=0)
    assert len(index) == 50 and set(index) <= set(data.train)
    assert np.bincount(data.y[index].numpy(), minlength=10).tolist() == [5] * 10


@pytest.mark.parametrize("sim, overrides, selection", [
    ("continual", TINY, "continual/lr_selection/{net}"),
    ("small-batch", TINY_BATCH, "small_batch/lr_selection/{net}"),
])
def test_learning_rate_selection_never_looks_at_the_test_split(tmp_path, monkeypatch, sim,
                                                                overrides, selection):
    """Replacing every test image by noise changes the test scores, not the selection."""
    x, y = continual.digits()
    cfg = continual.Networks()
    _, _, test = continual.split_indices(y, 0, cfg.test_fraction, cfg.val_fraction)
    noisy = x.copy()
    noisy[test] = np.random.default_rng(0).uniform(0, 16, noisy[test].shape)
    runs = []
    for name, images in (("clean", x), ("noisy", noisy)):
        monkeypatch.setattr(continual, "digits", lambda images=images: (images, y))
        out = tmp_path / f"{name}.h5"
        run_simulation(sim, out=out, quiet=True, seed=0, overrides=overrides)
        with Recording(out) as rec:
            runs.append({k: rec[k] for k in rec.datasets()})
    for net in ("pc", "bp"):
        np.testing.assert_array_equal(runs[0][selection.format(net=net)],
                                      runs[1][selection.format(net=net)])
    np.testing.assert_array_equal(runs[0][f"{sim.replace('-', '_')}/split/test"], test)
    scored = [k for k in runs[0] if k.endswith("accuracy") or k.endswith("test_error")]
    assert any(not np.array_equal(runs[0][k], runs[1][k]) for k in scored)
