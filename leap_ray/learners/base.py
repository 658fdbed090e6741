"""The learner interface: what a learner (this project's A2C, RLlib's PPO, ...) offers the rest
of the system, and the types every learner shares. `learners/__init__.py` maps the configured
name to one implementation; nothing else reads `cfg.learner`.

A learner runs one learning process in the calling process (a task worker, `finetune`,
`train-task`), never starts Ray, and reports through plain data: a `LearnerSummary`, partial
meta-gradients through `on_partial`, TensorBoard rows through `on_log(env_step, {tag: value})`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from leap_ray.config import Config, MetaConfig
from leap_ray.errors import LearnerDiverged
from leap_ray.meta import PartialMetaGradient, PathMetaLearner, make_meta_learner
from leap_ray.meta.partial import global_norm
from leap_ray.tasks import TaskSpec

ENCODER_PREFIX = "encoder."  # every learner's model holds the meta-learned part as `encoder`
Encoder = Mapping[str, np.ndarray]  # encoder parameter name (without the prefix) -> values
OnPartial = Callable[[PartialMetaGradient], None]
OnLog = Callable[[int, dict[str, float]], None]


@dataclass
class LearnerSummary:
    """What a finished learning process reports (plain data)."""

    env_steps: int = 0
    updates: int = 0
    seconds: float = 0.0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (env_step, return, len)
    final_loss: float = float("nan")
    path: dict[str, float] = field(default_factory=dict)  # PathTracker.measure() at the end
    video: np.ndarray | None = None  # [T, H, W, 3] uint8: one game played after training
    terms: dict[str, float] = field(default_factory=dict)  # the meta-learner's `terms`

    @property
    def env_steps_per_second(self) -> float:
        return self.env_steps / self.seconds if self.seconds > 0 else 0.0


class Learner(Protocol):
    """One implementation per learner name (`learners.LEARNERS`)."""

    name: str
    needs_ray: bool  # its learning process needs a Ray runtime (the CLI starts a local one)
    records_video: bool  # run_transfer_task can record a game after training (evaluate --video)

    def check(self, cfg: Config, games: tuple[str, ...]) -> None:
        """Everything about the learner's settings that can fail, before Ray starts."""

    def steps_per_task(self, cfg: Config) -> int:
        """env_steps per meta-training task."""

    def describe(self, cfg: Config) -> str:
        """The learner and its encoder in a few words (evaluate's summary)."""

    def encoder_name(self, cfg: Config) -> str:
        """Which encoder, as an error message names it."""

    def new_encoder(self, cfg: Config, game: str, seed: int) -> dict[str, np.ndarray]:
        """The learner's encoder for `game`, freshly initialized from `seed`."""

    def probe_observations(self, cfg: Config, games: tuple[str, ...]) -> np.ndarray | None:
        """A fixed batch of observations of `games` (random play, a fixed seed) on which
        `unit_activity` reads the health of an initialization; None where not measured."""

    def unit_activity(self, cfg: Config, init: Encoder, observations) -> dict[str, float]:
        """Of the encoder's output units on `observations`: the fraction never active (dead,
        output <= 0 on every observation) and always active (> 0 on every one)."""

    def encoder_metadata(self, cfg: Config, game: str) -> dict[str, str]:
        """How to rebuild the encoder outside this project (`export`): its architecture and
        the observation shape it takes, as strings."""

    def run_meta_task(
        self, cfg: Config, spec: TaskSpec, init: Encoder, on_partial: OnPartial, on_log: OnLog
    ) -> LearnerSummary:
        """A meta-training task from initialization `spec.init_version`, the meta-learner
        streaming partials every `meta.stream_every` updates and its last one at the end."""

    def run_transfer_task(
        self,
        cfg: Config,
        game: str,
        seed: int,
        steps: int,
        init: Encoder | None,
        on_log: OnLog,
        video_steps: int = 0,
    ) -> tuple[LearnerSummary, dict[str, np.ndarray]]:
        """A fresh learner (new heads, no meta-learner) whose encoder starts from `init` (None:
        the seed's own random encoder); its summary and its final encoder. `video_steps` > 0:
        then one game of at most that many agent steps is played and its frames kept in the
        summary (`records_video` learners on suites with frames)."""

    def run_single_task(
        self,
        cfg: Config,
        game: str,
        seed: int,
        steps: int,
        on_partial: OnPartial,
        on_log: OnLog,
        log_every: int,
    ) -> LearnerSummary:
        """`train-task`: one learner from its own initialization, the meta-learner accumulating."""


def log_episodes(on_log: OnLog, env_step: int, episodes) -> None:
    """Each finished episode's return and length as `charts/` rows at `env_step`."""
    for _, episode_return, length in episodes:
        on_log(
            env_step,
            {"charts/episode_return": episode_return, "charts/episode_length": float(length)},
        )


def shape_mismatch(want: Mapping[str, tuple], got: Mapping[str, tuple]) -> str | None:
    """The first parameter name (sorted) whose shape differs or that one side lacks; None when
    `got` fits `want` exactly: the name an encoder-mismatch error points at."""
    return next((n for n in sorted(want.keys() | got.keys()) if want.get(n) != got.get(n)), None)


def configured_meta_learner(
    m: MetaConfig, init, *, prefix: str = ENCODER_PREFIX, borrow_grads: bool = False
) -> PathMetaLearner:
    """The meta-learner (Leap or Reptile) that `m` configures, its initialization `init`,
    tracking a module's parameters named `prefix + name`: one mapping for every learner."""
    return make_meta_learner(
        m.algorithm,
        init,
        metric=m.metric,
        loss_term=m.loss_term,
        stabilizer=m.stabilizer,
        prefix=prefix,
        borrow_grads=borrow_grads,
        loss_scale=m.loss_scale,
        loss_smoothing=m.loss_smoothing,
    )


class PathTracker:
    """The task's path in (encoder, loss) space, measured at every update: its length
    sum_i sqrt(|d_theta|^2 + d_l^2) and energy sum_i (|d_theta|^2 + d_l^2), the quantities Leap's
    two metrics minimize in expectation over tasks, for any meta-learner or none (a diagnostic:
    does the meta-learned initialization shorten the paths of new tasks?). About three passes
    over the encoder's parameters per update. `model.encoder` is the tracked part."""

    def __init__(self, model: nn.Module) -> None:
        self.start = self._encoder(model)
        self.last = [p.clone() for p in self.start]
        self.last_loss = 0.0
        self.pending: float | None = None  # |d_theta|^2 of the segment awaiting l_{i+1}
        self.length = 0.0
        self.energy = 0.0

    @staticmethod
    def _encoder(model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.encoder.parameters()]

    def update(self, model: nn.Module, loss: float) -> None:
        """After update i's optimizer step: `model` holds theta_{i+1}, `loss` is l_i. Segment i
        closes when l_{i+1} arrives (the next update, or `finish`)."""
        self._close_segment(loss)
        now = [p.detach() for p in model.encoder.parameters()]
        self.pending = global_norm(torch._foreach_sub(now, self.last)) ** 2
        self.last_loss = loss
        torch._foreach_copy_(self.last, now)

    def finish(self, final_loss: float) -> None:
        """Closes the last segment with theta_K's loss (NaN: without its loss term)."""
        self._close_segment(final_loss if math.isfinite(final_loss) else self.last_loss)

    def _close_segment(self, loss: float) -> None:
        if self.pending is None:
            return
        squared = self.pending + (loss - self.last_loss) ** 2
        self.length += math.sqrt(squared)
        self.energy += squared
        self.pending = None

    def measure(self) -> dict[str, float]:
        distance = global_norm(torch._foreach_sub(self.last, self.start))
        return {
            "path/length": self.length,
            "path/energy": self.energy,
            "path/distance_from_init": distance,
        }


__all__ = [
    "ENCODER_PREFIX",
    "Encoder",
    "Learner",
    "LearnerDiverged",
    "LearnerSummary",
    "PathTracker",
    "configured_meta_learner",
    "log_episodes",
    "shape_mismatch",
]
