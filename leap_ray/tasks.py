"""What one learning process of meta-training is (plain data, no Ray, no learner): its spec,
its derived seed, the games a meta_step draws, and what a meta-batch of them did."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from leap_ray.config import Config


@dataclass(frozen=True)
class TaskSpec:
    """One learning process of meta-training: which game, seed and initialization version."""

    task_id: int
    attempt: int
    game: str
    seed: int
    env_steps: int
    init_version: int


def task_seed(root_seed: int, task_id: int) -> int:
    """Seeds derived, never random: one per task id, logged with the task."""
    return int(np.random.SeedSequence([root_seed, task_id]).generate_state(1)[0] % (2**31))


def sample_games(cfg: Config, games: tuple[str, ...], draw: int, count: int) -> list[str]:
    """`count` games of the meta-training pool for draw number `draw` (a meta_step)."""
    rng = np.random.default_rng([cfg.meta.seed, draw])
    replace = count > len(games)
    return [games[i] for i in rng.choice(len(games), size=count, replace=replace)]


def late_return(episodes, env_steps: int) -> float | None:
    """Mean return of the episodes that ended in the last quarter of a task (None: none did)."""
    late = [r for step, r, _ in episodes if step > 0.75 * env_steps]
    return sum(late) / len(late) if late else None


def meta_batch_stats(reports) -> dict[str, float]:
    """Per meta_step: the mean path length, energy and distance travelled of the batch's tasks
    (what Leap's objective says should shrink), the mean norms of their meta-gradients' path
    and loss terms and the terms' cosine, and each game's late return."""
    if not reports:
        return {}
    stats = {
        f"meta/task_path_{key}": sum(r.path[f"path/{key}"] for r in reports) / len(reports)
        for key in ("length", "energy", "distance_from_init")
        if all(f"path/{key}" in r.path for r in reports)
    }
    for key in ("path_term_norm", "loss_term_norm", "term_cosine"):  # the meta-gradient's terms
        values = [r.terms[f"meta/{key}"] for r in reports if f"meta/{key}" in r.terms]
        values = [v for v in values if math.isfinite(v)]
        if values:
            stats[f"meta/task_{key}"] = sum(values) / len(values)
    by_game: dict[str, list[float]] = {}
    for r in reports:
        value = late_return(r.episodes, r.env_steps)
        if value is not None:
            by_game.setdefault(r.game, []).append(value)
    for game, values in by_game.items():
        stats[f"meta/task_return/{game}"] = sum(values) / len(values)
    return stats
