"""The shared initialization and its meta-optimizer: one meta-step from a merged partial."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from leap_ray.meta.base import as_float_tensor
from leap_ray.meta.partial import PartialMetaGradient, global_norm

META_OPTIMIZERS = ("adam", "sgd")
OVERFLOW_RISK = 1e30
OPTIMIZER_STATE = {"adam": {"step", "exp_avg", "exp_avg_sq"}, "sgd": {"momentum_buffer"}}


class MetaInitialization:
    """Holds theta_0 (named CPU tensors), its version and the meta-optimizer's state."""

    def __init__(self, init: Mapping[str, np.ndarray | torch.Tensor], optimizer: str, lr: float):
        if optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta optimizer must be one of {META_OPTIMIZERS}, got {optimizer!r}")
        self.params = {name: nn.Parameter(as_float_tensor(value)) for name, value in init.items()}
        self.optimizer_name, self.lr = optimizer, lr
        opt_class = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self.optimizer = opt_class(list(self.params.values()), lr=lr, fused=True)
        self.version = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self.params.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: p.detach().numpy().copy() for name, p in self.params.items()}

    def step(self, partial: PartialMetaGradient) -> dict[str, float]:
        """Meta-batch mean into .grad, one optimizer step, version + 1. A step that would make
        the initialization non-finite (an absurd meta.lr) is undone: `meta/update_rejected` is
        1, the initialization, optimizer state and version stay as they were."""
        norm = partial.norm() / partial.num_tasks
        # From finite inputs an Adam step moves a weight by at most ~100 lr and an SGD step by
        # lr * |g| <= lr * norm, so only a step with lr * max(1, norm) near float32's range can
        # overflow: only then is the optimizer state copied to undo it (it costs ~30% of a step)
        risky = self.lr * max(1.0, norm) > OVERFLOW_RISK
        optimizer_before = copy.deepcopy(self.optimizer.state_dict()) if risky else None
        mean = partial.mean()
        params = [p.detach() for p in self.params.values()]
        before = [p.clone() for p in params]
        for name, p in self.params.items():
            p.grad = mean[name]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if risky and not all(bool(torch.isfinite(p).all()) for p in params):
            torch._foreach_copy_(params, before)
            self.optimizer.load_state_dict(optimizer_before)
            return {
                "meta/gradient_norm": norm,
                "meta/init_change": 0.0,
                "meta/update_rejected": 1.0,
            }
        self.version += 1
        torch._foreach_sub_(before, params)  # theta_old - theta_new
        change = global_norm(before)
        return {"meta/gradient_norm": norm, "meta/init_change": change, "meta/update_rejected": 0.0}

    def state_dict(self) -> dict:
        return {
            "init": {name: p.detach().clone() for name, p in self.params.items()},
            "version": self.version,
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Every tensor of `state` is checked against this template (shape, finiteness, the
        optimizer's own state keys) before anything is copied; the configured lr is kept, so a
        resumed run uses the meta.lr it was started with now."""
        check_meta_state(state, self.shapes(), self.optimizer_name)
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state["init"][name])
        self.version = int(state["version"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr


def check_meta_state(state: Mapping, shapes: Mapping[str, tuple[int, ...]], optimizer: str) -> None:
    """A checkpoint's meta-state (`MetaInitialization.state_dict()`) against the template of an
    initialization with these parameter shapes (in order) and this meta-optimizer: every tensor
    is checked (shape, finiteness, the optimizer's own state keys); a ValueError says which."""
    init = state.get("init")
    if not isinstance(init, Mapping) or type(state.get("version")) is not int:
        raise ValueError("checkpoint's meta-state lacks its initialization or version")
    shapes = dict(shapes)
    if dict(shapes) != {n: tuple(t.shape) for n, t in init.items()}:
        raise ValueError(
            "checkpoint holds an incompatible encoder: its parameter shapes differ from the "
            "configured encoder's"
        )
    opt = state.get("optimizer")
    groups = opt.get("param_groups") if isinstance(opt, Mapping) else None
    per_param = opt.get("state") if isinstance(opt, Mapping) else None
    if (
        not isinstance(groups, list)
        or len(groups) != 1
        or list(groups[0].get("params", ())) != list(range(len(shapes)))
        or not isinstance(per_param, Mapping)
    ):
        raise ValueError("checkpoint's meta-optimizer state does not fit this initialization")
    params = list(shapes.items())
    for index, values in per_param.items():
        if not isinstance(index, int) or not 0 <= index < len(params):
            raise ValueError(f"checkpoint's meta-optimizer state names parameter {index!r}")
        name, shape = params[index]
        unknown = set(values) - OPTIMIZER_STATE[optimizer]
        if unknown:
            raise ValueError(
                f"checkpoint's meta-optimizer state for {name} has {sorted(unknown)}: it was "
                f"not written by {optimizer} (meta.optimizer cannot change on resume)"
            )
        for key, value in values.items():
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"checkpoint's meta-optimizer {key} of {name} is no tensor")
            if value.dim() > 0 and tuple(value.shape) != shape:
                raise ValueError(
                    f"checkpoint's meta-optimizer {key} of {name} has shape "
                    f"{tuple(value.shape)}, the parameter {shape}"
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"checkpoint's meta-optimizer {key} of {name} is not finite")
