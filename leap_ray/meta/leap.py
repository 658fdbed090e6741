"""Leap's pull-forward meta-gradient (Flennerhag et al., ICLR 2019, arXiv 1812.01054, eq. 6-8).

For a task path theta_0 .. theta_K with losses l_i and task gradients g_i, each segment adds
    -(d_theta + d_l * g_i)                         (energy metric; the paper's 2 is in the meta lr)
    -(d_theta + d_l * g_i) / sqrt(|d_theta|^2 + d_l^2)   (length metric)
with d_theta = theta_{i+1} - theta_i, d_l = l_{i+1} - l_i, d_l -> -|d_l| under the stabilizer and
d_l = 0 without the loss term. The Jacobian of theta_i w.r.t. the initialization is taken as the
identity (appendix B). Unlike the authors' code we also add the last segment theta_{K-1} -> theta_K
(`finish_task`).

Two options change the manifold for noisy RL losses (both off by default: the paper's Leap):
- `loss_scale` lambda: the manifold (theta, lambda * l) instead of eq. 3's (theta, l), so the
  loss axis cannot outweigh the parameter path by orders of magnitude. A segment then adds
  -(d_theta + lambda * d * g_i) [/ sqrt(|d_theta|^2 + d^2)] with d = lambda * d_l (stabilized);
- `loss_smoothing` beta: the manifold's loss coordinate is an exponential moving average of the
  batch losses, l~_i = beta * l~_{i-1} + (1 - beta) * l_i (l~_0 = l_0), so d_l measures progress
  rather than the difference of two minibatches; g_i stays the batch gradient, the estimate of
  the expected loss's gradient at theta_i that l~ smooths.
`terms` holds, after `finish_task`, the norms of the task's path term (the d_theta part) and loss
term (the g_i part) and their cosine: what makes a loss term that swamps the path visible.

The path is the one the meta-learned parameters travel: with a `prefix` (the encoder of an
actor-critic), |d_theta| in the length metric is the norm over the tracked parameters only, as in
the authors' code, which knows only the parameters it is given. The per-task heads are not part
of the initialization, so their motion neither pulls it nor rescales its increments.

Cost per `update`: the energy metric never forms d_theta (the sum of d_theta telescopes to
theta_K - theta_0, settled in `take_partial`), so it touches only the stored gradient; the length
metric needs d_theta's norm each step and keeps theta_i.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from leap_ray.meta.base import PathMetaLearner, TensorLike

METRICS = ("length", "energy")


class Leap(PathMetaLearner):
    """Call `update(loss, module)` after `backward()` and before `optimizer.step()`.

    `borrow_grads=True` keeps the module's `.grad` tensors themselves as g_i instead of copies,
    which takes ~2/5 off the energy metric's per-update memory traffic. It is only for loops that
    replace `.grad` after `update` (`zero_grad(set_to_none=True)`, torch's default) and never
    change it in place (no in-place gradient clipping); a kept `.grad` is detected and refused.
    """

    def __init__(
        self,
        init: nn.Module | Mapping[str, TensorLike],
        *,
        metric: str = "length",
        loss_term: bool = True,
        stabilizer: bool = True,
        prefix: str = "",
        borrow_grads: bool = False,
        loss_scale: float = 1.0,
        loss_smoothing: float = 0.0,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if not (loss_scale > 0 and math.isfinite(loss_scale)):
            raise ValueError(f"loss_scale must be a positive number, got {loss_scale!r}")
        if not 0.0 <= loss_smoothing < 1.0:
            raise ValueError(f"loss_smoothing must be in [0, 1), got {loss_smoothing!r}")
        super().__init__(init, prefix=prefix)
        self.metric = metric
        self.loss_term = loss_term
        self.stabilizer = stabilizer
        self.borrow_grads = borrow_grads
        self.loss_scale = loss_scale
        self.loss_smoothing = loss_smoothing
        self.init_task()

    def init_task(self) -> None:
        super().init_task()
        self._acc: list[torch.Tensor] | None = None  # the loss term since the last take
        self._acc_path: list[torch.Tensor] | None = None  # length metric: the d_theta part
        self._prev_theta: list[torch.Tensor] | None = None  # length metric: theta_i
        self._prev_grad: list[torch.Tensor] | None = None  # loss term: g_i
        self._prev_loss: float | None = None  # the manifold's loss coordinate at theta_i

    def _smoothed(self, loss: float) -> float:
        if self._prev_loss is None or self.loss_smoothing == 0.0:
            return loss
        beta = self.loss_smoothing
        return beta * self._prev_loss + (1.0 - beta) * loss

    @torch.no_grad()
    def update(self, loss: torch.Tensor | float, module: nn.Module) -> None:
        """Record (theta_i, l_i, g_i) and close the segment theta_{i-1} -> theta_i."""
        theta = self._theta(module)
        raw = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
        loss_value = self._smoothed(raw)
        if self._prev_loss is None:
            self._start_path(theta)
        else:
            self._add_segment(theta, loss_value)
        if self.loss_term:
            self._store_grad(module)
        self._prev_loss = loss_value

    def _path_open(self) -> bool:
        return self._prev_loss is not None

    def _start_path(self, theta: list[torch.Tensor]) -> None:
        self._acc = [torch.zeros_like(t) for t in theta]
        if self.metric == "energy":
            self._anchor = [t.clone() for t in theta]
        else:
            self._prev_theta = [t.clone() for t in theta]
            self._acc_path = [torch.zeros_like(t) for t in theta]
        if self.loss_term:
            self._prev_grad = [torch.zeros_like(t) for t in theta]

    def _loss_delta(self, loss_next: float) -> float:
        """d = lambda * (l_{i+1} - l_i), stabilized: the segment's extent along the loss axis."""
        if not self.loss_term:
            return 0.0
        d_loss = self.loss_scale * (loss_next - self._prev_loss)
        return -abs(d_loss) if self.stabilizer else d_loss

    def _add_segment(self, theta_next: list[torch.Tensor], loss_next: float) -> None:
        d_loss = self._loss_delta(loss_next)
        weight = -self.loss_scale * d_loss  # of g_i: -lambda * d
        if self.metric == "length":
            neg_d_theta = self._prev_theta  # reused in place: theta_i - theta_{i+1}
            torch._foreach_sub_(neg_d_theta, theta_next)
            sq_norm = sum(float(n) ** 2 for n in torch._foreach_norm(neg_d_theta))
            length = math.sqrt(sq_norm + d_loss * d_loss)
            if length > 0.0:  # a zero step with a flat loss adds nothing (0/0 taken as 0)
                torch._foreach_add_(self._acc_path, neg_d_theta, alpha=1.0 / length)
                if d_loss != 0.0:
                    torch._foreach_add_(self._acc, self._prev_grad, alpha=weight / length)
            torch._foreach_copy_(self._prev_theta, theta_next)
        elif d_loss != 0.0:  # energy: the d_theta part telescopes, settled at take time
            torch._foreach_add_(self._acc, self._prev_grad, alpha=weight)
        self._segments += 1

    def _store_grad(self, module: nn.Module) -> None:
        if self.borrow_grads:
            self._borrow_grad(module)
            return
        stored, live = [], []
        for buffer, p in zip(self._prev_grad, self._tracked(module), strict=True):
            if p.grad is None:  # a parameter the loss does not reach: g_i = 0
                buffer.zero_()
            else:
                stored.append(buffer)
                live.append(p.grad.detach())
        if stored:
            torch._foreach_copy_(stored, live)

    def _borrow_grad(self, module: nn.Module) -> None:
        borrowed = []
        for previous, p in zip(self._prev_grad, self._tracked(module), strict=True):
            if p.grad is not None and p.grad.data_ptr() == previous.data_ptr():
                raise RuntimeError(
                    "Leap(borrow_grads=True): a .grad tensor was kept from the last update; "
                    "use zero_grad(set_to_none=True) or borrow_grads=False"
                )
            borrowed.append(torch.zeros_like(p) if p.grad is None else p.grad)
        self._prev_grad = borrowed

    @torch.no_grad()
    def _close_path(self, module: nn.Module, loss: torch.Tensor | float | None) -> None:
        if self._prev_loss is None:
            return
        loss_next = self._prev_loss if loss is None else self._smoothed(float(loss))
        self._add_segment(self._theta(module), loss_next)
        self._prev_loss = None

    @torch.no_grad()
    def _take_terms(self, theta: list[torch.Tensor]):
        if self._acc is None:
            return [torch.zeros_like(t) for t in theta], None
        loss_part = self._acc if self.loss_term else None
        if self.metric == "energy":
            path_part = self._telescoped_displacement(theta)
        else:
            path_part = self._acc_path
            self._acc_path = [torch.zeros_like(t) for t in theta]
        self._acc = [torch.zeros_like(t) for t in theta]
        return path_part, loss_part
