"""Environment suites by name: the one place `env.suite` is read. A new suite is a module in
this folder implementing `suites.base.Suite`, and one line in `SUITES`."""

from __future__ import annotations

from leap_ray.config import EnvConfig
from leap_ray.suites.atari import AtariSuite
from leap_ray.suites.base import StepResult, Suite, VectorGroup
from leap_ray.suites.gym import GymSuite
from leap_ray.suites.minatar import MinAtarSuite

SUITES: dict[str, Suite] = {"atari": AtariSuite(), "gym": GymSuite(), "minatar": MinAtarSuite()}


def suite_for(cfg: EnvConfig) -> Suite:
    return SUITES[cfg.suite]


def training_games(cfg: EnvConfig) -> tuple[str, ...]:
    """The meta-training games of the configured suite."""
    return suite_for(cfg).training_games(cfg)


def observation_shape(cfg: EnvConfig, game: str) -> tuple[int, ...]:
    return suite_for(cfg).observation_shape(cfg, game)


__all__ = [
    "SUITES",
    "StepResult",
    "Suite",
    "VectorGroup",
    "observation_shape",
    "suite_for",
    "training_games",
]
