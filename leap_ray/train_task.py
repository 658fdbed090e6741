"""`train-task`: one learner on one game, with Leap accumulating, no Ray (the CLI starts a local
one for RLlib's PPO). For trying a game, tuning the learner, or measuring it alone."""

from __future__ import annotations

import functools
from pathlib import Path

from tqdm import tqdm

from leap_ray.a2c import make_learner
from leap_ray.config import Config
from leap_ray.logger import RunLogger
from leap_ray.tasks import run_name


def train_task(cfg: Config, game: str, steps: int, seed: int, logdir: str) -> dict[str, float]:
    run_dir = Path(logdir) / run_name(cfg, f"train-task-{game.replace('/', '_')}-")
    if cfg.learner == "rllib_ppo":  # in the local Ray the CLI started (RLlib needs one)
        from leap_ray import rllib_ppo

        task = rllib_ppo.PPOTask(cfg, game, seed)
        meta_learner = rllib_ppo.meta_learner_for(cfg, task.encoder())
        train = functools.partial(task.train, steps, meta_learner)
        close = task.close
    else:
        learner = make_learner(cfg, game, seed)
        train = functools.partial(
            learner.train, steps, log_every=10, measure_path=cfg.logging.measure_paths
        )
        close = learner.envs.close
    logger = RunLogger(run_dir, cfg, f"train-task --game {game} --steps {steps} --seed {seed}")
    bar = tqdm(total=steps, unit="env_step", disable=not cfg.logging.progress)
    partial_norms: list[float] = []

    def on_log(env_step: int, values: dict[str, float]) -> None:
        logger.scalars(env_step, values)
        bar.update(env_step - bar.n)
        if "charts/episode_return" in values:
            bar.set_postfix(episode_return=values["charts/episode_return"])

    def on_partial(partial) -> None:
        partial_norms.append(partial.norm())
        logger.scalars(bar.n, {"meta/partial_norm": partial_norms[-1]})

    success = False
    try:
        summary = train(stream_every=cfg.meta.stream_every, on_partial=on_partial, on_log=on_log)
        success = True
    finally:
        bar.close()
        close()
        logger.close(success)
    returns = [r for _, r, _ in summary.episodes]
    result = {
        "env_steps": summary.env_steps,
        "updates": summary.updates,
        "env_steps_per_second": round(summary.env_steps_per_second, 1),
        "episodes": len(returns),
        "mean_return_last_10": round(sum(returns[-10:]) / max(1, len(returns[-10:])), 2),
        "partials": len(partial_norms),
    }
    print(f"{game}: " + ", ".join(f"{k}={v}" for k, v in result.items()) + f"; logs in {run_dir}")
    return result
