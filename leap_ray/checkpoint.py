"""Checkpoints: written to a temporary file and renamed (a half-written file is never picked up),
read with `weights_only=True` (no code from a checkpoint is ever run). A file is one header line
holding the SHA-256 of the torch payload that follows it, checked on load: a flipped byte, a
truncated copy or a foreign file is a one-line error naming the file, never a silent load.

One builder (`checkpoint_state`) makes the state of every run kind: a meta-training run (the
parameter server saves it, its driver's progress under `progress`) and a finetuning run (an
encoder and how many games are done). The kind is recorded as `kind`. Checkpoints of format 1
(kind told apart by a `driver` key) load as their format-2 equivalent."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from leap_ray.config import Config
from leap_ray.errors import CheckpointError, ConfigError
from leap_ray.meta import MetaInitialization, check_meta_state
from leap_ray.runs import write_atomically

PATTERN = re.compile(r"^checkpoint-(\d{6})\.pt$")
FORMAT = 2
REQUIRED = ("kind", "meta_init", "meta_step", "ledger", "config", "torch_rng", "progress")
REQUIRED_V1 = ("meta_init", "meta_step", "ledger", "config", "torch_rng", "driver")
MAGIC = b"leap-ray checkpoint sha256="  # then 64 hex digits and a newline
META_TRAINING, FINETUNE = "meta_training", "finetune"  # the run kinds
KINDS = (META_TRAINING, FINETUNE)


def checkpoint_state(
    kind: str, meta_init: dict, meta_step: int, ledger: dict, config: dict, progress: Mapping
) -> dict:
    """The state of a checkpoint of run kind `kind`: the meta-state
    (`MetaInitialization.state_dict()`), the ledger's records, the config, torch's RNG state
    and the run's own `progress` (meta-training: the driver's task bookkeeping; finetuning:
    the games done)."""
    if kind not in KINDS:
        raise ValueError(f"checkpoint kind must be one of {KINDS}, got {kind!r}")
    return {
        "format": FORMAT,
        "kind": kind,
        "meta_init": meta_init,
        "meta_step": meta_step,
        "ledger": ledger,
        "config": config,
        "torch_rng": torch.get_rng_state(),
        "progress": dict(progress),
    }


def encoder_checkpoint(
    cfg: Config, init: Mapping, progress: Mapping, kind: str = META_TRAINING
) -> dict:
    """A checkpoint holding only an encoder (a fresh meta-optimizer, meta_step 0):
    `load_checkpoint` and `evaluate` take it like any other."""
    meta_init = MetaInitialization(init, cfg.meta.optimizer, cfg.meta.lr)
    return checkpoint_state(kind, meta_init.state_dict(), 0, {}, cfg.to_dict(), progress)


def checkpoint_encoder(state: Mapping, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The initialization a checkpoint holds, as numpy arrays, once its whole meta-state
    (initialization and meta-optimizer state) has passed `check_meta_state` against its own
    parameter shapes and its config's meta-optimizer."""
    meta = state["config"].get("meta", {}) if isinstance(state["config"], Mapping) else {}
    init = state["meta_init"]["init"]
    shapes = {name: tuple(t.shape) for name, t in init.items()}
    try:
        check_meta_state(state["meta_init"], shapes, meta.get("optimizer", "adam"))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{source}: unusable meta-state: {error}") from None
    return {name: t.numpy().copy() for name, t in init.items()}


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
    try:
        header = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n"
        write_atomically(path, header, payload)
    except OSError as error:
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


def meta_step_of(path: str | Path) -> int:
    """The meta_step a checkpoint file's name carries."""
    return int(PATTERN.match(Path(path).name).group(1))


def pick_checkpoint(run_dir: str | Path, meta_step: int | None, command: str) -> Path:
    """The run's newest checkpoint, or the one of `meta_step`; one-line errors that name
    `command` otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{command}: {str(run_dir)!r} is not a run directory")
    found = list_checkpoints(run_dir)
    if not found:
        raise ConfigError(f"{command}: {str(run_dir)!r} holds no checkpoint")
    if meta_step is None:
        return found[-1]
    path = checkpoint_dir(run_dir) / f"checkpoint-{meta_step:06d}.pt"
    if path not in found:
        kept = ", ".join(str(meta_step_of(p)) for p in found)
        raise ConfigError(
            f"{command}: {str(run_dir)!r} has no checkpoint of meta_step {meta_step} (kept: {kept})"
        )
    return path


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
    state = _as_current_format(state)
    if not isinstance(state, dict) or any(key not in state for key in REQUIRED):
        raise CheckpointError(f"checkpoint {name} lacks the fields of a leap-ray checkpoint")
    meta_init = state["meta_init"]
    if (
        not isinstance(meta_init, dict)
        or not isinstance(meta_init.get("init"), dict)
        or not all(isinstance(v, torch.Tensor) for v in meta_init["init"].values())
        or not isinstance(state["progress"], dict)
        or not isinstance(state["config"], dict)
        or state["kind"] not in KINDS
    ):
        raise CheckpointError(f"checkpoint {name} lacks the fields of a leap-ray checkpoint")
    check_finite(meta_init["init"], f"checkpoint {name} is unusable")
    return state


def _as_current_format(state):
    """A format-1 state (its run kind told apart by `"finetune" in state["driver"]`) as the
    format-2 state it stands for; anything else as it is."""
    if not isinstance(state, dict) or "kind" in state or "driver" not in state:
        return state
    if any(key not in state for key in REQUIRED_V1) or not isinstance(state["driver"], dict):
        return state  # refused by the field checks
    driver = state.pop("driver")
    finetune = driver.get("finetune")
    state["kind"] = FINETUNE if finetune is not None else META_TRAINING
    state["progress"] = finetune if isinstance(finetune, dict) else driver
    state["format"] = FORMAT
    return state
