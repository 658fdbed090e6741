"""Command line: parse, load the config, dispatch. No argument parsing anywhere else."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import signal
import sys

from leap_ray.config import RESUMABLE, config_from_dict, load_config
from leap_ray.errors import ConfigError, LeapRayError
from leap_ray.runs import check_logdir

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's node address is 127.0.0.1


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
        "--set may change only " + ", ".join(f + "*" if f.endswith(".") else f for f in RESUMABLE),
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
    task.add_argument(
        "--seed", type=int, help="the learner's seed: sets meta.seed (default: the config's, 0)"
    )
    _add_evaluate_parsers(sub)
    sw = sub.add_parser(
        "sweep",
        help="a grid over config fields on Ray Tune, scored by transfer to validation tasks",
    )
    _add_config_args(sw, required=True)
    sw.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="SECTION.FIELD=V1,V2",
        help="values of one field (repeatable: the grid is every combination)",
    )
    sw.add_argument(
        "--validation",
        required=True,
        help="comma-separated pool tasks left out of every trial's meta-training and transferred "
        "to (never the held-out games)",
    )
    sw.add_argument("--transfer-steps", type=int, default=20_000, help="env_steps per transfer")
    sw.add_argument("--seeds", type=int, default=2, help="transfer seeds per validation task")
    sw.add_argument("--out", required=True, help="the sweep's directory")
    sw.add_argument("--resume", action="store_true", help="continue the stopped sweep in --out")
    sw.add_argument("--address", help="Ray address; default: RAY_ADDRESS, else a new local Ray")
    export = sub.add_parser(
        "export", help="write a run's encoder initialization as a safetensors file (no Ray)"
    )
    export.add_argument("run", metavar="RUN_DIR", help="a meta-training or finetuning run")
    export.add_argument("--meta-step", type=int, help="a kept checkpoint (default: the newest)")
    export.add_argument("--out", required=True, help="the .safetensors file to write")
    perturb = sub.add_parser(
        "perturb",
        help="the 'moved, not meta-learned' control: theta_0 plus a random change as long as "
        "the run's, per parameter tensor (no Ray)",
    )
    perturb.add_argument("run", metavar="RUN_DIR", help="a meta-training or finetuning run")
    perturb.add_argument("--meta-step", type=int, help="a kept checkpoint (default: the newest)")
    perturb.add_argument("--seed", type=int, default=0, help="of the random directions")
    perturb.add_argument("--out", required=True, help="the control's run directory (new)")
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
        help="continue the evaluation in --out (same arguments, or more --baseline): finished "
        "runs are kept",
    )
    ev.add_argument(
        "--video",
        action="store_true",
        help="record one game per (game, method) after seed 0's run: OUT/videos/*.gif and "
        "TensorBoard images (A2C learner, Atari)",
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


def _evaluate(args: argparse.Namespace, argv: list[str]) -> int:
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
        video=args.video,
    )
    evaluate(
        plan,
        address=args.address,
        command=" ".join(argv),
        resume_command=resume_command(argv, plan.out),
    )
    return 0


def _finetune(args: argparse.Namespace, cfg, argv: list[str]) -> int:
    from pathlib import Path

    from leap_ray.finetune import finetune
    from leap_ray.runs import fresh_run_dir, run_name

    if args.steps_per_game < 1:
        raise ConfigError(f"--steps-per-game: must be >= 1, got {args.steps_per_game}")
    if args.resume:
        if not args.out or not Path(args.out).is_dir():
            raise ConfigError("--resume: name the stopped run's directory with --out")
        out = Path(args.out)
    else:
        out = Path(args.out or Path(cfg.logging.logdir) / run_name(cfg, "finetune-"))
        fresh_run_dir(out, "--out")
    command, again = " ".join(argv), resume_command(argv, out)
    finetune(cfg, args.steps_per_game, out, command, args.resume, resume_command=again)
    return 0


@contextlib.contextmanager
def _local_ray_if_needed(cfg):
    """The commands without Ray actors (finetune, train-task) run a learner that needs Ray
    (RLlib's PPO) in a local Ray set up as train's (dashboard on loopback, no metrics
    endpoint), not in the one RLlib would start; it is shut down however the command ends."""
    from leap_ray.learners import learner_for

    if not learner_for(cfg).needs_ray:
        yield
        return
    from leap_ray.distributed.launch import connect, disconnect

    started = connect(cfg, None)
    try:
        yield
    finally:
        if started:
            disconnect()


def resume_command(argv: list[str], out) -> str:
    """The command line that continues a stopped `evaluate` / `finetune`: the same arguments,
    with `--out OUT --resume`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--resume" and not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["python", "-m", "leap_ray", *kept, "--out", str(out), "--resume"])


def _sweep(args: argparse.Namespace, argv: list[str]) -> int:
    from leap_ray.sweep import make_plan, sweep

    overrides = _overrides(args)
    validation = [g.strip() for g in args.validation.split(",") if g.strip()]
    plan = make_plan(
        args.config,
        overrides,
        args.grid,
        validation,
        args.transfer_steps,
        args.seeds,
        args.out,
        args.resume,
    )
    sweep(plan, args.resume, args.address, resume_command(argv, plan.out))
    return 0


def _overrides(args: argparse.Namespace) -> list[str]:
    """--set, and --logdir as the logging.logdir it stands for."""
    return list(args.set) + ([f"logging.logdir={args.logdir}"] if args.logdir else [])


def _joins_a_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "address", None) or os.environ.get("RAY_ADDRESS"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not _joins_a_cluster(args) and "ray" not in sys.modules:
        # A local Ray of this process then binds every server to loopback (127.0.0.1 as the
        # node's address). Ray reads this when it is first imported, so it is set before that
        # (a process that imported Ray already, a test session, keeps its setting); joining a
        # cluster keeps the node's own address (docs/faults.md, M)
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        return _run(args, argv)
    except LeapRayError as error:  # expected: one line; anything else keeps its traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # 128 + the signal, as a shell reports it
        return 128 + getattr(stop, "signum", signal.SIGINT)


def _run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "evaluate":
        return _evaluate(args, argv)
    if args.command == "sweep":
        return _sweep(args, argv)
    if args.command == "export":
        from leap_ray.export import export

        export(args.run, args.out, args.meta_step)
        return 0
    if args.command == "perturb":
        from leap_ray.controls import perturb

        perturb(args.run, args.out, args.meta_step, args.seed)
        return 0
    overrides = _overrides(args)
    if args.command == "train-task" and args.seed is not None:
        overrides.append(f"meta.seed={args.seed}")  # validated as the config field it sets
    if args.command == "train" and not args.resume and not args.config:
        raise ConfigError("train: --config is required (e.g. configs/local.yaml)")
    if args.command == "train" and args.resume and not args.config:
        from leap_ray.checkpoint import load_checkpoint  # the run's own settings

        cfg = config_from_dict(load_checkpoint(args.resume)["config"], overrides)
    else:
        cfg = load_config(args.config, overrides)
    resuming = args.command in ("train", "finetune") and args.resume
    check_logdir(cfg, names_a_run=not resuming)
    if args.command == "finetune":
        with _local_ray_if_needed(cfg):
            return _finetune(args, cfg, argv)
    if args.command == "train-task":
        if args.steps < 1:
            raise ConfigError(f"--steps: must be >= 1, got {args.steps}")
        from leap_ray.train_task import train_task

        with _local_ray_if_needed(cfg):
            train_task(cfg, args.game, args.steps, cfg.meta.seed, cfg.logging.logdir)
        return 0
    from leap_ray.driver import train

    train(cfg, resume=args.resume, address=args.address)
    return 0
