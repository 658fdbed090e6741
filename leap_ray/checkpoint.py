"""Checkpoints: written to a temporary file and renamed (a half-written file is never picked up),
read with `weights_only=True` (no code from a checkpoint is ever run)."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

PATTERN = re.compile(r"^checkpoint-(\d{6})\.pt$")
REQUIRED = ("meta_init", "meta_step", "ledger", "config", "torch_rng", "driver")


class CheckpointError(ValueError):
    """A one-line reason a checkpoint cannot be used."""


def init_digest(init: dict) -> str:
    """sha256 of an initialization's bytes in name order: equal digests, bit-identical inits."""
    digest = hashlib.sha256()
    for name in sorted(init):
        digest.update(name.encode())
        digest.update(torch.as_tensor(init[name]).detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: str | Path, state: dict, keep: int) -> Path:
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{state['meta_step']:06d}.pt"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PATTERN.match(p.name))


def load_checkpoint(path: str | Path) -> dict:
    """Load one checkpoint file, or the newest complete one of a run directory."""
    path = Path(path)
    if path.is_dir():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(f"no checkpoint found under {str(path)!r}")
        path = found[-1]
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(
            f"checkpoint {str(path)!r} is unreadable: {first_line[:160]}"
        ) from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the fields of a leap-ray checkpoint")
    return state
