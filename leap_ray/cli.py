"""Command line: parse, load the config, dispatch. No argument parsing anywhere else."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m leap_ray",
        description="Meta-learn an Atari encoder initialization with Leap on Ray.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser("train", help="meta-train the encoder initialization on Ray")
    train.add_argument("--config", required=True, help="YAML config, e.g. configs/local.yaml")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"leap_ray: '{args.command}' is not built yet (see the open issues)", file=sys.stderr)
    return 2
