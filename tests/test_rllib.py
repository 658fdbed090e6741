"""The `rllib_ppo` learner on real RLlib PPO (new API stack) and a real local Ray: the partials a
task streams equal Leap's sums recomputed from the recorded path, the env runner acts with the
initialization it is given, and meta-training, resume and transfer evaluation run end to end."""

import json

import numpy as np
import pytest
import torch

from leap_ray.checkpoint import list_checkpoints, load_checkpoint
from leap_ray.config import ConfigError, load_config
from leap_ray.driver import train
from leap_ray.learners import learner_for
from leap_ray.learners.rllib_ppo import PPOTask, RLlibPPO
from leap_ray.meta import Leap
from leap_ray.meta.partial import PartialSum
from tests.events import scalar_counts

new_encoder = RLlibPPO().new_encoder

GAME = "CartPole-v1?length=0.25"
SMOKE = "configs/rllib_smoke.yaml"


def rllib_config(tmp_path, *overrides):
    return load_config(SMOKE, [f"logging.logdir={tmp_path}", *overrides])


class RecordingLeap(Leap):
    """The core Leap, recording what it is shown: (theta_i, l_i, g_i) per step, theta_K."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.steps: list[tuple[list[np.ndarray], float, list[np.ndarray]]] = []
        self.final: list[np.ndarray] | None = None

    def update(self, loss, module) -> None:
        theta = [p.detach().numpy().astype(np.float64) for p in self._tracked(module)]
        grads = [p.grad.detach().numpy().astype(np.float64) for p in self._tracked(module)]
        self.steps.append((theta, float(loss.detach()), grads))
        super().update(loss, module)

    def finish_task(self, module, loss=None):
        self.final = [p.detach().numpy().astype(np.float64) for p in self._tracked(module)]
        return super().finish_task(module, loss)


def reference_meta_gradient(steps, final, metric: str) -> list[np.ndarray]:
    """Leap's sum in float64 from the brief's formula, the last segment without a loss change
    (RLlib gives no loss at theta_K): -(d_theta + d_l g_i) [/ sqrt(|d_theta|^2 + d_l^2)],
    d_l = -|l_{i+1} - l_i|."""
    total = [np.zeros_like(t) for t in final]
    for i, (theta, loss, grad) in enumerate(steps):
        theta_next, loss_next = (final, loss) if i + 1 == len(steps) else steps[i + 1][:2]
        d_theta = [b - a for a, b in zip(theta, theta_next, strict=True)]
        d_loss = -abs(loss_next - loss)
        scale = 1.0
        if metric == "length":
            scale = 1.0 / np.sqrt(sum(float((d * d).sum()) for d in d_theta) + d_loss**2)
        for acc, d, g in zip(total, d_theta, grad, strict=True):
            acc -= scale * (d + d_loss * g)
    return total


@pytest.mark.parametrize("metric", ["energy", "length"])
def test_streamed_partials_equal_leap_on_the_recorded_path(ray_session, tmp_path, metric):
    """RLlib clips gradients (global norm 0.05 here) after Leap has read them: Leap must see
    g_i unclipped, and the partials streamed every 5 optimizer steps must sum to the formula."""
    cfg = rllib_config(
        tmp_path, "rllib.training.grad_clip=0.05", "rllib.training.grad_clip_by=global_norm"
    )
    task = PPOTask(cfg, GAME, seed=1)
    try:
        init = task.encoder()
        leap = RecordingLeap(init, metric=metric, prefix="encoder.")
        partials = []
        summary = task.train(1024, leap, stream_every=5, on_partial=partials.append)
    finally:
        task.close()
    updates = len(leap.steps)
    assert summary.updates == updates >= 32  # 2 iterations x 4 epochs x >= 4 minibatches
    assert len(partials) == updates // 5 + 1 and partials[-1].num_tasks == 1
    grad_norms = [np.sqrt(sum(float((g * g).sum()) for g in grad)) for _, _, grad in leap.steps]
    assert max(grad_norms) > 0.5, "Leap saw clipped gradients"
    total = PartialSum()
    for partial in partials:
        total.add(partial)
    streamed = total.result()
    assert streamed.num_segments == updates and streamed.num_tasks == 1
    want = reference_meta_gradient(leap.steps, leap.final, metric)
    for name, expected in zip(init, want, strict=True):
        got = streamed.grads[name].numpy()
        np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5 * np.abs(expected).max())


def test_meta_loss_gradient_clipped_shows_leap_the_gradient_rllib_steps_with(ray_session, tmp_path):
    cfg = rllib_config(
        tmp_path,
        "rllib.training.grad_clip=0.05",
        "rllib.training.grad_clip_by=global_norm",
        "meta.loss_gradient=clipped",
    )
    task = PPOTask(cfg, GAME, seed=1)
    try:
        leap = RecordingLeap(task.encoder(), metric="energy", prefix="encoder.")
        task.train(512, leap, stream_every=0)
    finally:
        task.close()
    norms = [np.sqrt(sum(float((g * g).sum()) for g in grad)) for _, _, grad in leap.steps]
    assert len(norms) >= 16 and max(norms) <= 0.05 * (1 + 1e-4), max(norms)


def test_the_env_runner_acts_with_the_initialization_it_is_given(ray_session, tmp_path):
    cfg = rllib_config(tmp_path)
    other = new_encoder(cfg, GAME, seed=7)
    task = PPOTask(cfg, GAME, seed=1)
    try:
        before = task.acting_encoder()
        assert any(not np.array_equal(before[n], other[n]) for n in other)
        task.load_encoder(other)
        for name, value in task.acting_encoder().items():
            assert np.array_equal(value, other[name]), name
        for name, p in task.module.encoder.named_parameters():
            assert torch.equal(p.detach(), torch.from_numpy(other[name])), name
    finally:
        task.close()


def test_an_initialization_for_another_encoder_is_refused(ray_session, tmp_path):
    wide = new_encoder(rllib_config(tmp_path, "rllib.model.fcnet_hiddens=[32, 32]"), GAME, seed=0)
    task = PPOTask(rllib_config(tmp_path), GAME, seed=1)
    try:
        with pytest.raises(ConfigError, match="does not fit RLlib's encoder"):
            task.load_encoder(wide)
    finally:
        task.close()


def test_meta_training_resume_and_transfer_end_to_end(ray_session, tmp_path):
    """configs/rllib_smoke.yaml with 2,048-env_step tasks, two to a meta_step (one a worker):
    2 meta_steps move the initialization, with meta scalars in the event files; 1 meta_step
    then --resume to 2 equals the straight run bit for bit; then `evaluate` transfers the
    result to a held-out member of the family."""
    short = ("rllib.steps_per_task=2048", "meta.meta_batch_size=2")  # 4 PPO iterations a task
    straight = train(rllib_config(tmp_path, *short, "logging.run_name=straight"))
    checkpoint = load_checkpoint(straight)
    assert checkpoint["meta_step"] == 2 and checkpoint["meta_init"]["version"] == 2
    theta_0 = learner_for(rllib_config(tmp_path)).new_encoder(rllib_config(tmp_path), GAME, seed=0)
    moved = checkpoint["meta_init"]["init"]
    assert set(moved) == set(theta_0) and all(n.startswith("encoder.") for n in moved)
    assert any(not np.allclose(moved[n].numpy(), theta_0[n]) for n in moved)
    counts = scalar_counts(straight)
    for tag in ("meta/gradient_norm", "meta/task_path_length"):
        assert counts[(tag, 1)] == 1 and counts[(tag, 2)] == 1, tag
    rows = [json.loads(line) for line in (straight / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["episodes"] > 0 and row["updates"] > 0 for row in rows)

    run = train(rllib_config(tmp_path, *short, "logging.run_name=run", "meta.meta_steps=1"))
    resumed = train(rllib_config(tmp_path, *short), resume=str(run))
    assert [p.name for p in list_checkpoints(resumed)][-1] == "checkpoint-000002.pt"
    final = load_checkpoint(resumed)
    for name, tensor in moved.items():
        assert torch.equal(final["meta_init"]["init"][name], tensor), name

    from leap_ray.evaluate import evaluate, make_plan

    out = tmp_path / "eval"
    plan = make_plan(str(resumed), ["random"], None, 1024, 1, out=str(out))
    evaluate(plan, command="test")
    summary = (out / "summary.md").read_text()
    for game in ("CartPole-v1?length=0.75&gravity=12.0", "CartPole-v1?length=0.35&force_mag=7.0"):
        assert game in summary


def test_train_task_runs_rllib_ppo_with_leap(tmp_path):
    """`train-task` with the RLlib learner: one PPO task in a local Ray the CLI starts, Leap
    streaming partials, the one-line summary, exit code 0."""
    from tests.processes import run_cli

    result = run_cli(
        "train-task", "--config", SMOKE, "--game", "CartPole-v1", "--steps", "1024",
        "--logdir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("CartPole-v1: "))
    summary = line.split("; ")[0].removeprefix("CartPole-v1: ")
    fields = dict(item.split("=") for item in summary.split(", "))
    assert int(fields["env_steps"]) >= 1024 and int(fields["updates"]) >= 32
    assert int(fields["partials"]) == int(fields["updates"]) // 32 + 1  # stream_every 32, the last


def test_leaps_loss_term_defaults_off_for_ppo_and_a_set_value_is_kept():
    assert load_config(None, ["learner=rllib_ppo"]).meta.loss_term is False
    assert load_config(None, ["learner=rllib_ppo", "meta.loss_term=true"]).meta.loss_term is True
    assert load_config(None, []).meta.loss_term is True  # A2C: the paper's Leap


def test_a_diverging_ppo_learner_is_named_with_its_game_and_step(ray_session, tmp_path):
    """Through RLlib's Algorithm the same `LearnerDiverged` as A2C's (not retried by the driver)."""
    from leap_ray.errors import LearnerDiverged

    task = PPOTask(rllib_config(tmp_path, "rllib.training.lr=1.0e+6"), GAME, seed=1)
    try:
        with pytest.raises(LearnerDiverged, match=r"PPO learner on CartPole.* diverged.*update"):
            task.train(4096)
    finally:
        task.close()


def test_the_rllib_recipe_restores_an_export_into_a_ppo_run(ray_session, tmp_path):
    """README, "Use the initialization elsewhere": an exported RLlib encoder goes into a new
    RLlib PPO run through RLlib's own RLModule checkpoint and `Algorithm.restore_from_path`;
    the learner's module and the env runner's both hold the exported weights."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_LEARNER_GROUP,
        COMPONENT_RL_MODULE,
        DEFAULT_MODULE_ID,
    )
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from safetensors import safe_open
    from safetensors.torch import load_file

    from leap_ray.checkpoint import encoder_checkpoint, save_checkpoint
    from leap_ray.cli import main

    cfg = rllib_config(tmp_path)
    init = {name: value + 0.5 for name, value in new_encoder(cfg, GAME, seed=3).items()}
    save_checkpoint(tmp_path / "run", encoder_checkpoint(cfg, init, {}), keep=1)
    exported = tmp_path / "init.safetensors"
    assert main(["export", str(tmp_path / "run"), "--out", str(exported)]) == 0

    # the recipe: a PPO run with the exported encoder's model config ...
    with safe_open(exported, framework="pt") as f:
        model = DefaultModelConfig(**json.loads(f.metadata()["rllib_model"]))
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0)
        .rl_module(model_config=model)
    )
    algo = config.build_algo()
    try:
        # ... an RLModule checkpoint of its own module with the encoder's weights put in ...
        module = RLModuleSpec.from_module(algo.get_module()).build()
        state = module.get_state()
        weights = load_file(exported)
        state.update({"encoder." + name: t.numpy() for name, t in weights.items()})
        module.set_state(state)
        module.save_to_path(tmp_path / "module")
        # ... restored into the run's learner; RLlib syncs its env runners
        component = "/".join(
            [COMPONENT_LEARNER_GROUP, COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID]
        )
        algo.restore_from_path(tmp_path / "module", component=component)

        learner = algo.learner_group.foreach_learner(lambda lr: lr.module[DEFAULT_MODULE_ID])
        for built in (next(iter(learner)).get(), algo.env_runner.module):
            for name, p in built.encoder.named_parameters():
                assert np.array_equal(p.detach().cpu().numpy(), init[name]), name
        algo.train()  # and it trains from there
    finally:
        algo.stop()


def test_the_rllib_learner_plays_the_full_action_set_when_asked():
    from leap_ray.learners.rllib_ppo import task_spaces

    v5 = load_config("configs/rllib_atari.yaml", ["env.full_action_space=true"])
    assert task_spaces(v5, "Pong")[1].n == 18
    assert task_spaces(load_config("configs/rllib_atari.yaml"), "Pong")[1].n == 6
