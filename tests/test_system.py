"""The distributed system on a real local Ray with real ALE ROMs and tiny tasks."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from leap_ray.checkpoint import list_checkpoints, load_checkpoint
from leap_ray.config import load_config
from leap_ray.driver import train
from leap_ray.learners import initial_encoder
from leap_ray.learners.a2c.learning import make_learner
from leap_ray.meta import PartialMetaGradient
from leap_ray.suites import training_games
from leap_ray.tasks import sample_games, task_seed
from tests.events import scalar_counts

pytestmark = pytest.mark.usefixtures("ray_session")


def scalar_tags(run_dir: Path) -> list[str]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return events.Tags()["scalars"]


def final_init(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir)["meta_init"]["init"]


@pytest.fixture(scope="module")
def smoke_run(ray_session, tmp_path_factory) -> Path:
    """configs/smoke.yaml's 2 meta_steps, uninterrupted: read by the end-to-end test and the
    reference of the resume test."""
    logdir = tmp_path_factory.mktemp("smoke")
    return train(load_config("configs/smoke.yaml", [f"logging.logdir={logdir}"]))


def test_smoke_two_meta_steps_end_to_end(smoke_run, smoke_config):
    run_dir = smoke_run
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["meta_step"] == 2 and checkpoint["meta_init"]["version"] == 2
    ledger = checkpoint["ledger"]
    assert sorted(ledger) == [0, 1, 2, 3]
    assert all(rec["status"] == "applied" and rec["attempt"] == 0 for rec in ledger.values())
    assert [rec["meta_step"] for _, rec in sorted(ledger.items())] == [0, 0, 1, 1]
    tags = scalar_tags(run_dir)
    for tag in (
        "meta/gradient_norm",
        "meta/init_change",
        "meta/meta_step",
        "meta/tasks_done",
        "meta/staleness",
        "meta/merge_ms",
        "perf/env_steps_per_second",
        "meta/task_path_length",
        "meta/task_path_energy",
    ):
        assert tag in tags
    assert any(t.startswith("task/00000-") and t.endswith("losses/total") for t in tags)
    assert any(t.endswith("path/distance_from_init") for t in tags)
    assert any(t.endswith("path/length") for t in tags)
    start = initial_encoder(smoke_config(), training_games(smoke_config().env))
    change = sum(
        float((final_init(run_dir)[n] - torch.from_numpy(v)).abs().sum()) for n, v in start.items()
    )
    assert change > 0, "the initialization did not move"


def in_process_meta_gradient(cfg, meta_step: int, init: dict) -> PartialMetaGradient:
    """The same tasks as the driver's meta_step, run here with the core, summed once."""
    pool = training_games(cfg.env)
    games = sample_games(cfg, pool, meta_step, cfg.meta.meta_batch_size)
    partials = []
    for index, game in enumerate(games):
        task_id = meta_step * cfg.meta.meta_batch_size + index
        learner = make_learner(cfg, game, task_seed(cfg.meta.seed, task_id))
        learner.meta_learner.load(init, meta_step)
        learner.meta_learner.to(learner.model)
        learner.train(cfg.a2c.steps_per_task, on_partial=partials.append)  # one-shot: no streaming
        learner.envs.close()
    return PartialMetaGradient.sum(partials)


def test_server_result_equals_in_process_sum(smoke_config):
    # SGD with lr 1: the new initialization is exactly theta_0 minus the meta-batch mean
    cfg = smoke_config(
        "logging.run_name=exact", "meta.meta_steps=1", "meta.optimizer=sgd", "meta.lr=1.0"
    )
    start = initial_encoder(cfg, training_games(cfg.env))
    run_dir = train(cfg)
    expected = in_process_meta_gradient(cfg, 0, start)
    assert expected.num_tasks == 2 and expected.num_segments == 2 * 10
    got = final_init(run_dir)
    for name, mean in expected.mean().items():
        torch.testing.assert_close(
            torch.from_numpy(start[name]) - mean, got[name], rtol=1e-6, atol=1e-7
        )


def test_resume_is_bit_identical_and_finishes(smoke_run, smoke_config, tmp_path):
    full = smoke_run  # smoke.yaml: 2 meta_steps
    first = train(smoke_config("logging.run_name=split", "meta.meta_steps=1"))
    saved = load_checkpoint(first)
    from leap_ray.config import config_from_dict
    from leap_ray.distributed.server import ParameterServer

    server = ParameterServer(
        config_from_dict(saved["config"]),
        {n: t.numpy() for n, t in final_init(first).items()},
        str(tmp_path / "probe"),
        saved,
    )
    for name, tensor in saved["meta_init"]["init"].items():
        assert torch.equal(server.meta_init.params[name].detach(), tensor)
    assert server.meta_step == 1 and server.meta_init.version == 1
    resumed = train(smoke_config(), resume=str(first))
    assert resumed == first
    assert [p.name for p in list_checkpoints(resumed)] == [
        "checkpoint-000000.pt",
        "checkpoint-000001.pt",
        "checkpoint-000002.pt",
    ]
    for name, tensor in final_init(full).items():
        assert torch.equal(final_init(resumed)[name], tensor), f"{name} differs after resume"


def test_each_scalar_is_written_once(smoke_config):
    """Telemetry's own path: every (tag, step) of the run's event files once, and each task's
    episode rows exactly as many as the episodes its report counts."""
    cfg = smoke_config(
        "logging.run_name=once",
        "env.suite=gym",
        "env.games=[CartPole-v1]",
        "env.held_out=[]",
        "a2c.encoder=mlp",
        "a2c.steps_per_task=2000",
    )
    run_dir = train(cfg)
    counts = scalar_counts(run_dir)
    repeated = {key: n for key, n in counts.items() if n > 1 and "/charts/episode_" not in key[0]}
    assert not repeated, repeated
    for step in (1, 2):
        for tag in ("meta/gradient_norm", "meta/init_change", "meta/rejected_partials"):
            assert counts[(tag, step)] == 1, (tag, step)
    rows = [json.loads(line) for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["episodes"] > 0 for row in rows)
    for row in rows:
        tag = f"task/{row['task_id']:05d}-{row['game']}/charts/episode_return"
        assert sum(n for (t, _), n in counts.items() if t == tag) == row["episodes"], tag


def test_async_run_applies_every_k_tasks_within_the_staleness_bound(smoke_config):
    """meta.mode=async end to end: a meta_step every async_k finished tasks while the other
    workers keep training; no applied task is older than max_staleness versions."""
    k, steps, bound = 2, 3, 1
    cfg = smoke_config(
        "logging.run_name=async",
        "meta.mode=async",
        f"meta.async_k={k}",
        f"meta.meta_steps={steps}",
        f"meta.max_staleness={bound}",
    )
    checkpoint = load_checkpoint(train(cfg))
    assert checkpoint["meta_step"] == steps
    ledger = checkpoint["ledger"]
    used = [rec for rec in ledger.values() if rec["meta_step"] is not None]
    assert len(used) == k * steps, ledger  # each meta_step took exactly async_k tasks
    for meta_step in range(steps):
        assert sum(rec["meta_step"] == meta_step for rec in used) == k
    applied = [rec for rec in used if rec["status"] == "applied"]
    assert applied and checkpoint["meta_init"]["version"] == len(
        {rec["meta_step"] for rec in applied}
    )
    for rec in used:
        # the version at meta_step m is the number of earlier meta_steps that applied a task
        version = sum(1 for m in {r["meta_step"] for r in applied} if m < rec["meta_step"])
        lag = version - rec["init_version"]
        if rec["status"] == "applied":
            assert 0 <= lag <= bound, rec
        else:
            assert lag > bound and rec["reason"].startswith("stale"), rec


def test_the_v5_protocol_config_trains_end_to_end(tmp_path):
    """configs/atari_v5.yaml at smoke scale: sticky actions, 18 actions, no life-loss signal."""
    scale = [
        "env.games=[Pong, MsPacman]",
        "env.num_envs=4",
        "a2c.steps_per_task=200",
        "meta.meta_batch_size=2",
        "meta.meta_steps=2",
        "meta.stream_every=4",
        "resources.num_workers=2",
        "resources.cpus_per_worker=1",
        "resources.server_resource=''",
        f"logging.logdir={tmp_path}",
        "logging.run_name=v5",
        "logging.log_every=2",
        "logging.progress=false",
        "logging.dashboard=false",
        "logging.init_health=true",
    ]
    run_dir = train(load_config("configs/atari_v5.yaml", scale))
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint["meta_step"] == 2 and checkpoint["meta_init"]["version"] == 2
    assert checkpoint["config"]["env"]["full_action_space"] is True
    assert all(rec["status"] == "applied" for rec in checkpoint["ledger"].values())
    # the diagnostics: the meta-gradient's terms per task and per meta_step, the init's health
    counts = scalar_counts(run_dir)
    for tag in ("meta/init_dead_units", "meta/init_always_on_units", "meta/task_term_cosine"):
        steps = sorted(step for t, step in counts if t == tag)
        assert steps == ([0, 1, 2] if tag.startswith("meta/init") else [1, 2]), (tag, steps)
    assert (("meta/init_relative_distance/fc.weight", 0)) in counts
    rows = [json.loads(line) for line in (run_dir / "tasks.jsonl").open()]
    assert all(set(r["terms"]) == {"meta/path_term_norm", "meta/loss_term_norm",
                                   "meta/term_cosine"} for r in rows)  # fmt: skip
    assert all(r["terms"]["meta/loss_term_norm"] > 0 for r in rows)
