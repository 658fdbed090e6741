"""`train-task`: one learner on one game, with Leap accumulating, no Ray actors (the CLI starts a
local Ray for a learner that needs one, RLlib's PPO). For trying a game, tuning the learner, or
measuring it alone."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from leap_ray.config import Config
from leap_ray.learners import learner_for
from leap_ray.logger import RunLogger
from leap_ray.runs import run_name
from leap_ray.suites import suite_for


def train_task(cfg: Config, game: str, steps: int, seed: int, logdir: str) -> dict[str, float]:
    game = suite_for(cfg.env).resolve(game)  # an unknown game writes nothing
    run_dir = Path(logdir) / run_name(cfg, f"train-task-{game.replace('/', '_')}-")
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
        summary = learner_for(cfg).run_single_task(
            cfg, game, seed, steps, on_partial, on_log, log_every=10
        )
        success = True
    finally:
        bar.close()
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
