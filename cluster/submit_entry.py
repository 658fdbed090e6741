"""Entry script for `ray submit`: run `python -m leap_ray train` on the cluster's head node.

    ray submit cluster/aws.yaml cluster/submit_entry.py -- --config configs/atari27.yaml

`ray submit` copies only this one file to the head (as ~/submit_entry.py) and runs it there with
the head's `python`. The project itself was synced by `ray up` (file_mounts) to ~/leap-ray, or
to $LEAP_RAY_HOME when that is set, with its virtualenv in .venv/ there. This script changes into
that directory and replaces itself with

    <project>/.venv/bin/python -m leap_ray train --address auto <your arguments>

(the python running this script when there is no .venv). `--address auto` joins the Ray cluster
already running on the head; it is added only when your arguments do not name an --address.

Options of this script itself (all other arguments go to `leap_ray train` unchanged):
  --dry-run   print the working directory and the command, then exit without running it
  -h, --help  print this help and exit (for train's own options: python -m leap_ray train -h)

Standard library only: it runs before (and independently of) the project's virtualenv.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

HOME_ENV = "LEAP_RAY_HOME"
DEFAULT_HOME = "~/leap-ray"


def project_dir() -> Path:
    """The synced project directory on this machine: $LEAP_RAY_HOME, else ~/leap-ray."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def build_command(home: Path, train_args: list[str]) -> list[str]:
    """The argv to exec: the project's venv python (if present) running `leap_ray train`."""
    venv_python = home / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.is_file() else sys.executable
    names_address = any(arg == "--address" or arg.startswith("--address=") for arg in train_args)
    address = [] if names_address else ["--address", "auto"]
    return [python, "-m", "leap_ray", "train", *address, *train_args]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        print(__doc__)
        return 0
    dry_run = "--dry-run" in args
    train_args = [arg for arg in args if arg != "--dry-run"]

    home = project_dir()
    if not (home / "leap_ray").is_dir():
        print(
            f"submit_entry: no leap_ray package under {home}; run `ray up <cluster yaml>` to sync "
            f"the project there, or set {HOME_ENV} to where it is",
            file=sys.stderr,
        )
        return 2

    command = build_command(home, train_args)
    if dry_run:
        print(f"cd {shlex.quote(str(home))}")
        print(shlex.join(command))
        return 0

    os.chdir(home)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)
    return 1  # not reached: execv replaces this process or raises OSError


if __name__ == "__main__":
    sys.exit(main())
