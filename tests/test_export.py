"""`export` and the recipes in README ("Use the initialization elsewhere"): the file loads with
nothing but safetensors and the library it goes into, and gives the same network."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from leap_ray.checkpoint import FINETUNE, encoder_checkpoint, init_digest, save_checkpoint
from leap_ray.cli import main
from leap_ray.config import load_config
from leap_ray.learners import initial_encoder
from leap_ray.learners.a2c.networks import make_encoder
from leap_ray.suites import training_games
from tests.refusals import assert_refused

NATURE = ["a2c.encoder=nature"]


def make_run(tmp_path, overrides=(), kind="meta_training", steps=(0, 1)):
    """A run directory whose checkpoints hold theta_0 moved by `step` (one per meta_step)."""
    cfg = load_config("configs/smoke.yaml", list(overrides))
    init = initial_encoder(cfg, training_games(cfg.env))
    run = tmp_path / "run"
    for step in steps:
        moved = {name: value + 0.01 * step for name, value in init.items()}
        state = encoder_checkpoint(cfg, moved, {"games_done": 2} if kind == FINETUNE else {}, kind)
        state["meta_step"] = step
        save_checkpoint(run, state, keep=5)
    return run, {name: value + 0.01 * steps[-1] for name, value in init.items()}


def test_export_writes_the_encoder_and_its_metadata(tmp_path):
    run, init = make_run(tmp_path, NATURE)
    out = tmp_path / "init.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    weights = load_file(out)
    assert set(weights) == set(init)
    for name, tensor in weights.items():
        assert np.array_equal(tensor.numpy(), init[name]), name
    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "leap-ray-encoder/1" and meta["learner"] == "a2c"
    assert meta["encoder"] == "nature" and json.loads(meta["observation_shape"]) == [3, 84, 84]
    assert meta["run_kind"] == "meta_training" and meta["meta_step"] == "1"
    assert meta["tensors_sha256"] == init_digest(init) and meta["frame_stack"] == "1"
    assert json.loads(meta["config"])["a2c"]["encoder"] == "nature"

    older = tmp_path / "older.safetensors"
    assert main(["export", str(run), "--meta-step", "0", "--out", str(older)]) == 0
    assert not torch.equal(load_file(older)["fc.weight"], weights["fc.weight"])


def test_the_plain_pytorch_recipe(tmp_path):
    run, init = make_run(tmp_path)
    out = tmp_path / "init.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    # README: rebuild the encoder from the metadata and load the tensors as they are
    with safe_open(out, framework="pt") as f:
        meta = f.metadata()
    encoder = make_encoder(meta["encoder"], tuple(json.loads(meta["observation_shape"])))
    encoder.load_state_dict(load_file(out))
    for name, p in encoder.named_parameters():
        assert np.array_equal(p.detach().numpy(), init[name]), name


def test_the_sb3_nature_cnn_recipe_gives_our_features(tmp_path):
    from gymnasium import spaces
    from stable_baselines3.common.torch_layers import NatureCNN

    run, _ = make_run(tmp_path, NATURE)
    out = tmp_path / "init.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    # README: SB3's NatureCNN has the same layers under other names
    names = {"convs.0.": "cnn.0.", "convs.2.": "cnn.2.", "convs.4.": "cnn.4.", "fc.": "linear.0."}
    weights = load_file(out)
    renamed = {
        next(new + key[len(old) :] for old, new in names.items() if key.startswith(old)): value
        for key, value in weights.items()
    }
    space = spaces.Box(0, 255, (3, 84, 84), np.uint8)
    sb3 = NatureCNN(space, features_dim=512)
    sb3.load_state_dict(renamed)

    ours = make_encoder("nature", (3, 84, 84))
    ours.load_state_dict(weights)
    frames = torch.randint(0, 256, (6, 3, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        theirs = sb3(frames.float() / 255.0)  # SB3's policy scales images before the extractor
        mine = ours(frames)
    assert theirs.shape == (6, 512) and (mine > 0).any()
    torch.testing.assert_close(theirs, mine, rtol=1e-5, atol=1e-5)


def test_a_finetuning_run_exports_too(tmp_path):
    run, init = make_run(tmp_path, kind=FINETUNE, steps=(0,))
    out = tmp_path / "finetuned.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    with safe_open(out, framework="pt") as f:
        assert f.metadata()["run_kind"] == "finetune" and f.metadata()["algorithm"] == "finetune"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["{tmp}/no_such_run"], "is not a run directory"),
        (["{run}", "--meta-step", "7"], "has no checkpoint of meta_step 7 (kept: 0, 1)"),
        (["{run}", "--out", "{tmp}/no/such/dir/x.safetensors"], "does not exist"),
        (["{run}", "--out", "{tmp}/run/checkpoints/checkpoint-000000.pt"], "exists; name a new"),
    ],
    ids=["bad_run_dir", "missing_meta_step", "unwritable_out", "existing_out"],
)
def test_export_bad_input_is_one_line(tmp_path, capsys, args, expected):
    run, _ = make_run(tmp_path)
    argv = [a.format(tmp=tmp_path, run=run) for a in args]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.safetensors")]
    assert_refused(capsys, ["export", *argv], expected)
    assert not (tmp_path / "x.safetensors").exists()
