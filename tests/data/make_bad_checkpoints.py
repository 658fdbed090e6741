"""Regenerates tests/data/bad_checkpoints/ (committed): files `--resume` must refuse cleanly.

python tests/data/make_bad_checkpoints.py
"""

import io
import os
from pathlib import Path

import torch

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
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def main() -> None:
    (HERE / "empty_run").mkdir(parents=True, exist_ok=True)
    (HERE / "empty_run" / ".keep").write_text("")
    write("garbage", bytes(range(256)) * 4)
    write("truncated", saved(leap_checkpoint({"w": torch.zeros(64, 64)}))[:700])
    write("not_leap_ray", saved({"model": torch.zeros(3)}))
    write("runs_code", saved({"meta_init": RunsCode()}))
    write("wrong_encoder", saved(leap_checkpoint({"convs.0.weight": torch.zeros(2)})))
    # a half-written temporary file beside nothing complete is never picked up
    folder = HERE / "only_temporary" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoint-000002.pt.tmp").write_bytes(saved(leap_checkpoint({}))[:300])


if __name__ == "__main__":
    main()
