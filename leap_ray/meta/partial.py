"""The partial meta-gradient: the unit of work that flows from a task to the meta-optimizer.

A partial is a sum of per-segment increments (Leap) or parameter displacements (Reptile) over
some segments of some tasks, all computed from one initialization version. Sums are exact to
merge, so a task may stream many partials and a server may merge them in any order; the
meta-batch mean divides by the number of *finished* tasks the merged partial contains.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch


def global_norm(tensors: list[torch.Tensor]) -> float:
    """The Euclidean norm of several tensors taken as one vector."""
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors))))


@dataclass(frozen=True)
class PartialMetaGradient:
    """Summed meta-gradient increments; `num_tasks` counts tasks whose path is closed."""

    grads: Mapping[str, torch.Tensor]  # name -> CPU float32 tensor shaped like the parameter
    num_segments: int
    num_tasks: int
    init_version: int

    def _check_mergeable(self, other: PartialMetaGradient) -> None:
        if other.init_version != self.init_version:
            raise ValueError(
                f"cannot merge partials of init versions {self.init_version} and "
                f"{other.init_version}: they are gradients at different points"
            )
        if other.grads.keys() != self.grads.keys():
            raise ValueError("cannot merge partials over different parameter names")

    def merge(self, other: PartialMetaGradient) -> PartialMetaGradient:
        """Exact sum of two partials from the same initialization version."""
        return PartialMetaGradient.sum([self, other])

    @staticmethod
    def sum(partials: Iterable[PartialMetaGradient]) -> PartialMetaGradient:
        """Merge many partials in order (one new buffer, summed in place); raises on none."""
        iterator = iter(partials)
        try:
            first = next(iterator)
        except StopIteration:
            raise ValueError("cannot sum zero partial meta-gradients") from None
        total = [g.clone() for g in first.grads.values()]
        segments, tasks = first.num_segments, first.num_tasks
        for partial in iterator:
            first._check_mergeable(partial)
            torch._foreach_add_(total, [partial.grads[name] for name in first.grads])
            segments += partial.num_segments
            tasks += partial.num_tasks
        grads = dict(zip(first.grads, total, strict=True))
        return PartialMetaGradient(grads, segments, tasks, first.init_version)

    def mean(self) -> dict[str, torch.Tensor]:
        """Meta-batch mean: the summed increments divided by the number of finished tasks."""
        if self.num_tasks < 1:
            raise ValueError("a meta-gradient mean needs at least one finished task")
        # contiguous: fused optimizers read raw memory, and conv gradients may be channels-last
        return {name: (g / self.num_tasks).contiguous() for name, g in self.grads.items()}

    def norm(self) -> float:
        """Euclidean norm over all tensors (NaN or inf if any entry is)."""
        return global_norm(list(self.grads.values()))

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
    def from_numpy(payload: Mapping, copy: bool = True) -> PartialMetaGradient:
        """With copy=False the tensors view the arrays (zero-copy; may be read-only: never
        modify them)."""
        if copy:
            grads = {
                name: torch.from_numpy(np.array(array, dtype=np.float32, copy=True))
                for name, array in payload["grads"].items()
            }
        else:
            with warnings.catch_warnings():  # Ray's object store hands out read-only arrays
                warnings.simplefilter("ignore", UserWarning)
                grads = {n: torch.from_numpy(a) for n, a in payload["grads"].items()}
        return PartialMetaGradient(
            grads,
            int(payload["num_segments"]),
            int(payload["num_tasks"]),
            int(payload["init_version"]),
        )
