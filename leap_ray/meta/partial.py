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

    def merge(self, other: PartialMetaGradient) -> PartialMetaGradient:
        """Exact sum of two partials from the same initialization version."""
        return PartialMetaGradient.sum([self, other])

    @staticmethod
    def sum(partials: Iterable[PartialMetaGradient]) -> PartialMetaGradient:
        """Merge many partials in order (one new buffer, summed in place); raises on none."""
        total = PartialSum()
        for partial in partials:
            total.add(partial)
        return total.result()

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


class PartialSum:
    """A running sum of partials from one initialization version, summed in place into buffers
    it owns (the partials it adds may be read-only views of Ray's object store): a task's
    streamed chunks, or the tasks of a meta-batch."""

    def __init__(self) -> None:
        self._total: list[torch.Tensor] = []
        self.names: tuple[str, ...] = ()
        self.init_version: int | None = None
        self.num_segments = 0
        self.num_tasks = 0

    def add(self, partial: PartialMetaGradient) -> None:
        if self.init_version is None:
            self.names, self.init_version = tuple(partial.grads), partial.init_version
            self._total = [g.clone() for g in partial.grads.values()]
        else:
            if partial.init_version != self.init_version:
                raise ValueError(
                    f"cannot merge partials of init versions {self.init_version} and "
                    f"{partial.init_version}: they are gradients at different points"
                )
            if tuple(partial.grads) != self.names:
                raise ValueError("cannot merge partials over different parameter names")
            torch._foreach_add_(self._total, [partial.grads[name] for name in self.names])
        self.num_segments += partial.num_segments
        self.num_tasks += partial.num_tasks

    def bound_norm_(self, bound: float) -> float:
        """Scale the sum in place down to norm `bound` if it is longer; returns its norm before
        (a task's whole meta-gradient: `meta.max_task_norm`)."""
        norm = global_norm(self._total) if self._total else 0.0
        if norm > bound > 0:
            torch._foreach_mul_(self._total, bound / norm)
        return norm

    def absorb(self, other: PartialSum) -> None:
        """Add another running sum in place, without copying it (`other` is spent)."""
        if self.init_version is None:
            self.names, self.init_version, self._total = (
                other.names,
                other.init_version,
                other._total,
            )
            self.num_segments, self.num_tasks = other.num_segments, other.num_tasks
        else:
            self.add(other.result())
        other._total = []

    def result(self) -> PartialMetaGradient:
        if self.init_version is None:
            raise ValueError("cannot sum zero partial meta-gradients")
        grads = dict(zip(self.names, self._total, strict=True))
        return PartialMetaGradient(grads, self.num_segments, self.num_tasks, self.init_version)
