"""Why the meta-learned encoders lose units: how far each initialization moved its fc units'
pre-activations on the held-out probe frames, against a control moved as far in a random
direction (`controls.perturbed_like`, the `perturbed` method of the studies).

    python experiments/preactivation_shift.py RUN_DIR [--every N] [--markdown FILE]

For theta_0 and each checkpoint k (every N-th meta_step and the last): on the frames of random
play that `init_health` uses (the config's held-out games), every fc unit's pre-activation
shift, the mean over frames of z_k - z_0 in units of that unit's spread of z_0 across frames;
the median of |shift| over units, the share of units pushed down by more than 2 spreads, and
the dead units (never positive) for the checkpoint and for its control. A coherent (same-sign)
meta-gradient over a unit's fan-in moves its pre-activation by order fan_in x step; a random
direction of the same length by order sqrt(fan_in) x step. A2C learners with a conv encoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's leap_ray
from leap_ray.checkpoint import (  # noqa: E402
    checkpoint_encoder,
    list_checkpoints,
    load_checkpoint,
    meta_step_of,
)
from leap_ray.config import config_from_dict  # noqa: E402
from leap_ray.controls import perturbed_like  # noqa: E402
from leap_ray.curves import markdown_table  # noqa: E402
from leap_ray.learners import learner_for  # noqa: E402
from leap_ray.learners.a2c import encoder_holding  # noqa: E402


@torch.no_grad()
def preactivations(cfg, init: dict[str, np.ndarray], frames: np.ndarray) -> np.ndarray:
    """The fc layer's output before its ReLU, [frames, units]."""
    encoder = encoder_holding(cfg, init, tuple(frames.shape[1:]))
    return encoder.fc(encoder.trunk(torch.from_numpy(frames))).numpy()


def shift_row(name: str, z0: np.ndarray, z: np.ndarray) -> dict[str, str]:
    spread = z0.std(0) + 1e-8
    shift = (z - z0).mean(0) / spread
    return {
        "init": name,
        "median |shift| (spreads)": f"{np.median(np.abs(shift)):.2f}",
        "pushed down > 2 spreads": f"{(shift < -2).mean():.1%}",
        "dead units": f"{(z <= 0).all(0).mean():.1%}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a meta-training run directory")
    parser.add_argument("--every", type=int, default=4, help="meta_steps between rows")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}")
    paths = list_checkpoints(args.run)
    if not paths:
        print(f"error: no checkpoint under {args.run}", file=sys.stderr)
        return 2
    states = {meta_step_of(p): p for p in paths}
    if 0 not in states:
        print(f"error: {args.run} keeps no meta_step-0 checkpoint (theta_0)", file=sys.stderr)
        return 2
    first = load_checkpoint(states[0])
    cfg = config_from_dict(first["config"])
    if cfg.learner != "a2c" or cfg.a2c.encoder == "mlp":
        print(f"error: {args.run} is not an A2C run with a conv encoder", file=sys.stderr)
        return 2
    frames = learner_for(cfg).probe_observations(cfg, tuple(cfg.env.held_out))
    theta_0 = checkpoint_encoder(first, str(states[0]))
    z0 = preactivations(cfg, theta_0, frames)
    rows = [shift_row("theta_0", z0, z0)]
    last = max(states)
    for step in sorted(s for s in states if s and (s % args.every == 0 or s == last)):
        theta = checkpoint_encoder(load_checkpoint(states[step]), str(states[step]))
        rows.append(shift_row(f"meta_step {step}", z0, preactivations(cfg, theta, frames)))
        control = perturbed_like(theta_0, theta, seed=0)
        rows.append(shift_row("  its control", z0, preactivations(cfg, control, frames)))
    table = markdown_table(rows)
    print(table)
    if args.markdown:
        args.markdown.write_text(
            f"Pre-activation shift of the fc units on {len(frames)} held-out probe frames "
            f"({', '.join(cfg.env.held_out)}); experiments/preactivation_shift.py\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
