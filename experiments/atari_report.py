"""A meta-training experiment's record: the reduced Atari experiment's (experiments/atari_reduced.sh
writes OUT; this reads it), or any folder of meta-training runs and an `eval` folder.

    .venv/bin/python experiments/atari_report.py runs/atari-reduced [--results DIR]
    .venv/bin/python experiments/atari_report.py runs/rllib-cartpole --methods leap leap-loss-term \
        --results experiments/results/rllib_cartpole --title "Leap over RLlib PPO, CartPole family"

Writes to DIR (default experiments/results/atari_reduced): `meta_training.png` and
`meta_training.csv` (per meta_step and game, for Leap and Reptile: the task's path length and
energy, its late return; per meta_step: the meta-gradient norm and the initialization's change),
`summary.md` (the transfer evaluation's summary, the meta-training table, the stages' wall
times), `transfer.png`, `curves.csv` and `stages.log` copied from the run.

Leap's objective predicts shorter task paths from the meta-learned initialization: the first
meta_step's tasks start from theta_0 for both methods (same seeds: identical tasks), so each later
value is read as a ratio to it, per game.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_file_loader import (  # noqa: E402
    LegacyEventFileLoader,
)

METHODS = ("leap", "reptile")
META_TAGS = ("meta/gradient_norm", "meta/init_change")


def task_rows(run: Path, batch: int) -> list[dict]:
    """One row per task outcome that was applied (the last attempt of each task id)."""
    rows = {}
    for line in (run / "tasks.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "failed" not in row:  # a task that failed for good has no path
            rows[row["task_id"]] = row
    return [
        {
            "meta_step": task_id // batch,
            "game": row["game"],
            "path_length": row["path"]["path/length"],
            "path_energy": row["path"]["path/energy"],
            "late_return": row["late_return"],
        }
        for task_id, row in sorted(rows.items())
    ]


def meta_scalars(run: Path, tags=META_TAGS) -> dict[str, dict[int, float]]:
    """tag -> meta_step -> value of the run's TensorBoard scalars named in `tags`."""
    values: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(run.glob("events.out.tfevents.*")):
        for event in LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag in tags and value.HasField("simple_value"):
                    values[value.tag][event.step] = value.simple_value
    return values


def ratios(rows: list[dict], key: str) -> dict[str, dict[int, float]]:
    """game -> meta_step -> value / (the game's value at meta_step 0)."""
    first = {r["game"]: r[key] for r in rows if r["meta_step"] == 0 and r[key]}
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["game"] in first and r[key] is not None:
            out[r["game"]][r["meta_step"]] = r[key] / first[r["game"]]
    return out


def figure(tasks: dict[str, list[dict]], scalars: dict[str, dict]) -> plt.Figure:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colors = {m: f"C{i + 1}" for i, m in enumerate(tasks)}
    for ax, key, title in (
        (axes[0], "path_length", "task path length / meta_step 0's"),
        (axes[2], "late_return", "task late return / meta_step 0's"),
    ):
        for method, rows in tasks.items():
            by_game = ratios(rows, key)
            for _, series in sorted(by_game.items()):
                steps = sorted(series)
                ax.plot(steps, [series[s] for s in steps], color=colors[method], alpha=0.35, lw=1)
            steps = sorted({s for series in by_game.values() for s in series})
            mean = [
                sum(series[s] for series in by_game.values() if s in series)
                / sum(s in series for series in by_game.values())
                for s in steps
            ]
            ax.plot(steps, mean, color=colors[method], lw=2.5, marker="o", label=method)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set(title=title + " (thin: per game)", xlabel="meta_step of the task")
        ax.legend()
    for method, values in scalars.items():
        series = values.get("meta/gradient_norm", {})
        steps = sorted(series)
        axes[1].plot(steps, [series[s] for s in steps], color=colors[method], marker="o", lw=2)
        axes[1].plot([], [], color=colors[method], label=method)
    axes[1].set(title="meta-gradient norm (per task)", xlabel="meta_step (after apply)")
    axes[1].legend()
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the experiment's folder (atari_reduced.sh OUT)")
    parser.add_argument("--results", type=Path, default=Path("experiments/results/atari_reduced"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="run folders in OUT")
    parser.add_argument("--title", default="Reduced Atari experiment")
    args = parser.parse_args(argv)
    missing = [m for m in (*args.methods, "eval") if not (args.out / m).is_dir()]
    if missing:
        print(
            f"error: {args.out} lacks {', '.join(missing)}: run the experiment first",
            file=sys.stderr,
        )
        return 2
    args.results.mkdir(parents=True, exist_ok=True)
    tasks, scalars = {}, {}
    for method in args.methods:
        run = args.out / method
        batch = json.loads((run / "meta.json").read_text())["config"]["meta"]["meta_batch_size"]
        tasks[method] = task_rows(run, batch)
        scalars[method] = meta_scalars(run)
    figure(tasks, scalars).savefig(args.results / "meta_training.png", dpi=100)
    with open(args.results / "meta_training.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["method", "meta_step", "game", "path_length", "path_energy", "late_return"]
        )
        for method, rows in tasks.items():
            for r in rows:
                writer.writerow(
                    [
                        method,
                        r["meta_step"],
                        r["game"],
                        f"{r['path_length']:.4f}",
                        f"{r['path_energy']:.6f}",
                        "" if r["late_return"] is None else f"{r['late_return']:.2f}",
                    ]
                )
    lines = [f"# {args.title}: the record", "", "## Meta-training", ""]
    lines += [
        "| method | meta_step | game | path length | late return |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method, rows in tasks.items():
        for r in rows:
            late = "-" if r["late_return"] is None else f"{r['late_return']:.1f}"
            lines.append(
                f"| {method} | {r['meta_step']} | {r['game']} | {r['path_length']:.2f} | {late} |"
            )
    lines += [
        "",
        "| method | meta_step | meta-gradient norm | init change |",
        "| --- | --- | --- | --- |",
    ]
    for method, values in scalars.items():
        for step in sorted(values.get("meta/gradient_norm", {})):
            change = values.get("meta/init_change", {}).get(step, float("nan"))
            lines.append(
                f"| {method} | {step} | {values['meta/gradient_norm'][step]:.4g} | {change:.4g} |"
            )
    lines += ["", "## Transfer", "", (args.out / "eval" / "summary.md").read_text()]
    stages = args.out / "stages.log"
    if stages.exists():
        lines += ["## Stages (wall time)", "", "```", stages.read_text().rstrip(), "```", ""]
        shutil.copy(stages, args.results / "stages.log")
    (args.results / "summary.md").write_text("\n".join(lines) + "\n")
    for name in ("transfer.png", "curves.csv"):
        shutil.copy(args.out / "eval" / name, args.results / name)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
