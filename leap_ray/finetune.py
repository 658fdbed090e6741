"""The paper's multi-task "finetuning" baseline, in-process (no Ray): one encoder trained on the
pool's games in turn, fresh heads per game, its final weights saved as a checkpoint that
`evaluate --init` / `--baseline finetune:` reads like any meta-training run's."""

from __future__ import annotations

from pathlib import Path

from leap_ray.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from leap_ray.config import Config, check_resumable, config_from_dict
from leap_ray.envs import training_games
from leap_ray.logger import RunLogger
from leap_ray.tasks import (
    RunLock,
    check_learner,
    checkpoint_encoder,
    encoder_checkpoint,
    initial_encoder,
    run_transfer_task,
    task_seed,
)


def finetune(
    cfg: Config, steps_per_game: int, run_dir: Path, command: str = "finetune", resume: bool = False
) -> Path:
    """One encoder trained on the pool's games in turn (fresh heads and optimizer per game, the
    encoder carried over), from the same theta_0 that meta-training starts from. A checkpoint
    after every game records how many are done; `resume` continues after the last of them."""
    with RunLock(run_dir):
        return _finetune(cfg, steps_per_game, run_dir, command, resume)


def _finetune(cfg: Config, steps_per_game: int, run_dir: Path, command: str, resume: bool) -> Path:
    games = training_games(cfg.env)
    check_learner(cfg, games)
    encoder, done = initial_encoder(cfg, games), 0
    if resume:
        encoder, done = resume_point(cfg, run_dir, games, steps_per_game)
    logger = RunLogger(run_dir, cfg, command)
    success = False
    try:
        for index in range(done, len(games)):
            game = games[index]
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
            print(f"finetune {index + 1}/{len(games)} {game}: last-10 mean return {mean:.1f}")
            progress = {"games": list(games), "steps_per_game": steps_per_game}
            progress["games_done"] = index + 1
            state = encoder_checkpoint(cfg, encoder, {"finetune": progress})
            path = save_checkpoint(run_dir, state, keep=1)
        path = list_checkpoints(run_dir)[-1]
        success = True
    finally:
        logger.close(success)
    print(f"done: finetuned encoder in {path}")
    return path


def resume_point(
    cfg: Config, run_dir: Path, games: tuple[str, ...], steps_per_game: int
) -> tuple[dict, int]:
    """The encoder and number of finished games of a stopped finetuning run, which must have
    been started with the same settings (those `train --resume` may not change), games and
    steps per game."""
    if not list_checkpoints(run_dir):  # stopped during its first game: start it again
        return initial_encoder(cfg, games), 0
    state = load_checkpoint(run_dir)
    check_resumable(config_from_dict(state["config"]), cfg)
    progress = state["driver"].get("finetune") if isinstance(state["driver"], dict) else None
    if not isinstance(progress, dict) or "games_done" not in progress:
        raise ValueError(f"{run_dir}: not a finetuning run that can be resumed")
    recorded = (progress["games"], progress["steps_per_game"])
    if recorded != (list(games), steps_per_game):
        raise ValueError(
            f"{run_dir} finetuned games {recorded[0]} for {recorded[1]} env_steps each; "
            f"resuming asks for {list(games)} and {steps_per_game}: use the same settings"
        )
    return checkpoint_encoder(state, str(run_dir)), int(progress["games_done"])
