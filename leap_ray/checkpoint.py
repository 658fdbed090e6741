"""Checkpoints: written to a temporary file and renamed (a half-written file is never picked up),
read with `weights_only=True` (no code from a checkpoint is ever run). A file is one header line
holding the SHA-256 of the torch payload that follows it, checked on load: a flipped byte, a
truncated copy or a foreign file is a one-line error naming the file, never a silent load."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import zipfile
from pathlib import Path

import torch

PATTERN = re.compile(r"^checkpoint-(\d{6})\.pt$")
REQUIRED = ("meta_init", "meta_step", "ledger", "config", "torch_rng", "driver")
MAGIC = b"leap-ray checkpoint sha256="  # then 64 hex digits and a newline


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
    """Write `state` (refused if its initialization is not finite); on any write error (a full
    disk) the temporary file is removed and the previous checkpoints stay as they were."""
    check_finite(state["meta_init"]["init"], "refusing to save the initialization")
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{state['meta_step']:06d}.pt"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n")
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {str(path)!r}: {error.strerror or error}; "
            "the previous checkpoints are intact"
        ) from None
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def check_finite(init: dict, what: str) -> None:
    for name, value in init.items():
        if not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise CheckpointError(f"{what}: {name} holds NaN or infinite values")


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
    name = repr(str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"checkpoint {name} is unreadable: {error.strerror}") from None
    header, newline, payload = data.partition(b"\n")
    if not header.startswith(MAGIC) or not newline:
        raise CheckpointError(f"checkpoint {name} is not a leap-ray checkpoint (no checksum line)")
    if hashlib.sha256(payload).hexdigest().encode() != header[len(MAGIC) :]:
        raise CheckpointError(
            f"checkpoint {name} is corrupt: its SHA-256 differs from the one written with it"
        )
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(f"checkpoint {name} is unreadable: {first_line[:160]}") from None
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"checkpoint {name} lacks the fields of a leap-ray checkpoint")
    meta_init = state["meta_init"]
    if (
        not isinstance(meta_init, dict)
        or not isinstance(meta_init.get("init"), dict)
        or not all(isinstance(v, torch.Tensor) for v in meta_init["init"].values())
        or not isinstance(state["driver"], dict)
        or not isinstance(state["config"], dict)
    ):
        raise CheckpointError(f"checkpoint {name} lacks the fields of a leap-ray checkpoint")
    check_finite(meta_init["init"], f"checkpoint {name} is unusable")
    return state
