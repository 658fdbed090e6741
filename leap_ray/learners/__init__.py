"""Learners by name: the one place `cfg.learner` is read. A new learner is a module (or folder)
here implementing `learners.base.Learner`, and one line in `LEARNERS`. Implementations are
imported when first asked for, so an A2C run never imports RLlib."""

from __future__ import annotations

import functools
import importlib

import numpy as np

from leap_ray.config import Config, check_worker_devices
from leap_ray.errors import ConfigError
from leap_ray.learners.base import Encoder, Learner, shape_mismatch

LEARNERS = {  # name -> "module:class"
    "a2c": "leap_ray.learners.a2c:A2C",
    "rllib_ppo": "leap_ray.learners.rllib_ppo:RLlibPPO",
}


@functools.cache
def _load(name: str) -> Learner:
    module, _, cls = LEARNERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def learner_for(cfg: Config) -> Learner:
    return _load(cfg.learner)


def check_learner(cfg: Config, games: tuple[str, ...]) -> None:
    """The learner's checks, before Ray starts: devices, and the learner's own."""
    check_worker_devices(cfg)
    learner_for(cfg).check(cfg, games)


def initial_encoder(cfg: Config, games: tuple[str, ...]) -> dict[str, np.ndarray]:
    """theta_0 of meta-training (and of the finetuning baseline): drawn from `meta.seed`."""
    return learner_for(cfg).new_encoder(cfg, games[0], cfg.meta.seed)


def check_encoder_fits(cfg: Config, games: tuple[str, ...], init: Encoder, what: str) -> None:
    """An initialization must fit the configured encoder on every game (observation shapes)."""
    learner = learner_for(cfg)
    got = {name: tuple(np.shape(value)) for name, value in init.items()}
    for game in games:
        want = {n: np.shape(v) for n, v in learner.new_encoder(cfg, game, 0).items()}
        bad = shape_mismatch(want, got)
        if bad is not None:
            raise ConfigError(
                f"{what}: its encoder does not fit {learner.encoder_name(cfg)} on {game} "
                f"({bad}: checkpoint {got.get(bad)}, config {want.get(bad)})"
            )


__all__ = ["LEARNERS", "check_encoder_fits", "check_learner", "initial_encoder", "learner_for"]
