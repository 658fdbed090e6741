"""Meta-gradient maths: torch only, no Ray, no environments."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from leap_ray.meta.base import PathMetaLearner, TensorLike
from leap_ray.meta.initialization import META_OPTIMIZERS, MetaInitialization, check_meta_state
from leap_ray.meta.leap import METRICS, Leap
from leap_ray.meta.partial import PartialMetaGradient
from leap_ray.meta.reptile import Reptile

ALGORITHMS = ("leap", "reptile")


def make_meta_learner(
    algorithm: str,
    init: nn.Module | Mapping[str, TensorLike],
    *,
    metric: str = "length",
    loss_term: bool = True,
    stabilizer: bool = True,
    prefix: str = "",
    borrow_grads: bool = False,
    loss_scale: float = 1.0,
    loss_smoothing: float = 0.0,
) -> PathMetaLearner:
    """Leap or Reptile by name; both yield `PartialMetaGradient`s."""
    if algorithm == "leap":
        return Leap(
            init,
            metric=metric,
            loss_term=loss_term,
            stabilizer=stabilizer,
            prefix=prefix,
            borrow_grads=borrow_grads,
            loss_scale=loss_scale,
            loss_smoothing=loss_smoothing,
        )
    if algorithm == "reptile":
        return Reptile(init, prefix=prefix)
    raise ValueError(f"meta algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


__all__ = [
    "ALGORITHMS",
    "METRICS",
    "META_OPTIMIZERS",
    "Leap",
    "MetaInitialization",
    "PartialMetaGradient",
    "PathMetaLearner",
    "Reptile",
    "check_meta_state",
    "make_meta_learner",
]
