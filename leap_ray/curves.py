"""Transfer curves: episode returns binned on a common env_step grid, the area under the curve,
standard errors over seeds, the figure and the summary table. numpy and matplotlib only (no Ray,
no torch), so every number in `summary.md` is checked against hand-computed values in tests.

Leap (Flennerhag et al., 2019) argues that a good initialization makes new tasks *learn faster*:
the whole curve matters, not its end, hence the area under the return curve (AUC) next to the
final return. Seeds are paired across methods, so differences are also reported per seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

NUM_BINS = 50
FINAL_FRACTION = 0.1  # "final return": the mean of the last 10% of the binned curve


def bin_edges(max_step: int, num_bins: int = NUM_BINS) -> np.ndarray:
    """[num_bins + 1] edges from 0 to max_step; bins are right-closed, (e_k, e_k+1]."""
    return np.linspace(0.0, float(max_step), num_bins + 1)


def bin_centers(edges: np.ndarray) -> np.ndarray:
    return 0.5 * (edges[:-1] + edges[1:])


def bin_curve(steps: Sequence[float], returns: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Episodes (env_step at its end, return) -> [num_bins] mean return per bin.

    A bin where no episode ended keeps the previous bin's value (the agent's last known return);
    bins before the first finished episode take the first value; no episode at all: all NaN.
    Episodes past the last edge count in the last bin (a learner may overshoot by one update).
    """
    num_bins = len(edges) - 1
    steps, returns = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
    index = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, num_bins - 1)
    sums = np.bincount(index, weights=returns, minlength=num_bins)
    counts = np.bincount(index, minlength=num_bins)
    curve = np.full(num_bins, np.nan)
    filled = counts > 0
    curve[filled] = sums[filled] / counts[filled]
    if not filled.any():
        return curve
    last = curve[np.argmax(filled)]  # the first finished bin's value back-fills the start
    for k in range(num_bins):
        if filled[k]:
            last = curve[k]
        else:
            curve[k] = last
    return curve


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoid area under y(x) divided by the x range: the curve's average height."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) == 1:
        return float(y[0])
    area = float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))
    return area / float(x[-1] - x[0])


def final_value(y: np.ndarray, fraction: float = FINAL_FRACTION) -> float:
    """Mean of the last `fraction` of the points (at least one)."""
    y = np.asarray(y, dtype=float)
    count = max(1, math.ceil(fraction * len(y)))
    return float(np.mean(y[-count:]))


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error = sample std / sqrt(n)); the error is NaN below two values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    if len(values) < 2:
        return float(values[0]), math.nan
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def bootstrap_interval(values: Sequence[float], reps: int = 10_000) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean, the values resampled with replacement
    (seeded: a summary reads the same every time it is written); NaNs below two values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    means = np.random.default_rng(0).choice(values, (reps, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def error_auc(x: np.ndarray, y: np.ndarray, max_return: float) -> float:
    """AUC of the "training error" 1 - return / max_return (lower is better), for tasks whose
    best return is known (CartPole: one point per step up to the time limit)."""
    return auc(x, 1.0 - np.asarray(y, dtype=float) / max_return)


# -- tables and figure ---------------------------------------------------------------------------
Curves = Mapping[str, Mapping[int, np.ndarray]]  # method -> seed -> binned curve [num_bins]


def _places(err: float) -> int:
    """Decimals that show the error to two significant digits, at least one and at most six
    (an error of float noise, 1e-16, must not print sixteen zeros)."""
    return min(6, max(1, 1 - math.floor(math.log10(err)))) if err > 0 else 1


def _fmt(mean: float, err: float) -> str:
    """The mean to the error's place: a Breakout AUC of 1.61 ± 0.07 must not print as 1.6 ± 0.1."""
    if math.isnan(mean):
        return "n/a"
    if math.isnan(err):
        return f"{mean:.1f}"
    places = _places(err)
    return f"{mean:.{places}f} ± {err:.{places}f}"


def _interval(values: Sequence[float]) -> str:
    low, high = bootstrap_interval(values)
    if math.isnan(low):
        return "n/a"
    places = _places(mean_stderr(values)[1])
    return f"[{low:.{places}f}, {high:.{places}f}]"


def _finished(by_seed: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Seeds whose run finished at least one episode (the others have no curve)."""
    return {s: c for s, c in sorted(by_seed.items()) if not np.isnan(c).any()}


def game_rows(x: np.ndarray, curves: Curves, max_return: float | None) -> list[dict[str, str]]:
    """One row per method: final return, AUC and, where the best return is known, error AUC."""
    rows = []
    for method, by_seed in curves.items():
        done = _finished(by_seed)
        row = {
            "method": method,
            "seeds": f"{len(done)}/{len(by_seed)}",
            "final return": _fmt(*mean_stderr([final_value(c) for c in done.values()])),
            "AUC (return)": _fmt(*mean_stderr([auc(x, c) for c in done.values()])),
        }
        if max_return is not None:
            mean, err = mean_stderr([error_auc(x, c, max_return) for c in done.values()])
            row["error AUC"] = "n/a" if math.isnan(mean) else f"{mean:.3f} ± {err:.3f}"
        rows.append(row)
    return rows


def paired_rows(x: np.ndarray, curves: Curves) -> list[dict[str, str]]:
    """Every pair of methods, a - b per seed over the seeds both finished: the paired design
    removes what the seed decides (environments, heads), leaving the initialization."""
    rows = []
    methods = list(curves)
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            ca, cb = _finished(curves[a]), _finished(curves[b])
            seeds = [s for s in ca if s in cb]
            auc_diffs = [auc(x, ca[s]) - auc(x, cb[s]) for s in seeds]
            rows.append(
                {
                    "pair": f"{a} − {b}",
                    "seeds": str(len(seeds)),
                    "Δ AUC": _fmt(*mean_stderr(auc_diffs)),
                    "Δ AUC 95% CI": _interval(auc_diffs),
                    "Δ final return": _fmt(
                        *mean_stderr([final_value(ca[s]) - final_value(cb[s]) for s in seeds])
                    ),
                }
            )
    return rows


def markdown_table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    return "\n".join(lines)


LEGEND = (
    "Mean ± standard error over seeds. *final return*: mean of the last 10% of the binned curve. "
    "*AUC (return)*: trapezoid area under the binned return curve divided by its env_step range "
    "(the average return during learning; higher = learns faster). *error AUC* (only where the "
    "best return is known, e.g. the CartPole family): AUC of 1 - return / max_return, a "
    "lower-is-better reading of the paper's training-error AUC. *seeds*: runs with a finished "
    "episode / runs. *Paired differences*: per seed, then averaged; every method ran the same "
    "seeds (same environments and head initialization), so only the encoder differs; their "
    "95% CI is a percentile bootstrap over the seeds (10,000 resamples)."
)


def summary_markdown(
    header: list[str],
    x: np.ndarray,
    by_game: Mapping[str, Curves],
    max_returns: Mapping[str, float | None],
    not_held_out: set[str],
) -> str:
    """`summary.md`: the header, the legend, then per game a table of methods and of pairs."""
    lines = [*header, "", LEGEND]
    for game, runs in by_game.items():
        note = " (**in the meta-training pool: not held out**)" if game in not_held_out else ""
        lines += ["", f"## {game}{note}", "", markdown_table(game_rows(x, runs, max_returns[game]))]
        if len(runs) > 1:
            lines += ["", "Paired differences:", "", markdown_table(paired_rows(x, runs))]
    return "\n".join(lines) + "\n"


def transfer_figure(x: np.ndarray, by_game: Mapping[str, Curves]) -> Figure:
    """One panel per game: mean return over seeds vs env_steps, a band of +-1 standard error."""
    fig = Figure(figsize=(5.0 * len(by_game), 3.8), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: PNG without pyplot or a display
    axes = fig.subplots(1, len(by_game), squeeze=False)[0]
    for ax, (game, curves) in zip(axes, by_game.items(), strict=True):
        for method, by_seed in curves.items():
            stack = np.array([c for c in by_seed.values() if not np.isnan(c).any()])
            if len(stack) == 0:
                continue
            mean = stack.mean(axis=0)
            err = stack.std(axis=0, ddof=1) / math.sqrt(len(stack)) if len(stack) > 1 else 0 * mean
            (line,) = ax.plot(x, mean, label=f"{method} (n={len(stack)})")
            ax.fill_between(x, mean - err, mean + err, color=line.get_color(), alpha=0.2)
        ax.set_title(game, fontsize=9)
        ax.set_xlabel("env_steps")
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
