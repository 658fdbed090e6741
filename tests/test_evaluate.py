"""Transfer evaluation: the curve maths against hand-computed values, the CartPole family ids,
bad input, and `finetune` then `evaluate` end to end on a real local Ray with tiny CartPole runs."""

import ast
import csv
import json
import math
import os
import re
import shlex
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from matplotlib.image import imread
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from leap_ray import curves
from leap_ray.checkpoint import (
    encoder_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from leap_ray.cli import main
from leap_ray.config import load_config
from leap_ray.learners import initial_encoder
from leap_ray.learners.a2c.envs import VectorTask
from leap_ray.suites import training_games
from leap_ray.suites.gym import make_gym
from tests.processes import end_tree, run_cli, start_cli, wait_for

FAMILY = ("CartPole-v1?length=0.75&gravity=12.0", "CartPole-v1?length=0.35&force_mag=7.0")
GYM = {
    "env": {
        "suite": "gym",
        "games": ["CartPole-v1?length=0.25", "CartPole-v1?gravity=15.0"],
        "held_out": list(FAMILY),
        "num_envs": 4,
    },
    "a2c": {"encoder": "mlp", "steps_per_task": 200, "lr": 2e-3},
    "logging": {"progress": False, "dashboard": False},
}


# -- the maths, by hand ----------------------------------------------------------------------------
def test_auc_is_the_trapezoid_over_the_step_range():
    # (0 + 2) / 2 * 1 + (2 + 2) / 2 * 2 = 5 over a range of 3
    assert curves.auc(np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 2.0])) == pytest.approx(5 / 3)
    assert curves.auc(np.array([7.0]), np.array([4.0])) == 4.0
    assert curves.error_auc(np.array([0.0, 10.0]), np.array([250.0, 250.0]), 500.0) == 0.5


def test_mean_standard_error_and_final_value():
    mean, err = curves.mean_stderr([1.0, 2.0, 3.0, 6.0])  # sample std sqrt(14 / 3), n = 4
    assert mean == 3.0 and err == pytest.approx(math.sqrt(14 / 3) / 2)
    assert curves.mean_stderr([5.0])[0] == 5.0 and math.isnan(curves.mean_stderr([5.0])[1])
    assert curves.final_value(np.arange(20.0)) == 18.5  # the last 10%: 18 and 19
    assert curves.final_value(np.arange(5.0)) == 4.0  # at least one point


def test_binning_means_per_bin_and_fills_the_gaps():
    edges = curves.bin_edges(40, num_bins=4)  # (0, 10], (10, 20], (20, 30], (30, 40]
    np.testing.assert_allclose(curves.bin_centers(edges), [5, 15, 25, 35])
    got = curves.bin_curve([12, 18, 35], [2.0, 4.0, 10.0], edges)
    np.testing.assert_allclose(got, [3.0, 3.0, 3.0, 10.0])  # back-filled, carried, mean of 2
    np.testing.assert_allclose(curves.bin_curve([10, 45], [1.0, 5.0], edges), [1, 1, 1, 5])
    assert np.isnan(curves.bin_curve([], [], edges)).all()


def test_rows_and_paired_differences_by_hand():
    x = np.array([0.0, 1.0])
    runs = {
        "leap": {0: np.array([1.0, 1.0]), 1: np.array([5.0, 5.0]), 2: np.full(2, np.nan)},
        "random": {0: np.array([0.0, 0.0]), 1: np.array([2.0, 2.0]), 2: np.array([9.0, 9.0])},
    }
    leap, random = curves.game_rows(x, runs, max_return=10.0)
    assert leap["seeds"] == "2/3" and random["seeds"] == "3/3"  # seed 2 of leap: no episode
    assert leap["AUC (return)"] == "3.0 ± 2.0"  # AUCs 1 and 5
    assert leap["error AUC"] == "0.700 ± 0.200"  # 1 - AUC / 10: 0.9 and 0.5
    (pair,) = curves.paired_rows(x, runs)
    assert pair["pair"] == "leap − random" and pair["seeds"] == "2"
    assert pair["Δ AUC"] == "2.0 ± 1.0"  # per seed 1 - 0 and 5 - 2: mean 2, std sqrt(2)
    assert pair["Δ AUC 95% CI"] == "[1.0, 3.0]"  # resamples of (1, 3): means 1, 2 or 3
    low, high = curves.bootstrap_interval([-0.72, -0.74, -0.75, -0.66, -0.14])
    assert -0.75 <= low < -0.6 < high <= -0.14  # inside the values' range, around their mean
    assert math.isnan(curves.bootstrap_interval([1.0])[0])
    small = {"a": {0: np.full(2, 1.6), 1: np.full(2, 1.74)}}  # s.e. 0.07: two digits of it
    assert curves.game_rows(x, small, None)[0]["AUC (return)"] == "1.670 ± 0.070"
    large = {"a": {0: np.full(2, 150.0), 1: np.full(2, 175.6)}}  # s.e. 12.8: one decimal
    assert curves.game_rows(x, large, None)[0]["AUC (return)"] == "162.8 ± 12.8"
    noise = {"a": {0: np.full(2, 1.0), 1: np.full(2, 1.0 + 1e-15)}}  # identical but for rounding
    assert curves.game_rows(x, noise, None)[0]["AUC (return)"] == "1.000000 ± 0.000000"


def test_figure_has_one_panel_per_game():
    x = np.arange(3.0)
    runs = {"leap": {0: np.ones(3), 1: np.zeros(3)}, "random": {0: np.full(3, np.nan)}}
    fig = curves.transfer_figure(x, {"A": runs, "B": runs, "C": runs})
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["A", "B", "C"]


def test_intervals_by_hand(monkeypatch):
    """Per-game IQM and mean with bootstrap intervals, the random-normalized aggregate, and the
    probability of improvement: a method better than random on every seed and game has
    P(method > random) = 1 with an interval that is the point itself."""
    import leap_ray.intervals
    from leap_ray.intervals import interval_section

    monkeypatch.setattr(leap_ray.intervals, "REPS", 200)  # point estimates do not depend on it

    x = np.array([0.0, 1.0])
    flat = lambda v: np.array([v, v])  # noqa: E731  (AUC v)
    seeds = range(4)
    by_game = {
        "A": {"leap": {s: flat(10.0 + s) for s in seeds}, "random": {s: flat(5.0) for s in seeds}},
        "B": {"leap": {s: flat(3.0) for s in seeds}, "random": {s: flat(1.0 + s) for s in seeds}},
    }
    text = "\n".join(interval_section(x, by_game))
    assert "| A | leap | 4 | 11.50 [" in text  # IQM of 10, 11, 12, 13: the middle two
    assert "| A | random | 4 | 5.00 [5.00, 5.00] | 5.00 [5.00, 5.00] |" in text
    # aggregate: leap's AUC over random's mean (A: 5, B: 2.5) -> 2, 2.2, 2.4, 2.6 and 1.2 x 4
    assert "Over A, B (AUC / random's mean AUC per game):" in text
    assert "| random | 1.00 [" in text
    # A: leap beats every random run (1); B: 3 vs 1, 2, 3, 4 -> (1 + 1 + 0.5 + 0) / 4
    assert "| leap | 0.81 [" in text
    by_game["B"]["random"] = {s: flat(-1.0) for s in seeds}
    text = "\n".join(interval_section(x, by_game))
    assert "Over A (" in text and "left out, random's mean AUC not positive: B" in text

    # the same runs give the same intervals whatever numpy's global generator did before, and
    # that generator is left where it was (rliable resamples from it)
    by_game["A"]["random"] = {s: flat(5.0 + 3 * s % 5) for s in seeds}  # intervals with width
    np.random.seed(1)
    first = interval_section(x, by_game)
    np.random.seed(2)
    outside = np.random.random()
    np.random.seed(2)
    assert interval_section(x, by_game) == first
    assert np.random.random() == outside
    # a method's intervals depend on its own runs only: a method added ahead of random (as a
    # baseline finished later joins the plan) leaves the other rows as they were; one call
    # over all methods drew their resamples one after the other
    reptile = {
        "A": {s: flat(7.0 - s) for s in seeds},
        "B": {s: flat(2.0 + 2 * s % 3) for s in seeds},
    }
    grown = interval_section(
        x,
        {
            g: {"leap": r["leap"], "reptile": reptile[g], "random": r["random"]}
            for g, r in by_game.items()
        },
    )
    assert any("| A | reptile |" in line for line in grown)
    kept = lambda lines: [ln for ln in "\n".join(lines).splitlines() if "reptile" not in ln]  # noqa: E731
    assert kept(grown) == kept(first)


def test_curve_maths_imports_neither_ray_nor_torch():
    tree = ast.parse(Path(curves.__file__).read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m.split(".")[0] for m in imported} & {"ray", "torch"}


# -- the CartPole family ---------------------------------------------------------------------------
def test_family_ids_set_the_physics():
    env = make_gym("CartPole-v1?length=0.8&gravity=12")
    inner = env.unwrapped
    assert (inner.length, inner.gravity) == (0.8, 12.0)
    assert inner.polemass_length == pytest.approx(0.1 * 0.8)  # derived values follow
    env.close()
    task = VectorTask(FAMILY[0], load_config(None, ["env.suite=gym", "env.num_envs=2"]).env, 0)
    assert task.obs_shape == (4,) and task.num_actions == 2
    assert task.groups[0].env.envs[0].unwrapped.length == 0.75
    task.close()
    with pytest.raises(ValueError, match="'foo' is not a numeric attribute"):
        make_gym("CartPole-v1?foo=1")
    with pytest.raises(ValueError, match="is not a number"):
        make_gym("CartPole-v1?length=long")


# -- bad input: one line, exit 2, before Ray -------------------------------------------------------
@pytest.fixture
def gym_yaml(tmp_path):
    path = tmp_path / "gym.yaml"
    path.write_text(yaml.safe_dump(GYM))
    return str(path)


@pytest.fixture
def checkpoints(tmp_path, gym_yaml):
    """Hand-written checkpoints (run directories) of theta_0 for an Atari and a gym config."""
    paths = {}
    for name, cfg in (("atari", load_config("configs/smoke.yaml")), ("gym", load_config(gym_yaml))):
        init = initial_encoder(cfg, training_games(cfg.env))
        save_checkpoint(tmp_path / name, encoder_checkpoint(cfg, init, {}), keep=1)
        paths[name] = str(tmp_path / name)
    return paths


@pytest.mark.parametrize(
    "args, message",
    [
        (["--init", "no/such/run"], "no/such/run' does not exist"),
        (["--init", "{atari}", "--games", "Breakuot"], "did you mean: Breakout"),
        (["--init", "{atari}", "--set", "a2c.encoder=nature"], "does not fit a2c.encoder='nature'"),
        (["--init", "{gym}", "--games", "CartPol-v1"], "unknown gym id 'CartPol-v1'"),
        (["--init", "{gym}", "--baseline", "leap:{gym}"], "method names must differ"),
        (["--init", "{gym}", "--baseline", "{gym}"], "expected 'random' or NAME:CHECKPOINT"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(checkpoints, capsys, args, message):
    code = main(["evaluate", *(a.format(**checkpoints) for a in args)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err, err


# -- end to end ------------------------------------------------------------------------------------
def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def scalar_tags(run_dir) -> set[str]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


@pytest.mark.usefixtures("ray_session")
def test_finetune_then_evaluate_writes_all_outputs(tmp_path, gym_yaml, checkpoints):
    finetuned = tmp_path / "finetune"
    args = ["--config", gym_yaml, "--steps-per-game", "200", "--out", str(finetuned)]
    assert main(["finetune", *args]) == 0
    state = load_checkpoint(finetuned)
    assert state["kind"] == "finetune" and state["progress"]["games"] == GYM["env"]["games"]
    start = load_checkpoint(checkpoints["gym"])["meta_init"]["init"]
    assert set(state["meta_init"]["init"]) == set(start)
    assert any(not torch.equal(state["meta_init"]["init"][n], t) for n, t in start.items())

    out = tmp_path / "eval"
    args = [
        "--init",
        checkpoints["gym"],
        "--baseline",
        "random",
        "--baseline",
        f"finetune:{finetuned}",
    ]
    args += ["--steps", "300", "--seeds", "2", "--out", str(out)]
    assert main(["evaluate", *args]) == 0

    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["method", "game", "seed", "env_step", "episode_return"]
    runs = {(r["method"], r["game"], int(r["seed"])) for r in rows}
    assert runs == {
        (m, g, s) for m in ("leap", "random", "finetune") for g in FAMILY for s in (0, 1)
    }
    assert all(0 < int(r["env_step"]) <= 300 and float(r["episode_return"]) >= 1 for r in rows)

    image = imread(out / "transfer.png")
    assert image.shape[1] == 2 * 500  # two 5-inch panels at 100 dpi
    summary = (out / "summary.md").read_text()
    for game in FAMILY:
        assert f"## {game}\n" in summary
    assert summary.count("| finetune | 2/2 |") == 2
    assert summary.count("| leap − finetune | 2 |") == 2
    assert "## Intervals (rliable)" in summary and "P(method > random)" in summary
    assert summary.count("| 2 | ") >= 6  # per game, each method's IQM over its 2 runs

    tags = scalar_tags(out)
    for method in ("leap", "random", "finetune"):
        for game in FAMILY:
            assert f"eval/{game}/{method}/mean_episode_return" in tags
            assert {f"eval/{game}/{method}/seed{s}/episode_return" for s in (0, 1)} <= tags
    assert json.loads((out / "meta.json").read_text())["success"] is True


def test_meta_batch_stats_average_paths_and_late_returns_per_game():
    from types import SimpleNamespace

    from leap_ray.tasks import meta_batch_stats

    def report(game, length, episodes, cosine=0.5):
        path = {"path/length": length, "path/energy": length / 2, "path/distance_from_init": 1.0}
        terms = {"meta/path_term_norm": length, "meta/loss_term_norm": 10.0 * length}
        terms["meta/term_cosine"] = cosine
        return SimpleNamespace(game=game, path=path, episodes=episodes, env_steps=1000, terms=terms)

    stats = meta_batch_stats(
        [
            report("Pong", 4.0, [(100, -21.0, 9), (800, -10.0, 9), (1000, -8.0, 9)]),
            report("Pong", 2.0, [(900, -6.0, 9)]),
            report("Qbert", 6.0, [(500, 300.0, 9)], float("nan")),  # no late episode
        ]
    )
    assert stats["meta/task_path_term_norm"] == pytest.approx(4.0)
    assert stats["meta/task_loss_term_norm"] == pytest.approx(40.0)
    assert stats["meta/task_term_cosine"] == pytest.approx(0.5)  # a NaN cosine is left out
    assert stats["meta/task_path_length"] == pytest.approx(4.0)
    assert stats["meta/task_path_energy"] == pytest.approx(2.0)
    assert stats["meta/task_return/Pong"] == pytest.approx((-9.0 + -6.0) / 2)
    assert "meta/task_return/Qbert" not in stats
    assert meta_batch_stats([]) == {}


class Stop(RuntimeError):
    """Stands for a stop part way (a killed process): raised after some work was recorded."""


@pytest.mark.usefixtures("ray_session")
def test_finetune_and_evaluate_resume_where_they_stopped(
    tmp_path, gym_yaml, checkpoints, monkeypatch, capsys
):
    import leap_ray.evaluate
    from leap_ray.learners.a2c import A2C

    ft_args = ["finetune", "--config", gym_yaml, "--steps-per-game", "200"]
    assert main([*ft_args, "--out", str(tmp_path / "whole")]) == 0
    transfer = A2C.run_transfer_task
    calls = []

    def stop_at_the_second_game(self, *args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise Stop("stopped")
        return transfer(self, *args, **kwargs)

    def stop_at_the_first_game(self, *args, **kwargs):
        raise Stop("stopped")

    monkeypatch.setattr(A2C, "run_transfer_task", stop_at_the_second_game)
    stopped = tmp_path / "stopped"
    with pytest.raises(Stop):  # not one of the project's errors: its traceback is kept
        main([*ft_args, "--out", str(stopped)])
    monkeypatch.setattr(A2C, "run_transfer_task", transfer)
    state = load_checkpoint(stopped)
    assert state["kind"] == "finetune" and state["progress"]["games_done"] == 1
    assert main(["evaluate", "--init", str(stopped), "--steps", "100"]) == 2  # unfinished: refused
    assert "finetuning stopped after 1 of 2 games" in capsys.readouterr().err
    assert main([*ft_args, "--out", str(stopped), "--resume"]) == 0
    whole, resumed = load_checkpoint(tmp_path / "whole"), load_checkpoint(stopped)
    for name, tensor in whole["meta_init"]["init"].items():
        assert torch.equal(resumed["meta_init"]["init"][name], tensor), name
    assert main([*ft_args, "--steps-per-game", "300", "--out", str(stopped), "--resume"]) == 2
    assert "use the same settings" in capsys.readouterr().err
    assert main([*ft_args, "--set", "a2c.lr=0.5", "--out", str(stopped), "--resume"]) == 2
    assert "a2c.lr (run: 0.002, now: 0.5) cannot change on resume" in capsys.readouterr().err

    calls.clear()  # stopped in its first game: no checkpoint yet, the folder exists
    monkeypatch.setattr(A2C, "run_transfer_task", stop_at_the_first_game)
    early = tmp_path / "early"
    with pytest.raises(Stop):
        main([*ft_args, "--out", str(early)])
    assert early.is_dir()
    monkeypatch.setattr(A2C, "run_transfer_task", transfer)
    assert main([*ft_args, "--out", str(early), "--resume"]) == 0
    for name, tensor in whole["meta_init"]["init"].items():
        assert torch.equal(load_checkpoint(early)["meta_init"]["init"][name], tensor), name

    out = tmp_path / "eval"
    ev_args = ["evaluate", "--init", checkpoints["gym"], "--baseline", "random"]
    ev_args += ["--steps", "200", "--seeds", "2", "--out", str(out)]
    save_run = leap_ray.evaluate.save_run
    saved = []

    def stop_after_three_runs(plan, job, result):
        save_run(plan, job, result)
        saved.append(job)
        if len(saved) == 3:
            raise Stop("stopped")

    monkeypatch.setattr(leap_ray.evaluate, "save_run", stop_after_three_runs)
    with pytest.raises(Stop):
        main(ev_args)
    monkeypatch.setattr(leap_ray.evaluate, "save_run", save_run)
    kept = {path.name: path.read_text() for path in (out / "runs").iterdir()}
    assert len(kept) == 3
    capsys.readouterr()
    assert main(ev_args) == 2  # the folder exists: refused without --resume
    assert "add --resume to continue it" in capsys.readouterr().err
    before = contents(out)
    assert (
        main([*ev_args[:-4], "--steps", "300", "--seeds", "2", "--out", str(out), "--resume"]) == 2
    )
    assert "differs in: steps" in capsys.readouterr().err
    assert contents(out) == before  # a refusal leaves every byte of OUT as it was
    assert main([*ev_args, "--resume"]) == 0
    runs = {path.name: path.read_text() for path in (out / "runs").iterdir()}
    assert len(runs) == 2 * 2 * 2 and all(runs[name] == text for name, text in kept.items())
    with open(out / "curves.csv") as f:
        assert {(r["method"], r["game"], r["seed"]) for r in csv.DictReader(f)} == {
            (m, g, str(s)) for m in ("leap", "random") for g in FAMILY for s in (0, 1)
        }

    # a finished evaluation takes a baseline finished later; its other runs are not redone
    finetuned = ["--baseline", f"finetune:{tmp_path / 'whole'}"]
    before = contents(out)
    other_weights = ["evaluate", "--init", str(stopped), *ev_args[3:]]  # the same name, leap
    random_dropped = [*ev_args[:3], *ev_args[5:], *finetuned]
    for changed, what in ((other_weights, "method leap"), (random_dropped, "method random")):
        assert main([*changed, "--resume"]) == 2
        assert f"differs in: {what}" in capsys.readouterr().err
        assert contents(out) == before
    assert main([*ev_args, *finetuned, "--resume"]) == 0
    assert "adding finetune: the finished runs of the other methods are kept" in (
        capsys.readouterr().out
    )
    grown = {path.name: path.read_text() for path in (out / "runs").iterdir()}
    assert len(grown) == 3 * 2 * 2 and all(grown[name] == text for name, text in runs.items())
    with open(out / "curves.csv") as f:
        assert {r["method"] for r in csv.DictReader(f)} == {"leap", "finetune", "random"}
    assert "finetune" in (out / "summary.md").read_text()
    assert main([*ev_args, *finetuned, "--resume"]) == 0  # the grown plan resumes as itself
    out_text = capsys.readouterr().out
    assert "resuming: 12 of 12 runs finished before" in out_text
    assert "done: 12 runs (0 now: 0 env_steps in" in out_text


# -- the stop contract: keep what is finished, say how to continue, exit 128 + signal ----------
def stop_and_continue(tmp_path, args: list[str], saved, sig: int) -> str:
    """Start the CLI, send `sig` once `saved()` shows finished work, check the stop line, then
    run the printed command; returns that run's output."""
    log = tmp_path / "stopped.log"
    proc = start_cli(*args, log=log)
    try:
        wait_for(saved, 240, "the first finished piece of work")
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=120) == 128 + sig, log.read_text()[-3000:]
    finally:
        end_tree(proc)
    out = log.read_text()
    assert f"stopped by {signal.Signals(sig).name}" in out, out[-3000:]
    again = [line for line in out.splitlines() if line.startswith("continue with: ")]
    assert again, out[-3000:]
    command = shlex.split(again[-1].removeprefix("continue with: "))
    assert command[:3] == ["python", "-m", "leap_ray"] and command[-1] == "--resume"
    resumed = run_cli(*command[3:], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return resumed.stdout


def test_finetune_stopped_by_sigterm_says_how_to_continue(tmp_path, gym_yaml):
    out = tmp_path / "ft"
    args = ["finetune", "--config", gym_yaml, "--steps-per-game", "15000", "--out", str(out)]
    args += ["--set", "env.num_envs=1"]  # a few seconds per game on one core

    def first_game_saved():
        return list_checkpoints(out)

    stop_and_continue(tmp_path, args, first_game_saved, signal.SIGTERM)
    state = load_checkpoint(out)
    assert state["kind"] == "finetune" and state["progress"]["games_done"] == 2


def test_evaluate_stopped_by_sigterm_says_how_to_continue(tmp_path, checkpoints):
    """SIGTERM, which ray.init takes over: evaluate starts Ray inside its stop contract."""
    out = tmp_path / "eval"
    args = ["evaluate", "--init", checkpoints["gym"], "--baseline", "random", "--seeds", "1"]
    args += ["--steps", "2500", "--set", "resources.num_workers=1", "--out", str(out)]

    def a_run_saved():
        return (out / "runs").is_dir() and list((out / "runs").glob("*.json"))

    resumed = stop_and_continue(tmp_path, args, a_run_saved, signal.SIGTERM)
    assert re.search(r"resuming: [1-3] of 4 runs finished before", resumed), resumed[-2000:]
    assert len(list((out / "runs").glob("*.json"))) == 4 and (out / "summary.md").is_file()


@pytest.mark.usefixtures("ray_session")
def test_evaluate_video_leaves_a_gif_per_game_and_method(tmp_path, checkpoints):
    """`evaluate --video` on real ALE: one playable GIF per (game, method) after seed 0's run,
    and the same GIF as a TensorBoard image."""
    from PIL import Image

    out = tmp_path / "eval"
    args = ["evaluate", "--init", checkpoints["atari"], "--baseline", "random", "--video"]
    assert (
        main([*args, "--games", "Breakout", "--steps", "100", "--seeds", "2", "--out", str(out)])
        == 0
    )
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["leap--Breakout.gif", "random--Breakout.gif"]  # seed 0 only
    for name in videos:
        with Image.open(out / "videos" / name) as gif:
            assert gif.format == "GIF" and gif.n_frames > 10 and gif.size == (168, 168)
    events = EventAccumulator(str(out))
    events.Reload()
    (image,) = events.Images("eval/Breakout/leap/video")
    assert image.encoded_image_string[:6] == b"GIF89a" and image.width == 168
    runs = [json.loads(p.read_text()) for p in (out / "runs").glob("*seed0.json")]
    assert sorted(r["video"] for r in runs) == ["videos/" + v for v in videos]
    # configs/smoke.yaml turns logging.init_health off: no probe, no health section
    assert "## Initialization health" not in (out / "summary.md").read_text()


def test_video_is_refused_where_there_are_no_frames(checkpoints, capsys):
    assert main(["evaluate", "--init", checkpoints["gym"], "--video"]) == 2
    assert "--video: the gym suite's observations are not frames" in capsys.readouterr().err
