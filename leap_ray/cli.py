"""Command line: parse, load the config, dispatch. No argument parsing anywhere else."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from leap_ray.config import ConfigError, check_logdir, config_from_dict, load_config


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set meta.lr=0.01",
    )


def _add_config_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--config", required=required, help="YAML config, e.g. configs/local.yaml")
    _add_set(parser)
    parser.add_argument("--logdir", help="overrides logging.logdir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leap_ray",
        description="Meta-learn an Atari encoder initialization with Leap on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="meta-train the encoder initialization on Ray")
    _add_config_args(train, required=False)  # required unless --resume: checked in main
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from its newest checkpoint, with its recorded config; --config and "
        "--set may change only meta.meta_steps, meta.lr, a2c.device, a2c.torch_threads, "
        "env.env_threads, resources.* and logging.*",
    )
    train.add_argument(
        "--address",
        help="Ray address ('auto' joins a running cluster); "
        "default: RAY_ADDRESS, else a new local Ray",
    )
    task = sub.add_parser(
        "train-task", help="train one learner on one game (no Ray; RLlib's PPO: a local one)"
    )
    _add_config_args(task, required=False)
    task.add_argument("--game", required=True, help="Atari game (e.g. Pong) or gym id")
    task.add_argument("--steps", type=int, required=True, help="env_steps to train")
    task.add_argument("--seed", type=int, default=0)
    _add_evaluate_parsers(sub)
    return parser


def _add_evaluate_parsers(sub) -> None:
    ev = sub.add_parser(
        "evaluate", help="transfer: fresh learners on held-out games from each initialization"
    )
    ev.add_argument("--init", required=True, metavar="RUN_OR_CHECKPOINT", help="[NAME:]PATH")
    ev.add_argument("--games", help="comma-separated games or gym ids (default: env.held_out)")
    ev.add_argument("--steps", type=int, help="env_steps per run (default: steps_per_task)")
    ev.add_argument("--seeds", type=int, default=3, help="seeds 0..S-1, paired across methods")
    ev.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="random|NAME:CHECKPOINT",
        help="repeatable, e.g. --baseline random --baseline reptile:runs/reptile",
    )
    ev.add_argument("--config", help="YAML config (default: the --init checkpoint's config)")
    _add_set(ev)
    ev.add_argument("--out", help="output directory (default: <run>/eval-<timestamp>)")
    ev.add_argument("--address", help="Ray address; default: RAY_ADDRESS, else a new local Ray")
    ev.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped evaluation in --out (same arguments): finished runs are kept",
    )
    ft = sub.add_parser(
        "finetune", help="baseline: one encoder trained on the pool's games in turn (no Ray)"
    )
    _add_config_args(ft, required=True)
    ft.add_argument("--steps-per-game", type=int, required=True, help="env_steps per game")
    ft.add_argument("--out", help="run directory (default: <logdir>/finetune-<timestamp>)")
    ft.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped run in --out after its last finished game",
    )


def _evaluate(args: argparse.Namespace, command: str) -> int:
    from leap_ray.evaluate import evaluate, make_plan

    games = None
    if args.games is not None:
        games = [g.strip() for g in args.games.split(",") if g.strip()]
        if not games:
            raise ConfigError(f"--games: no game named in {args.games!r}")
    if args.resume and not args.out:
        raise ConfigError("--resume: name the stopped evaluation's directory with --out")
    plan = make_plan(
        args.init,
        args.baseline,
        games,
        args.steps,
        args.seeds,
        args.config,
        args.set,
        args.out,
        resume=args.resume,
    )
    evaluate(plan, address=args.address, command=command)
    return 0


def _finetune(args: argparse.Namespace, cfg, command: str) -> int:
    from pathlib import Path

    from leap_ray.finetune import finetune
    from leap_ray.tasks import fresh_run_dir, run_name

    if args.steps_per_game < 1:
        raise ConfigError(f"--steps-per-game: must be >= 1, got {args.steps_per_game}")
    if args.resume:
        if not args.out or not Path(args.out).is_dir():
            raise ConfigError("--resume: name the stopped run's directory with --out")
        finetune(cfg, args.steps_per_game, Path(args.out), command=command, resume=True)
        return 0
    out = fresh_run_dir(args.out or Path(cfg.logging.logdir) / run_name(cfg, "finetune-"), "--out")
    finetune(cfg, args.steps_per_game, out, command=command)
    return 0


def _local_ray_for_rllib(cfg) -> None:
    """The commands without Ray (finetune, train-task) run RLlib's PPO in a local Ray set up as
    train's (dashboard on loopback, no metrics endpoint), not in the one RLlib would start."""
    if cfg.learner == "rllib_ppo":
        from leap_ray.driver import connect

        connect(cfg, None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.command == "evaluate":
            return _evaluate(args, " ".join(argv))
        overrides = list(args.set) + ([f"logging.logdir={args.logdir}"] if args.logdir else [])
        if args.command == "train" and not args.resume and not args.config:
            raise ConfigError("train: --config is required (e.g. configs/local.yaml)")
        if args.command == "train" and args.resume and not args.config:
            from leap_ray.checkpoint import load_checkpoint  # the run's own settings

            cfg = config_from_dict(load_checkpoint(args.resume)["config"], overrides)
        else:
            cfg = load_config(args.config, overrides)
        check_logdir(cfg)
        if args.command == "finetune":
            _local_ray_for_rllib(cfg)
            return _finetune(args, cfg, " ".join(argv))
        if args.command == "train-task":
            if args.steps < 1:
                raise ConfigError(f"--steps: must be >= 1, got {args.steps}")
            from leap_ray.train_task import train_task

            _local_ray_for_rllib(cfg)
            train_task(cfg, args.game, args.steps, args.seed, cfg.logging.logdir)
            return 0
        from leap_ray.driver import train

        train(cfg, resume=args.resume, address=args.address)
        return 0
    except (ConfigError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # 128 + the signal, as a shell reports it
        return 128 + getattr(stop, "signum", signal.SIGINT)
