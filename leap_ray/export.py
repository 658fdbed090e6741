"""`export`: a run's encoder initialization as a `safetensors` file that any library can read
(plain PyTorch, SB3, RLlib; README "Use the initialization elsewhere"). Tensors are named as the
encoder's own `state_dict` names them; the metadata (strings only, nothing executable) says how
to rebuild the network and where the weights came from. The project's own checkpoints keep their
format and checksum; this is a copy for the outside."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from leap_ray.checkpoint import (
    FINETUNE,
    checkpoint_encoder,
    init_digest,
    load_checkpoint,
    pick_checkpoint,
)
from leap_ray.config import config_from_dict
from leap_ray.errors import ConfigError
from leap_ray.learners import learner_for
from leap_ray.logger import git_sha
from leap_ray.runs import write_atomically
from leap_ray.suites import suite_for, training_games

FORMAT = "leap-ray-encoder/1"


def export_metadata(state: dict, run_dir: Path, init: dict[str, np.ndarray]) -> dict[str, str]:
    """What a user needs to rebuild the network, and the weights' provenance (all strings, as
    safetensors stores them)."""
    cfg = config_from_dict(state["config"])
    env = cfg.env
    recorded = run_dir / "meta.json"
    try:
        sha = json.loads(recorded.read_text()).get("git_sha", "unknown")
    except (OSError, ValueError):
        sha = git_sha()
    learner = learner_for(cfg)
    meta = {
        "format": FORMAT,
        "learner": learner.name,
        **learner.encoder_metadata(cfg, training_games(env)[0]),
        "suite": suite_for(env).name,
        "frame_stack": str(env.frame_stack),
        "grayscale": json.dumps(env.grayscale),
        "run": str(run_dir.resolve()),
        "run_kind": state["kind"],
        "meta_step": str(int(state["meta_step"])),
        "algorithm": "finetune" if state["kind"] == FINETUNE else cfg.meta.algorithm,
        "git_sha": sha,
        "tensors_sha256": init_digest(init),
        "config": json.dumps(state["config"], sort_keys=True),
    }
    return meta


def export(run_dir: str | Path, out: str | Path, meta_step: int | None = None) -> Path:
    """Write the initialization of `run_dir` (newest checkpoint, or `meta_step`'s) to `out`."""
    from safetensors.torch import save

    out = Path(out)
    if out.exists():
        raise ConfigError(f"--out: {str(out)!r} exists; name a new file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out: the folder {str(out.parent)!r} does not exist")
    path = pick_checkpoint(run_dir, meta_step, "export")
    state = load_checkpoint(path)
    init = checkpoint_encoder(state, str(path))
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in init.items()}
    metadata = export_metadata(state, Path(run_dir), init)
    try:
        write_atomically(out, save(tensors, metadata=metadata))
    except OSError as error:
        raise ConfigError(f"--out: cannot write {str(out)!r} ({error.strerror or error})") from None
    print(
        f"exported {len(tensors)} tensors of {path.name} ({metadata['run_kind']}, meta_step "
        f"{metadata['meta_step']}, sha256 {metadata['tensors_sha256'][:16]}...) to {out}"
    )
    return out
