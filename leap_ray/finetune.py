"""The paper's multi-task "finetuning" baseline, in-process (no Ray): one encoder trained on the
pool's games in turn, fresh heads per game, its final weights saved as a checkpoint that
`evaluate --init` / `--baseline finetune:` reads like any meta-training run's."""

from __future__ import annotations

from pathlib import Path

from leap_ray.checkpoint import save_checkpoint
from leap_ray.config import Config
from leap_ray.envs import task_pool
from leap_ray.logger import RunLogger
from leap_ray.tasks import encoder_checkpoint, initial_encoder, run_transfer_task, task_seed


def finetune(cfg: Config, steps_per_game: int, run_dir: Path, command: str = "finetune") -> Path:
    """One encoder trained on the pool's games in turn (fresh heads and optimizer per game, the
    encoder carried over), from the same theta_0 that meta-training starts from."""
    pool = task_pool(cfg.env)
    encoder = initial_encoder(cfg, pool)
    logger = RunLogger(run_dir, cfg, command)
    success = False
    try:
        for index, game in enumerate(pool):
            prefix = f"finetune/{index:02d}-{game.replace('/', '_')}/"
            summary, encoder = run_transfer_task(
                cfg,
                game,
                task_seed(cfg.meta.seed, index),
                steps_per_game,
                encoder,
                on_log=lambda step, values, p=prefix: logger.scalars(step, values, p),
            )
            returns = [r for _, r, _ in summary.episodes][-10:]
            mean = sum(returns) / len(returns) if returns else float("nan")
            print(f"finetune {index + 1}/{len(pool)} {game}: last-10 mean return {mean:.1f}")
        driver = {"finetune": {"games": list(pool), "steps_per_game": steps_per_game}}
        path = save_checkpoint(run_dir, encoder_checkpoint(cfg, encoder, driver), keep=1)
        success = True
    finally:
        logger.close(success)
    print(f"done: finetuned encoder in {path}")
    return path
