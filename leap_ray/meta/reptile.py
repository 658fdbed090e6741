"""Reptile (Nichol et al., 2018) as the comparison baseline: the meta-gradient of a task is
theta_0 - theta_K, produced as the same partial type as Leap so the system can swap them."""

from __future__ import annotations

import torch
from torch import nn

from leap_ray.meta.base import PathMetaLearner


class Reptile(PathMetaLearner):
    """Stores theta_0 at a task's first update; partials are anchor - theta and telescope to
    theta_0 - theta_K. `finish_task` forgets the anchor, so the next update starts a new task."""

    @torch.no_grad()
    def update(self, loss: torch.Tensor | float, module: nn.Module) -> None:
        if self._anchor is None:
            self._anchor = [t.clone() for t in self._theta(module)]
        else:
            self._segments += 1

    def _close_path(self, module: nn.Module, loss: torch.Tensor | float | None) -> None:
        if self._anchor is not None:
            self._segments += 1

    @torch.no_grad()
    def _take_terms(self, theta: list[torch.Tensor]):
        return self._telescoped_displacement(theta), None
