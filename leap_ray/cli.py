"""Command line: parse, load the config, dispatch. No argument parsing anywhere else."""

from __future__ import annotations

import argparse
import logging
import sys

from leap_ray.config import ConfigError, load_config


def _add_config_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--config", required=required, help="YAML config, e.g. configs/local.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="override one config field (repeatable), e.g. --set meta.lr=0.01",
    )
    parser.add_argument("--logdir", help="overrides logging.logdir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leap_ray",
        description="Meta-learn an Atari encoder initialization with Leap on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="meta-train the encoder initialization on Ray")
    _add_config_args(train, required=True)
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument(
        "--address",
        help="Ray address ('auto' joins a running cluster); "
        "default: RAY_ADDRESS, else a new local Ray",
    )
    task = sub.add_parser("train-task", help="train one A2C learner on one game (no Ray)")
    _add_config_args(task, required=False)
    task.add_argument("--game", required=True, help="Atari game (e.g. Pong) or gym id")
    task.add_argument("--steps", type=int, required=True, help="env_steps to train")
    task.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        overrides = list(args.set) + ([f"logging.logdir={args.logdir}"] if args.logdir else [])
        cfg = load_config(args.config, overrides)
        if args.command == "train-task":
            if args.steps < 1:
                raise ConfigError(f"--steps: must be >= 1, got {args.steps}")
            from leap_ray.train_task import train_task

            train_task(cfg, args.game, args.steps, args.seed, cfg.logging.logdir)
            return 0
        from leap_ray.driver import train

        train(cfg, resume=args.resume, address=args.address)
        return 0
    except (ConfigError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
