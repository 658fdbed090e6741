"""The partial meta-gradient: the unit of work that flows from a task to the meta-optimizer.

A partial is a sum of per-segment increments (Leap) or parameter displacements (Reptile) over
some segments of some tasks, all computed from one initialization version. Sums are exact to
merge, so a task may stream many partials and a server may merge them in any order; the
meta-batch mean divides by the number of *finished* tasks the merged partial contains.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PartialMetaGradient:
    """Summed meta-gradient increments; `num_tasks` counts tasks whose path is closed."""

    grads: Mapping[str, torch.Tensor]  # name -> CPU float32 tensor shaped like the parameter
    num_segments: int
    num_tasks: int
    init_version: int

    def merge(self, other: PartialMetaGradient) -> PartialMetaGradient:
        """Exact sum of two partials from the same initialization version."""
        if other.init_version != self.init_version:
            raise ValueError(
                f"cannot merge partials of init versions {self.init_version} and "
                f"{other.init_version}: they are gradients at different points"
            )
        if other.grads.keys() != self.grads.keys():
            raise ValueError("cannot merge partials over different parameter names")
        grads = {name: g + other.grads[name] for name, g in self.grads.items()}
        return PartialMetaGradient(
            grads,
            self.num_segments + other.num_segments,
            self.num_tasks + other.num_tasks,
            self.init_version,
        )

    @staticmethod
    def sum(partials: Iterable[PartialMetaGradient]) -> PartialMetaGradient:
        """Merge many partials; raises on an empty iterable."""
        iterator = iter(partials)
        try:
            total = next(iterator)
        except StopIteration:
            raise ValueError("cannot sum zero partial meta-gradients") from None
        for partial in iterator:
            total = total.merge(partial)
        return total

    @staticmethod
    def zeros(shapes: Mapping[str, tuple[int, ...]], init_version: int) -> PartialMetaGradient:
        grads = {name: torch.zeros(shape) for name, shape in shapes.items()}
        return PartialMetaGradient(grads, 0, 0, init_version)

    def mean(self) -> dict[str, torch.Tensor]:
        """Meta-batch mean: the summed increments divided by the number of finished tasks."""
        if self.num_tasks < 1:
            raise ValueError("a meta-gradient mean needs at least one finished task")
        return {name: g / self.num_tasks for name, g in self.grads.items()}

    def norm(self) -> float:
        return math.sqrt(sum(float(g.double().pow(2).sum()) for g in self.grads.values()))

    def is_finite(self) -> bool:
        return all(bool(torch.isfinite(g).all()) for g in self.grads.values())

    def to_numpy(self) -> dict:
        """Plain data for transport (numpy arrays travel zero-copy through Ray's object store)."""
        return {
            "grads": {name: g.numpy() for name, g in self.grads.items()},
            "num_segments": self.num_segments,
            "num_tasks": self.num_tasks,
            "init_version": self.init_version,
        }

    @staticmethod
    def from_numpy(payload: Mapping) -> PartialMetaGradient:
        grads = {
            name: torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
            for name, array in payload["grads"].items()
        }
        return PartialMetaGradient(
            grads,
            int(payload["num_segments"]),
            int(payload["num_tasks"]),
            int(payload["init_version"]),
        )
