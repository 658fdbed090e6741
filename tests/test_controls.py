"""`perturb`, the "moved, not meta-learned" control: theta_0 moved by as much as the run moved
each parameter tensor, in a random direction."""

import json

import numpy as np
import pytest

from leap_ray.checkpoint import checkpoint_encoder, load_checkpoint
from leap_ray.cli import main
from leap_ray.config import load_config
from leap_ray.controls import perturbed_like
from leap_ray.evaluate import parse_method
from leap_ray.learners import initial_encoder
from leap_ray.suites import training_games
from tests.refusals import assert_refused
from tests.test_export import make_run


def test_each_tensor_moves_as_far_as_the_run_moved_it_in_a_random_direction():
    rng = np.random.default_rng(0)
    theta_0 = {"w": rng.standard_normal((64, 32)).astype(np.float32), "b": np.zeros(8, np.float32)}
    theta = {"w": theta_0["w"] + 0.1 * rng.standard_normal((64, 32)), "b": np.full(8, 0.5)}
    moved = perturbed_like(theta_0, theta, seed=1)
    for name in theta_0:
        assert moved[name].dtype == theta_0[name].dtype and moved[name].shape == theta_0[name].shape
        change, control = theta[name] - theta_0[name], moved[name] - theta_0[name]
        assert np.linalg.norm(control) == pytest.approx(np.linalg.norm(change), rel=1e-5)
    # not the run's direction: a random one in 2,048 dimensions is nearly orthogonal to it
    change, control = (theta["w"] - theta_0["w"]).ravel(), (moved["w"] - theta_0["w"]).ravel()
    cosine = change @ control / np.linalg.norm(change) / np.linalg.norm(control)
    assert abs(cosine) < 0.1
    again, other = perturbed_like(theta_0, theta, seed=1), perturbed_like(theta_0, theta, seed=2)
    assert all(np.array_equal(again[n], moved[n]) for n in moved)
    assert not np.allclose(other["w"], moved["w"])
    unmoved = perturbed_like(theta_0, theta_0, seed=1)  # no change: no control change either
    assert all(np.array_equal(unmoved[n], theta_0[n]) for n in theta_0)


def test_perturb_writes_an_initialization_evaluate_reads(tmp_path):
    run, theta = make_run(tmp_path, ["meta.seed=3"], steps=(0, 1, 2))  # theta_0 from meta.seed
    out = tmp_path / "control"
    assert main(["perturb", str(run), "--meta-step", "1", "--seed", "4", "--out", str(out)]) == 0
    cfg = load_config("configs/smoke.yaml", ["meta.seed=3"])
    theta_0 = initial_encoder(cfg, training_games(cfg.env))
    source = checkpoint_encoder(load_checkpoint(run / "checkpoints" / "checkpoint-000001.pt"))
    control = parse_method(f"perturbed:{out}", need_label=True)
    assert control.name == "perturbed" and set(control.init) == set(theta_0)
    record = json.loads((out / "perturb.json").read_text())
    assert record["source_meta_step"] == 1 and record["seed"] == 4
    for name, start in theta_0.items():
        length = np.linalg.norm(source[name] - start)
        assert record["change_norm"][name] == pytest.approx(length, rel=1e-6)
        assert np.linalg.norm(control.init[name] - start) == pytest.approx(length, rel=1e-4)
    assert not np.allclose(control.init["fc.weight"], source["fc.weight"])


@pytest.mark.parametrize(
    "args, expected",
    [
        (["{tmp}/no_such_run"], "perturb: '{tmp}/no_such_run' is not a run directory"),
        (["{run}", "--meta-step", "7"], "has no checkpoint of meta_step 7 (kept: 0, 1)"),
        (["{run}", "--out", "{run}"], "exists and is not empty"),
        (["{run}", "--seed", "-1"], "--seed must be >= 0"),
    ],
    ids=["bad_run_dir", "missing_meta_step", "existing_out", "negative_seed"],
)
def test_perturb_bad_input_is_one_line(tmp_path, capsys, args, expected):
    run, _ = make_run(tmp_path)
    argv = [a.format(tmp=tmp_path, run=run) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "control")]
    assert_refused(capsys, ["perturb", *argv], expected.format(tmp=tmp_path))
    assert not (tmp_path / "control").exists()
