"""continual and small-batch: smoke runs record every promised dataset, and the learning-rate
sweep never looks at the test split."""

import numpy as np
import pytest
import torch

import sims.continual as continual
from analysis.recording import Recording
from sims.runner import run_simulation

TINY = ["epochs_per_task=1", "networks.hidden=16", "networks.inference_steps=2",
        "networks.lrs=1e-3,3e-3"]
TINY_BATCH = ["batch_sizes=4,32", "shots=3,8", "examples=64", "networks.hidden=16",
              "networks.inference_steps=2", "networks.lrs=1e-3,3e-3"]


@pytest.mark.parametrize("tasks, scenario", [("split2", "class_il"), ("pairs5", "task_il")])
def test_continual_smoke_run_records_every_dataset(tmp_path, tasks, scenario):
    out = tmp_path / "c.h5"
    figures = run_simulation("continual", out=out, quiet=True,
                             overrides=[f"tasks={tasks}", f"scenario={scenario}", *TINY])
    n_tasks = len(continual.TASKS[tasks])
    with Recording(out) as rec:
        for net in ("pc", "bp"):
            acc = rec[f"continual/{net}/accuracy"]
            assert acc.shape == (n_tasks, n_tasks) and np.all((0 <= acc) & (acc <= 1))
            assert rec[f"continual/lr_selection/{net}"].shape == (2,)
        assert list(rec["continual/epoch_task"]) == list(range(n_tasks))
        parts = [set(rec[f"continual/split/{p}"]) for p in ("train", "val", "test")]
    assert sum(map(len, parts)) == 1797 and len(set.union(*parts)) == 1797
    for key in ("pc_final_accuracy", "bp_final_accuracy", "pc_forgetting", "bp_forgetting",
                "pc_lr", "bp_lr_at_grid_edge"):
        assert key in figures


def test_forgetting_counts_only_what_was_reached_after_training_began():
    # three tasks, one epoch each; task 2 scores 0.8 by chance before its training begins
    accuracy = np.array([[0.9, 0.8, 0.1],
                         [0.7, 0.6, 0.2],
                         [0.4, 0.5, 0.9]])
    # task 1: 0.9 − 0.4; task 2: 0.6 (its best from epoch 1 on) − 0.5, not 0.8 − 0.5
    assert continual.forgetting(accuracy, 1) == pytest.approx((0.5 + 0.1) / 2)


def test_task_incremental_training_leaves_other_outputs_alone():
    """For backprop the task-incremental step is the loss masked to the task's outputs: the
    output weights of the other digits do not move."""
    net = continual.Net("bp", continual.Networks(hidden=(8,)), 1e-2, seed=0)
    last = net.bp[-1].weight.detach().clone()
    x, y = torch.randn(16, 64), torch.randint(0, 2, (16,))
    net.step(x, y, (0, 1))
    moved = (net.bp[-1].weight.detach() - last).abs().sum(1)
    assert moved[:2].min() > 0 and moved[2:].max() == 0


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
    """Replacing every test image by noise changes the test scores, not the sweep's scores nor
    the rates chosen. (The labels stay: the split is stratified by them, so changing a test
    label would change which samples are in the test split.)"""
    x, y = continual.digits()
    cfg = continual.Networks()
    _, _, test = continual.split_indices(y, 0, cfg.test_fraction, cfg.val_fraction)
    noisy = x.copy()
    noisy[test] = np.random.default_rng(0).uniform(0, 16, noisy[test].shape)
    runs = []
    for name, images in (("clean", x), ("noisy", noisy)):
        monkeypatch.setattr(continual, "digits", lambda i=images: (i, y))
        out = tmp_path / f"{name}.h5"
        run_simulation(sim, out=out, quiet=True, seed=0, overrides=overrides)
        with Recording(out) as rec:
            runs.append(({k: rec[k] for k in rec.datasets()}, dict(rec.summary)))
    (clean, clean_summary), (noisy_run, noisy_summary) = runs
    for net in ("pc", "bp"):
        np.testing.assert_array_equal(clean[selection.format(net=net)],
                                      noisy_run[selection.format(net=net)])
        if sim == "continual":
            assert clean_summary[f"{net}_lr"] == noisy_summary[f"{net}_lr"]
        else:
            np.testing.assert_array_equal(clean[f"small_batch/lr/{net}"],
                                          noisy_run[f"small_batch/lr/{net}"])
    np.testing.assert_array_equal(clean[f"{sim.replace('-', '_')}/split/test"], test)
    scored = [k for k in clean if k.endswith("/accuracy") or k.endswith("test_error")]
    assert scored and any(not np.array_equal(clean[k], noisy_run[k]) for k in scored)


def test_report_of_a_directory_pools_seeds_with_confidence_intervals(tmp_path, capsys):
    from sims.cli import main

    for seed in (0, 1):
        run_simulation("continual", out=tmp_path / f"c{seed}.h5", quiet=True, seed=seed,
                       overrides=TINY)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(2 seeds)" in out and "PC − backprop (paired)" in out
    assert (tmp_path / "forgetting.png").is_file()
