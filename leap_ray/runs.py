"""Run directories: where a run writes, that it writes only into a fresh directory (or its own,
on resume), that one process writes it at a time, and that a file in it is replaced whole."""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from leap_ray.config import Config, short_repr
from leap_ray.errors import ConfigError

MAX_RUN_NAME = 100  # characters: one path component, well under a file system's 255 bytes
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no separator, no "..", no leading dot


def check_run_name(cfg: Config) -> None:
    """`logging.run_name` names a new run directory: one safe path component of bounded length.
    Checked where a run is named, not when a recorded config is read, so runs named before the
    rule still resume, evaluate and export."""
    name = cfg.logging.run_name
    if name and (len(name) > MAX_RUN_NAME or not RUN_NAME.fullmatch(name)):
        raise ConfigError(
            f"logging.run_name: must be one path component of at most {MAX_RUN_NAME} "
            "letters, digits, '.', '_' or '-' (not starting with '.' or '-'), got "
            f"{short_repr(name)}"
        )


def run_name(cfg: Config, prefix: str = "") -> str:
    """`logging.run_name` (checked), else the prefix and a timestamp."""
    check_run_name(cfg)
    return cfg.logging.run_name or prefix + time.strftime("%Y%m%d-%H%M%S")


def check_logdir(cfg: Config, names_a_run: bool = True) -> None:
    """`logging.logdir` is a directory this process can create and write in, checked before
    Ray starts by doing it (as root, `os.access` says yes to nearly everything); what the check
    created is removed again, so a refused start leaves nothing behind. With `names_a_run`
    (not a resume: that run is named already) the run name too."""
    if names_a_run:
        check_run_name(cfg)
    logdir = Path(cfg.logging.logdir)
    if logdir.exists() and not logdir.is_dir():
        raise ConfigError(f"logging.logdir: {str(logdir)!r} is a file, not a directory")
    created = [p for p in (logdir, *logdir.parents) if not p.exists()]
    try:
        logdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=logdir):
            pass
    except OSError as error:
        raise ConfigError(
            f"logging.logdir: cannot write in {str(logdir)!r} ({error.strerror or error})"
        ) from None
    finally:
        for path in created:  # deepest first
            try:
                path.rmdir()
            except OSError:
                pass


def fresh_run_dir(path: str | Path, what: str, hint: str = "") -> Path:
    """A run never writes into another run's files: an existing non-empty directory is refused."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{what}: {str(path)!r} exists and is not empty{hint}")
    return path


def write_atomically(path: str | Path, *chunks: bytes | str) -> None:
    """Replace `path` with the chunks, whole or not at all: a reader (a resume, a report) never
    sees half a file, and a failed write (a full disk) leaves the old file and no temporary.
    The temporary is named for this process, so two writers of one path never share it."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk.encode() if isinstance(chunk, str) else chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RunLock:
    """One process writes a run directory at a time: an exclusive `flock` on `RUN/lock`, which
    the kernel releases when its holder exits however it ends (no stale locks). The file names
    the holder (pid, host, since) for the refusal message; it stays behind, empty, after a run."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(fd)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
            raise ConfigError(
                f"{self.path.parent} is in use by pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {since}: one process writes a run at a time"
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return self

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the lock
            self.fd = None
