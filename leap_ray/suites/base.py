"""What an environment suite provides (Atari today; `suites/__init__.py` maps `env.suite` to
one). A suite owns its games' names, the meta-training pool, observation shapes and the two
forms its environments take: an asynchronous vector group (send / recv) for the A2C learner and
a single gymnasium env for RLlib's. Rewards come back unclipped: learners clip for learning and
record the real returns for reporting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import gymnasium as gym
import numpy as np

from leap_ray.config import EnvConfig


@dataclass
class StepResult:
    obs: np.ndarray  # [N, ...] observations after the step (a new episode's first where one ended)
    reward: np.ndarray  # [N] float32, unclipped
    terminated: np.ndarray  # [N] bool, a learning terminal (game over, or a life lost)
    truncated: np.ndarray  # [N] bool, cut by the time limit, not terminated: bootstrap it
    game_over: np.ndarray  # [N] bool, a whole game ended (for episode statistics)
    final_obs: np.ndarray | None  # [N, ...] last observations; rows where `truncated` are valid


class VectorGroup(Protocol):
    """N environments stepping together; a finished episode resets in the same step."""

    num_envs: int

    def reset(self) -> np.ndarray: ...  # [N, ...] first observations
    def send(self, actions: np.ndarray) -> None: ...  # [N] actions; the step starts
    def recv(self) -> StepResult: ...  # waits for the step
    def close(self) -> None: ...


class Suite(Protocol):
    name: str
    frames: bool  # observations are Atari-style frames (frame stacking, RLlib's Atari wrapper)
    even_groups: bool  # vector groups must be of equal size
    # its groups step in their own threads, so acting on one while another emulates pays;
    # otherwise the A2C learner keeps one group (one policy forward per step, not one per group)
    async_groups: bool
    video: bool  # `rgb_frame` can draw an observation (evaluate --video)

    def resolve(self, game: str) -> str:
        """The canonical name of a game of this suite; a one-line ConfigError if unknown."""

    def training_games(self, cfg: EnvConfig) -> tuple[str, ...]:
        """The meta-training pool, checked against `env.held_out`."""

    def observation_shape(self, cfg: EnvConfig, game: str) -> tuple[int, ...]: ...
    def num_actions(self, cfg: EnvConfig, game: str) -> int: ...  # the policy's action count
    def fire_action(self, cfg: EnvConfig, game: str) -> int | None: ...  # FIRE's action number
    def vector_group(self, game: str, num_envs: int, seed: int, cfg: EnvConfig) -> VectorGroup: ...
    def single_env(self, game: str, cfg: EnvConfig) -> gym.Env: ...

    def max_return(self, game: str) -> float | None:
        """The best possible episode return, where one is known (evaluate's summary)."""

    def rgb_frame(self, cfg: EnvConfig, obs: np.ndarray) -> np.ndarray:
        """One observation [C, H, W] as a picture [H', W', 3] uint8 (the newest frame)."""
