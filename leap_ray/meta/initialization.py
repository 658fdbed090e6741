"""The shared initialization and its meta-optimizer: one meta-step from a merged partial."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from leap_ray.meta.base import as_float_tensor
from leap_ray.meta.partial import PartialMetaGradient, global_norm

META_OPTIMIZERS = ("adam", "sgd")


class MetaInitialization:
    """Holds theta_0 (named CPU tensors), its version and the meta-optimizer's state."""

    def __init__(self, init: Mapping[str, np.ndarray | torch.Tensor], optimizer: str, lr: float):
        if optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta optimizer must be one of {META_OPTIMIZERS}, got {optimizer!r}")
        self.params = {name: nn.Parameter(as_float_tensor(value)) for name, value in init.items()}
        opt_class = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self.optimizer = opt_class(list(self.params.values()), lr=lr, fused=True)
        self.version = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self.params.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy().copy() for name, p in self.params.items()}

    def step(self, partial: PartialMetaGradient) -> dict[str, float]:
        """Meta-batch mean into .grad, one optimizer step, version + 1."""
        mean = partial.mean()
        params = [p.detach() for p in self.params.values()]
        before = [p.clone() for p in params]
        for name, p in self.params.items():
            p.grad = mean[name]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.version += 1
        torch._foreach_sub_(before, params)  # theta_old - theta_new
        change = global_norm(before)
        return {
            "meta/gradient_norm": partial.norm() / partial.num_tasks,
            "meta/init_change": change,
        }

    def state_dict(self) -> dict:
        return {
            "init": {name: p.detach().clone() for name, p in self.params.items()},
            "version": self.version,
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        init = state["init"]
        if dict(self.shapes()) != {n: tuple(t.shape) for n, t in init.items()}:
            raise ValueError(
                "checkpoint holds an incompatible encoder: its parameter shapes differ from the "
                "configured encoder's"
            )
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(init[name])
        self.version = int(state["version"])
        self.optimizer.load_state_dict(state["optimizer"])
