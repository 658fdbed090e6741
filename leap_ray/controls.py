"""`perturb`: the "moved, not meta-learned" control of a transfer comparison (EXPERIMENTS.md).
A meta-trained encoder differs from a random one in two ways: where it went and how far it
went from theta_0. This control keeps only the second: theta_0 plus, per parameter tensor, a
uniformly random direction as long as the run's change of that tensor. If it transfers as well
as the run's own initialization, the direction was not what helped (or hurt).

    python -m leap_ray perturb RUN_DIR [--meta-step N] [--seed S] --out OUT
    python -m leap_ray evaluate --init leap:RUN_DIR --baseline perturbed:OUT --baseline random
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leap_ray.checkpoint import (
    checkpoint_encoder,
    encoder_checkpoint,
    load_checkpoint,
    pick_checkpoint,
    save_checkpoint,
)
from leap_ray.config import config_from_dict
from leap_ray.errors import ConfigError
from leap_ray.learners import initial_encoder, shape_mismatch
from leap_ray.runs import fresh_run_dir
from leap_ray.suites import training_games


def change_norms(theta_0: dict[str, np.ndarray], theta: dict[str, np.ndarray]) -> dict[str, float]:
    """|theta - theta_0| per parameter tensor, in sorted name order."""
    return {name: float(np.linalg.norm(theta[name] - theta_0[name])) for name in sorted(theta_0)}


def perturbed_like(
    theta_0: dict[str, np.ndarray], theta: dict[str, np.ndarray], seed: int
) -> dict[str, np.ndarray]:
    """theta_0 + |theta - theta_0| * u per parameter tensor, u a uniformly random unit vector
    (a normalised Gaussian), drawn in sorted name order from `seed`."""
    rng = np.random.default_rng(seed)
    moved = {}
    for name, length in change_norms(theta_0, theta).items():
        start = np.asarray(theta_0[name], dtype=np.float64)
        direction = rng.standard_normal(start.shape)
        direction /= np.linalg.norm(direction)
        moved[name] = (start + length * direction).astype(theta_0[name].dtype)
    return moved


def perturb(run_dir: str | Path, out: str | Path, meta_step: int | None = None, seed: int = 0):
    """Write the control of `run_dir` (its newest checkpoint, or `meta_step`'s) as the run
    directory `out`, which `evaluate` takes like any other; `out/perturb.json` records the
    per-parameter lengths and where they came from."""
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    out = fresh_run_dir(out, "--out")
    source = pick_checkpoint(run_dir, meta_step, "perturb")
    state = load_checkpoint(source)
    cfg = config_from_dict(state["config"])
    theta = checkpoint_encoder(state, str(source))
    theta_0 = initial_encoder(cfg, training_games(cfg.env))  # where the run started (meta.seed)
    shapes = {name: np.shape(value) for name, value in theta_0.items()}
    bad = shape_mismatch(shapes, {name: np.shape(value) for name, value in theta.items()})
    if bad is not None:
        raise ConfigError(f"perturb: {source} does not fit its own config's encoder: {bad}")
    moved = perturbed_like(theta_0, theta, seed)
    lengths = change_norms(theta_0, theta)
    record = {
        "control": "perturbed",
        "source": str(Path(source).resolve()),
        "source_meta_step": int(state["meta_step"]),
        "seed": seed,
        "change_norm": lengths,  # |theta - theta_0| per parameter: the control's as well
    }
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, encoder_checkpoint(cfg, moved, record), keep=1)
    (out / "perturb.json").write_text(json.dumps(record, indent=1) + "\n")
    total = float(np.sqrt(sum(v**2 for v in lengths.values())))
    print(
        f"perturbed theta_0 by the change of {source.name} (|change| {total:.4g} over "
        f"{len(lengths)} tensors, seed {seed}): {out}"
    )
    return out
