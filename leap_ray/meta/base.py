"""What Leap and Reptile share: an initialization over a named parameter subset, and the verbs
`init_task / to / update / take_partial / finish_task` that any training loop can call."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch
from torch import nn

from leap_ray.meta.partial import PartialMetaGradient, global_norm

TensorLike = torch.Tensor | np.ndarray


def as_float_tensor(value: TensorLike) -> torch.Tensor:
    """A float32 CPU copy (numpy arrays from Ray's object store are read-only)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32).clone()
    return torch.from_numpy(np.array(value, dtype=np.float32))


class PathMetaLearner:
    """Holds the initialization (`parameters()`, steppable by any torch optimizer) and reads a
    task's path from a module whose tracked parameters are named `prefix + name`."""

    def __init__(self, init: nn.Module | Mapping[str, TensorLike], *, prefix: str = "") -> None:
        named = dict(init.named_parameters()) if isinstance(init, nn.Module) else init
        if not named:
            raise ValueError("the initialization has no parameters to meta-learn")
        self.init: dict[str, nn.Parameter] = {
            name: nn.Parameter(as_float_tensor(value)) for name, value in named.items()
        }
        self.prefix = prefix
        self.version = 0
        self._anchor: list[torch.Tensor] | None = None
        self._segments = 0
        self._finished = False
        self._task_terms: list[list[torch.Tensor] | None] = [None, None]  # path, loss so far
        self.terms: dict[str, float] = {}  # the last finished task's (`term_norms`)

    # -- the initialization ------------------------------------------------------------------
    def parameters(self) -> Iterator[nn.Parameter]:
        return iter(self.init.values())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(p.shape) for name, p in self.init.items()}

    def load(self, values: Mapping[str, TensorLike], version: int) -> None:
        """Replace the initialization (e.g. with the parameter server's newest) and its version."""
        if values.keys() != self.init.keys():
            raise ValueError("initialization names differ from the tracked parameters")
        with torch.no_grad():
            for name, p in self.init.items():
                value = as_float_tensor(values[name])
                if tuple(value.shape) != tuple(p.shape):
                    raise ValueError(f"{name}: shape {tuple(value.shape)} != {tuple(p.shape)}")
                p.copy_(value)
        self.version = int(version)

    def to(self, module: nn.Module) -> None:
        """Load the initialization into the module's tracked parameters."""
        with torch.no_grad():
            for p, init in zip(self._tracked(module), self.init.values(), strict=True):
                p.copy_(init)

    def set_meta_gradient(self, partial: PartialMetaGradient) -> None:
        """Write the meta-batch mean into `.grad` so a stock torch optimizer can step it."""
        mean = partial.mean()
        for name, p in self.init.items():
            p.grad = mean[name].to(p.device, p.dtype).clone()

    # -- the task's path ---------------------------------------------------------------------
    def init_task(self) -> None:
        """Forget the previous task's path; call before training a new task."""
        self._anchor = None
        self._segments = 0
        self._finished = False
        self._task_terms = [None, None]

    def update(self, loss: torch.Tensor | float, module: nn.Module) -> None:
        raise NotImplementedError

    def take_partial(self, module: nn.Module) -> PartialMetaGradient:
        """Everything accumulated since the last take; the sum of all takes of a task is exact
        whenever they are taken (a take may pre-pay the parameter step of an open segment)."""
        theta = self._theta(module)
        path_part, loss_part = self._take_terms(theta)
        self._add_to_task_terms(path_part, loss_part)
        grads = path_part
        if loss_part is not None:
            torch._foreach_add_(grads, loss_part)
        partial = PartialMetaGradient(
            {
                name: g.detach().to("cpu", torch.float32).contiguous()  # travels as C arrays
                for name, g in zip(self.init, grads, strict=True)
            },
            self._segments,
            int(self._finished),
            self.version,
        )
        self._segments = 0
        self._finished = False
        return partial

    def finish_task(self, module: nn.Module, loss: torch.Tensor | float | None = None):
        """Close the path at theta_K (with the loss there, when known), take the remainder, and
        forget the path: the next `update` starts a new task's path from wherever the module
        then is, for Leap and Reptile alike (`init_task` in between is optional).

        A task counts once in the meta-batch mean, so a call with no open path (no `update`
        since `init_task` or the last `finish_task`) is refused rather than counted as a task
        with a zero meta-gradient, which would dilute the mean."""
        if not self._path_open():
            raise RuntimeError(
                "finish_task: no open path (no update since init_task or the last finish_task); "
                "a task without updates has no path to count"
            )
        self._close_path(module, loss)
        self._finished = True
        partial = self.take_partial(module)
        self.terms = self._term_norms()
        self.init_task()
        return partial

    def _add_to_task_terms(self, path_part, loss_part) -> None:
        for k, part in enumerate((path_part, loss_part)):
            if part is None:
                continue
            if self._task_terms[k] is None:
                self._task_terms[k] = [t.clone() for t in part]
            else:
                torch._foreach_add_(self._task_terms[k], part)

    def _term_norms(self) -> dict[str, float]:
        """The task's meta-gradient split into its path term (the d_theta part) and its loss
        term (the g_i part): their norms and the cosine between them (NaN if one is zero)."""
        path, loss = self._task_terms
        if path is None:
            return {}
        norms = {"meta/path_term_norm": global_norm(path)}
        if loss is not None:
            norms["meta/loss_term_norm"] = global_norm(loss)
            dot = sum(float((a * b).sum()) for a, b in zip(path, loss, strict=True))
            denominator = norms["meta/path_term_norm"] * norms["meta/loss_term_norm"]
            norms["meta/term_cosine"] = dot / denominator if denominator > 0 else float("nan")
        return norms

    # -- helpers for subclasses ---------------------------------------------------------------
    def _path_open(self) -> bool:
        return self._anchor is not None

    def _take_terms(self, theta: list[torch.Tensor]):
        """(path part, loss part or None) accumulated since the last take; their sum is the
        partial. The path part is a fresh tensor list the caller may add into."""
        raise NotImplementedError

    def _close_path(self, module: nn.Module, loss: torch.Tensor | float | None) -> None:
        raise NotImplementedError

    def _tracked(self, module: nn.Module) -> list[nn.Parameter]:
        params = dict(module.named_parameters())
        missing = [self.prefix + n for n in self.init if self.prefix + n not in params]
        if missing:
            raise KeyError(
                f"module lacks tracked parameters {missing[:3]} (prefix {self.prefix!r})"
            )
        return [params[self.prefix + name] for name in self.init]

    def _theta(self, module: nn.Module) -> list[torch.Tensor]:
        return [p.detach() for p in self._tracked(module)]

    def _telescoped_displacement(self, theta: list[torch.Tensor]) -> list[torch.Tensor]:
        """anchor - theta, then move the anchor to theta: sums of these telescope exactly."""
        if self._anchor is None:
            return [torch.zeros_like(t) for t in theta]
        displacement = torch._foreach_sub(self._anchor, theta)
        torch._foreach_copy_(self._anchor, theta)
        return displacement
