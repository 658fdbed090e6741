"""Regenerates tests/data/bad_checkpoints/ (committed): files `train --resume`, `evaluate --init`
and `--baseline` must refuse cleanly. Most carry a valid checksum line, so that what is refused is
their content, not their packaging (a hostile file can always carry a matching checksum).

.venv/bin/python -m tests.data.make_bad_checkpoints   (from the repository root)
"""

import hashlib
import io
import os
import shutil
from pathlib import Path

import torch

from leap_ray.checkpoint import encoder_checkpoint
from leap_ray.config import load_config
from leap_ray.learners import initial_encoder
from leap_ray.meta import MetaInitialization
from leap_ray.suites import training_games

HERE = Path(__file__).resolve().parent / "bad_checkpoints"


class RunsCode:
    """Unpickling this would run a shell command; weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/leap_ray_checkpoint_pwned",))


def leap_checkpoint(init: dict) -> dict:
    return {
        "format": 1,
        "meta_init": {"init": init, "version": 1, "optimizer": {}},
        "meta_step": 1,
        "ledger": {},
        "config": {},
        "torch_rng": torch.get_rng_state(),
        "driver": {},
    }


def write(name: str, data: bytes) -> None:
    folder = HERE / name / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint-000001.pt").write_bytes(data)


def saved(obj) -> bytes:
    """torch.save bytes behind a matching checksum line, as leap_ray.checkpoint writes them."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    return (
        b"leap-ray checkpoint sha256="
        + hashlib.sha256(payload).hexdigest().encode()
        + b"\n"
        + payload
    )


def smoke_checkpoint() -> dict:
    """A real checkpoint of configs/smoke.yaml after one Adam meta-step."""
    cfg = load_config("configs/smoke.yaml")
    init = initial_encoder(cfg, training_games(cfg.env))
    meta_init = MetaInitialization(init, cfg.meta.optimizer, cfg.meta.lr)
    for p in meta_init.params.values():
        p.grad = torch.ones_like(p)
    meta_init.optimizer.step()
    state = encoder_checkpoint(cfg, init, {"next_task_id": 2, "env_steps": 0})
    state["meta_init"] = meta_init.state_dict()
    return state


def main() -> None:
    shutil.rmtree(HERE, ignore_errors=True)
    (HERE / "empty_run").mkdir(parents=True, exist_ok=True)
    (HERE / "empty_run" / ".keep").write_text("")
    write("garbage", bytes(range(256)) * 4)
    write("truncated", saved(leap_checkpoint({"w": torch.zeros(64, 64)}))[:700])
    write("not_leap_ray", saved({"model": torch.zeros(3)}))
    write("runs_code", saved({"meta_init": RunsCode()}))
    write("wrong_encoder", saved(leap_checkpoint({"convs.0.weight": torch.zeros(2)})))
    write("zero_length", b"")
    write("no_checksum", saved(smoke_checkpoint()).partition(b"\n")[2])  # a bare torch file
    flipped = bytearray(saved(smoke_checkpoint()))
    flipped[len(flipped) // 2] ^= 0x10
    write("flipped_byte", bytes(flipped))
    state = smoke_checkpoint()
    name = next(iter(state["meta_init"]["init"]))
    state["meta_init"]["init"][name][0] = float("nan")
    write("nan_init", saved(state))
    state = smoke_checkpoint()
    first = state["meta_init"]["optimizer"]["state"][0]
    first["exp_avg"] = first["exp_avg"].flatten()[:5].clone()
    write("wrong_optimizer_shape", saved(state))
    state = smoke_checkpoint()
    state["meta_init"]["optimizer"]["state"][1]["exp_avg_sq"][0] = float("inf")
    write("infinite_optimizer_state", saved(state))
    state = smoke_checkpoint()
    state["meta_init"]["optimizer"]["state"][0] = {"momentum_buffer": torch.zeros(3)}
    write("other_optimizer", saved(state))
    state = smoke_checkpoint()
    state["meta_init"]["init"][name] = "not a tensor"  # a forged file with a valid checksum
    write("forged_types", saved(state))
    # a half-written temporary file beside nothing complete is never picked up
    folder = HERE / "only_temporary" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint-000002.pt.tmp").write_bytes(saved(leap_checkpoint({}))[:300])


if __name__ == "__main__":
    main()
