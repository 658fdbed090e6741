"""`sweep` on a real local Ray and Ray Tune, at MinAtar smoke scale: bad input is one line
before Ray starts; a sweep stopped by SIGTERM says how to continue, and the printed command
finishes it without re-running the finished trial's meta-training; the table and plot."""

import csv
import math
import os
import shlex
import signal

import pytest

from tests.processes import REPO, end_tree, run_cli, start_cli, wait_for
from tests.refusals import assert_refused

BASE = ["sweep", "--config", "configs/minatar_smoke.yaml", "--transfer-steps", "400"]
BASE += ["--seeds", "1", "--set", "meta.meta_steps=1", "--set", "a2c.steps_per_task=1000"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--grid", "meta.lr=0.01", "--validation", "Breakout"], "the held-out games are for"),
        (["--grid", "meta.lr=-1,0.01", "--validation", "Asterix"], "meta.lr: must be > 0"),
        (["--grid", "meta.lr", "--validation", "Asterix"], "expected SECTION.FIELD=VALUE1"),
        (
            [
                "--grid",
                "meta.lr=0.01",
                "--validation",
                "Asterix,Freeway?sticky=0.0,Seaquest?ramping=false",
            ],
            "leaves no task to meta-train on",
        ),
    ],
    ids=["held_out", "bad_value", "no_values", "nothing_left"],
)
def test_bad_sweeps_are_one_line_before_ray(tmp_path, capsys, args, expected):
    assert_refused(capsys, [*BASE, *args, "--out", str(tmp_path / "sweep")], expected)
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_stops_resumes_and_reports(tmp_path):
    out = tmp_path / "sweep"
    args = [*BASE, "--grid", "meta.lr=0.001,0.01", "--validation", "Seaquest?ramping=false"]
    args += ["--out", str(out)]
    log = tmp_path / "sweep.log"
    proc = start_cli(*args, log=log)

    def a_trial_trained():
        return [p for p in (out / "runs").glob("*/meta.json") if '"success": true' in p.read_text()]

    try:
        (first,) = wait_for(a_trial_trained, 240, "the first trial's meta-training")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM, log.read_text()[-3000:]
    finally:
        end_tree(proc)
    text = log.read_text()
    assert "stopped by SIGTERM: finished trials are kept in" in text, text[-3000:]
    (again,) = [line for line in text.splitlines() if line.startswith("continue with: ")]
    command = shlex.split(again.removeprefix("continue with: "))
    assert command[-1] == "--resume" and "--out" in command
    checkpoint = sorted((first.parent / "checkpoints").iterdir())[-1]
    before = checkpoint.read_bytes(), checkpoint.stat().st_mtime_ns

    resumed = run_cli(*command[3:], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (checkpoint.read_bytes(), checkpoint.stat().st_mtime_ns) == before  # not re-trained
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["meta.lr"] for r in rows) == ["0.001", "0.01"]
    assert all(math.isfinite(float(r["transfer_auc"])) for r in rows)
    assert "| meta.lr | trial | transfer_auc |" in (out / "sweep.md").read_text()
    assert (out / "sweep.png").stat().st_size > 0


def test_a_plan_resolves_its_directory_and_reads_the_grid_as_the_config_does(tmp_path, monkeypatch):
    from leap_ray.config import ConfigError
    from leap_ray.sweep import make_plan

    monkeypatch.chdir(tmp_path)  # a relative --out: Ray Tune needs an absolute storage path
    plan = make_plan(str(REPO / "configs/minatar_smoke.yaml"), [], ["meta.lr=1e-3,0.01"],
                     ["Seaquest?ramping=false"], 400, 1, "rel/sweep", False)  # fmt: skip
    assert plan.out == tmp_path / "rel" / "sweep" and plan.grid == {"meta.lr": [0.001, 0.01]}
    for grid, message in (
        (["meta.lr=0.001,1e-3"], "meta.lr lists 0.001 twice"),
        (["env.games=[Asterix]"], "env.games is set by the sweep"),
    ):
        with pytest.raises(ConfigError, match=message):
            make_plan(str(REPO / "configs/minatar_smoke.yaml"), [], grid,
                      ["Seaquest?ramping=false"], 400, 1, "x", False)  # fmt: skip
