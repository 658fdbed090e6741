"""The paper's multi-task "finetuning" baseline, in-process (no Ray actors; RLlib's PPO runs in
the local Ray the CLI starts): one encoder trained on the pool's games in turn, fresh heads per
game, its final weights saved as a checkpoint of kind `finetune` that `evaluate --init` /
`--baseline finetune:` reads like any meta-training run's."""

from __future__ import annotations

from pathlib import Path

from leap_ray.checkpoint import (
    FINETUNE,
    checkpoint_encoder,
    encoder_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from leap_ray.config import Config, check_resumable, config_from_dict
from leap_ray.distributed.signals import Stopped, StopSignals, signal_name
from leap_ray.errors import ConfigError
from leap_ray.learners import check_learner, initial_encoder, learner_for
from leap_ray.logger import RunLogger
from leap_ray.runs import RunLock
from leap_ray.suites import training_games
from leap_ray.tasks import task_seed


def finetune(
    cfg: Config,
    steps_per_game: int,
    run_dir: Path,
    command: str = "finetune",
    resume: bool = False,
    resume_command: str | None = None,
) -> Path:
    """One encoder trained on the pool's games in turn (fresh heads and optimizer per game, the
    encoder carried over), from the same theta_0 that meta-training starts from. A checkpoint
    after every game records how many are done; `resume` continues after the last of them. On
    SIGINT/SIGTERM the game in progress is abandoned, the finished ones stay saved, and
    `resume_command` is printed (exit 130/143)."""
    with RunLock(run_dir), StopSignals() as stop:
        try:
            return _finetune(cfg, steps_per_game, run_dir, command, resume)
        except KeyboardInterrupt:
            saved = list_checkpoints(run_dir)
            progress = load_checkpoint(run_dir)["progress"] if saved else {"games_done": 0}
            again = resume_command or f"the same finetune command with --out {run_dir} --resume"
            print(
                f"\nstopped by {signal_name(stop.signum)}: games finished: "
                f"{progress['games_done']}"
                + (f", saved in {saved[-1]}" if saved else "")
                + f"\ncontinue with: {again}",
                flush=True,
            )
            raise Stopped(stop.signum) from None


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
            summary, encoder = learner_for(cfg).run_transfer_task(
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
            state = encoder_checkpoint(cfg, encoder, progress, kind=FINETUNE)
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
    progress = state["progress"]
    if state["kind"] != FINETUNE or "games_done" not in progress:
        raise ConfigError(f"{run_dir}: not a finetuning run that can be resumed")
    recorded = (progress["games"], progress["steps_per_game"])
    if recorded != (list(games), steps_per_game):
        raise ConfigError(
            f"{run_dir} finetuned games {recorded[0]} for {recorded[1]} env_steps each; "
            f"resuming asks for {list(games)} and {steps_per_game}: use the same settings"
        )
    return checkpoint_encoder(state, str(run_dir)), int(progress["games_done"])
