"""brainloop sweep: every combination × seed, index.csv, restart skips finished runs, failures
recorded without stopping the others, and the same results on a local Ray cluster."""

import csv

import pytest

from sims.cli import main
from sims.sweep import parse_grid, plan, sweep

FIXED = ["trials=15", "trial_length=10", "cs_time=2", "delay=3"]


def rows(directory) -> list[dict]:
    with open(directory / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_runs_every_combination_records_failures_and_skips_finished_runs(tmp_path):
    grid = parse_grid(["lr=0.1,0.3", "gamma=0.9,2.0"])
    results = sweep("conditioning", grid, [0, 1], tmp_path, fixed=FIXED, workers=2)
    assert len(results) == 8
    index = rows(tmp_path)
    assert len(index) == 8
    done = [r for r in index if r["status"] == "done"]
    failed = [r for r in index if r["status"] == "failed"]
    assert len(done) == 4 and {r["gamma"] for r in done} == {"0.9"}
    assert len(failed) == 4 and all("'gamma' must be <= 1" in r["error"] for r in failed)
    assert all((tmp_path / r["recording"]).is_file() and r["delta_cs_last"] for r in done)
    assert all(r["recording"] == "" for r in failed)
    # a restart skips what is finished and runs the rest again
    again = sweep("conditioning", grid, [0, 1], tmp_path, fixed=FIXED, workers=1)
    assert sorted(r.status for r in again) == ["failed"] * 4 + ["skipped"] * 4
    first = {r["recording"]: r["delta_cs_last"] for r in done}
    assert {r["recording"]: r["delta_cs_last"] for r in rows(tmp_path)
            if r["status"] == "skipped"} == first


def test_sweep_refuses_unknown_keys_before_any_run(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        sweep("conditioning", parse_grid(["learning_rate=0.1"]), [0], tmp_path / "s")
    assert not (tmp_path / "s").exists()
    with pytest.raises(ValueError, match="key=value1,value2"):
        parse_grid(["lr"])
    names = [r.out.name for r in plan("conditioning", parse_grid(["lr=0.1,0.2"]), [0, 1], tmp_path)]
    assert len(set(names)) == 4


def test_cli_sweep_and_pooled_report(tmp_path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "conditioning", "--grid", "lr=0.1,0.3", "--set", *FIXED,
                 "--seeds", "2", "--out", str(out)]) == 0
    assert "4 of 4 runs recorded" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    report = capsys.readouterr().out
    assert "| lr | runs (done/failed) |" in report and "| 0.1 | 2/0 |" in report


def test_sweep_on_a_local_ray_cluster_gives_the_same_results(tmp_path):
    pytest.importorskip("ray", reason="the sweep extra (Ray) is not installed")
    import ray

    grid = parse_grid(["lr=0.1,0.3"])
    sweep("conditioning", grid, [0], tmp_path / "local", fixed=FIXED)
    try:
        results = sweep("conditioning", grid, [0], tmp_path / "ray", fixed=FIXED,
                        ray_address="local")
    finally:
        ray.shutdown()
    assert [r.status for r in results] == ["done", "done"]
    local, remote = rows(tmp_path / "local"), rows(tmp_path / "ray")
    assert [r["delta_cs_last"] for r in local] == [r["delta_cs_last"] for r in remote]
