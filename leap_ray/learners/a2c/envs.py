"""The A2C learner's environments: a game's vector groups from its suite (`leap_ray.suites`),
stepped asynchronously (`send` / `recv`): while one group's environments emulate, the learner
runs the policy on another group's observations. Rewards come back unclipped; the learner clips
them for learning and `EpisodeTracker` records the real episode returns for reporting. A
finished episode resets in the same step (its next observation is the first of a new episode).
"""

from __future__ import annotations

import numpy as np

from leap_ray.config import EnvConfig
from leap_ray.suites import suite_for


class EpisodeTracker:
    """Sums unclipped rewards per environment; collects (env_step, return, length) per episode."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished: list[tuple[int, float, int]] = []

    def record(self, rows: slice, reward: np.ndarray, game_over: np.ndarray, env_step: int) -> None:
        self.returns[rows] += reward
        self.lengths[rows] += 1
        for i in np.flatnonzero(game_over):
            row = rows.start + i
            self.finished.append((env_step, float(self.returns[row]), int(self.lengths[row])))
            self.returns[row] = 0.0
            self.lengths[row] = 0

    def drain(self) -> list[tuple[int, float, int]]:
        finished, self.finished = self.finished, []
        return finished


class VectorTask:
    """A game's environments in `groups` asynchronous groups, plus episode bookkeeping."""

    def __init__(self, game: str, cfg: EnvConfig, seed: int, groups: int = 2) -> None:
        suite = suite_for(cfg)
        groups = max(1, min(groups if suite.async_groups else 1, cfg.num_envs))
        if suite.even_groups and cfg.num_envs % groups:
            groups = 1
        sizes = [cfg.num_envs // groups + (i < cfg.num_envs % groups) for i in range(groups)]
        self.game = suite.resolve(game)
        self.num_actions = suite.num_actions(cfg, self.game)
        self.groups = [
            suite.vector_group(self.game, n, seed + 10_007 * i, cfg) for i, n in enumerate(sizes)
        ]
        self.obs_shape = suite.observation_shape(cfg, self.game)
        starts = np.cumsum([0] + sizes)
        self.rows = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        self.num_envs = cfg.num_envs
        self.episodes = EpisodeTracker(cfg.num_envs)

    def reset(self) -> np.ndarray:
        """[N, ...] first observations of every environment."""
        return np.concatenate([group.reset() for group in self.groups])

    def close(self) -> None:
        for group in self.groups:
            group.close()
