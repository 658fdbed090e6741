"""What RL papers now report beside mean +- standard error (Agarwal et al., NeurIPS 2021, with
their `rliable` library): the interquartile mean (IQM) and the mean of the runs' scores with
stratified-bootstrap 95% confidence intervals, per game and over all games, and the probability
that a method improves on the random initialization. A run's score is its transfer AUC (the
average return during learning, `curves.auc`); over games, each game's AUCs are divided by the
random initialization's mean AUC there, so "1.0" is random's level on every game (games where
that mean is not positive are left out of the aggregate, and named)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from leap_ray.curves import Curves, auc, markdown_table

REPS = 2_000  # bootstrap replications
SEED = 0  # the bootstrap's own seed: the same intervals for the same runs


def auc_scores(x: np.ndarray, by_game: Mapping[str, Curves], method: str) -> np.ndarray:
    """[seeds, games] AUCs of `method` over the seeds that finished an episode in every game."""
    games = list(by_game)
    seeds = sorted(
        set.intersection(
            *({s for s, c in by_game[g][method].items() if not np.isnan(c).any()} for g in games)
        )
    )
    return np.array([[auc(x, by_game[g][method][s]) for g in games] for s in seeds])


def _interval(scores: Mapping[str, np.ndarray], func) -> dict[str, tuple[float, float, float]]:
    """rliable's StratifiedBootstrap draws its resamples from numpy's global generator, not
    the `random_state` it is given, and one call over many methods draws them one after the
    other. So each method gets its own call from the same seed (its interval depends on its
    own runs only, not on which methods share the table), and the generator is put back."""
    from rliable import library

    outside = np.random.get_state()
    estimates = {}
    try:
        for key, value in scores.items():
            np.random.seed(SEED)
            points, intervals = library.get_interval_estimates({key: value}, func, reps=REPS)
            estimates[key] = (
                float(np.ravel(points[key])[0]),
                *map(float, np.ravel(intervals[key])[:2]),
            )
    finally:
        np.random.set_state(outside)
    return estimates


def _iqm_and_mean(scores: Mapping[str, np.ndarray]) -> dict[str, list[str]]:
    from rliable import metrics

    iqm = _interval(scores, lambda s: np.array([metrics.aggregate_iqm(s)]))
    mean = _interval(scores, lambda s: np.array([metrics.aggregate_mean(s)]))
    return {k: [_ci(*iqm[k]), _ci(*mean[k])] for k in scores}


def _ci(point: float, low: float, high: float) -> str:
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def interval_section(
    x: np.ndarray, by_game: Mapping[str, Curves], reference: str = "random"
) -> list[str]:
    """Markdown lines: per game and aggregated IQM and mean with 95% intervals, and the
    probability of improvement over `reference` (when the plan has it)."""
    methods = list(next(iter(by_game.values())))
    scores = {m: auc_scores(x, by_game, m) for m in methods}
    scores = {m: s for m, s in scores.items() if s.size}
    if not scores:
        return []
    games = list(by_game)
    lines = ["## Intervals (rliable)", "", INTERVAL_LEGEND, ""]
    rows = []
    for j, game in enumerate(games):
        per_game = _iqm_and_mean({m: s[:, [j]] for m, s in scores.items()})
        for m, (iqm, mean) in per_game.items():
            row = {"game": game, "method": m, "runs": str(len(scores[m])), "IQM AUC": iqm}
            rows.append({**row, "mean AUC": mean})
    lines += [markdown_table(rows), ""]
    if reference not in scores:
        return lines
    base = scores[reference].mean(axis=0)  # [games]
    kept = [j for j, value in enumerate(base) if value > 0]
    left_out = [games[j] for j in range(len(games)) if j not in kept]
    if kept:
        normalized = {m: s[:, kept] / base[kept] for m, s in scores.items()}
        aggregate = _iqm_and_mean(normalized)
        lines += [
            f"Over {', '.join(games[j] for j in kept)} (AUC / {reference}'s mean AUC per game"
            + (f"; left out, {reference}'s mean AUC not positive: {', '.join(left_out)}" if
               left_out else "") + "):",
            "",
            markdown_table(
                [{"method": m, "IQM": v[0], "mean": v[1]} for m, v in aggregate.items()]
            ),
            "",
        ]  # fmt: skip
    others = [m for m in scores if m != reference]
    if others:
        from rliable import metrics

        pairs = {f"{m},{reference}": (scores[m], scores[reference]) for m in others}
        improvement = _interval(pairs, metrics.probability_of_improvement)
        lines += [
            f"Probability of improvement over {reference} (P(X > Y) of the per-game AUCs, "
            "averaged over games):",
            "",
            markdown_table(
                [
                    {"method": pair.split(",")[0], f"P(method > {reference})": _ci(*value)}
                    for pair, value in improvement.items()
                ]
            ),
            "",
        ]
    return lines


INTERVAL_LEGEND = (
    "IQM (the mean of the middle 50% of runs) and mean of the runs' AUCs, each with a "
    f"stratified-bootstrap 95% confidence interval ({REPS:,} replications, `rliable`). With few "
    "seeds the intervals are wide and the IQM of fewer than four runs is close to their mean."
)
