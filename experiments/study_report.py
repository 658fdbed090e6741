"""A staged study's record (experiments/minatar_study.sh writes OUT; this reads it): the
meta-training diagnostics of each method per meta_step, the loss term's share of the
meta-gradient, and the transfer evaluations' summaries.

    .venv/bin/python experiments/study_report.py ~/leap-ray-runs/minatar-study \
        --methods leap leap-paper reptile --evals eval eval-quarter eval-half \
        --results experiments/results/minatar --title "MinAtar study"

Writes to DIR: `meta_training.csv` and `meta_training.png` (per method and meta_step: the
initialization's dead and always-on encoder units on held-out frames, its change per meta_step,
its fc layer's distance from theta_0 relative to that layer's size, the meta-gradient norm and
the mean task path length), `terms.md` (experiments/term_norms.py), `preactivation-M.md` per
method (experiments/preactivation_shift.py),
`summary.md` (the meta-training table, the stages' wall times), and for each evaluation E
`E.md`, `E-transfer.png` and `E-curves.csv` (every run's binned return curve, what the AUCs are
computed from; the raw per-episode curves.csv stays in OUT) and `E-videos/` (its `--video`
GIFs, if any); `stages.log` is copied. With
`--evals` and nothing after it, the record of the meta-training stages finished so far.
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
from atari_report import meta_scalars  # noqa: E402
from preactivation_shift import main as preactivation_shift  # noqa: E402
from term_norms import main as term_norms  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's leap_ray
from leap_ray import curves  # noqa: E402

COLUMNS = {  # TensorBoard tag -> column name
    "meta/init_dead_units": "dead_units",
    "meta/init_always_on_units": "always_on_units",
    "meta/init_change": "init_change",
    # |fc.weight - its theta_0| / |its theta_0|: how far the largest layer moved (both encoders)
    "meta/init_relative_distance/fc.weight": "fc_weight_relative_distance",
    "meta/gradient_norm": "meta_gradient_norm",
    "meta/task_path_length": "task_path_length",
}


def binned_curves(evaluation: Path, out: Path) -> None:
    """The evaluation's runs as `evaluate` reads them: each (method, game, seed) run's return
    curve in `curves.bin_edges` bins (the raw curves.csv, one row per episode, stays in OUT)."""
    steps = json.loads((evaluation / "plan.json").read_text())["steps"]
    episodes = defaultdict(lambda: ([], []))
    with open(evaluation / "curves.csv", newline="") as f:
        for row in csv.DictReader(f):
            run = episodes[row["method"], row["game"], int(row["seed"])]
            run[0].append(float(row["env_step"]))
            run[1].append(float(row["episode_return"]))
    edges = curves.bin_edges(steps)
    centers = curves.bin_centers(edges)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "game", "seed", "env_step", "mean_episode_return"])
        for (method, game, seed), (at, returns) in episodes.items():
            curve = curves.bin_curve(at, returns, edges)
            rows = zip(centers, curve, strict=True)
            writer.writerows([method, game, seed, int(x), f"{y:.4f}"] for x, y in rows)


def cell(column: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if column.endswith("_units") else f"{value:.4g}"


def figure(scalars: dict[str, dict[str, dict[int, float]]]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.6))
    for ax, (tag, column) in zip(axes, COLUMNS.items(), strict=True):
        for i, (method, values) in enumerate(scalars.items()):
            series = values.get(tag, {})
            steps = sorted(series)
            ax.plot(steps, [series[s] for s in steps], color=f"C{i}", lw=1.8, label=method)
        ax.set(title=column.replace("_", " "), xlabel="meta_step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the study's folder (its script's OUT)")
    parser.add_argument("--methods", nargs="+", required=True, help="meta-training runs in OUT")
    parser.add_argument(
        "--evals", nargs="*", default=["eval"], help="evaluations in OUT (none: a stage's record)"
    )
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--title", default="Study")
    parser.add_argument("--every", type=int, default=5, help="meta_steps between table rows")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1, got {args.every}")
    runs = [args.out / m for m in args.methods]
    evals = [args.out / e / "summary.md" for e in args.evals]  # written when an evaluation ends
    missing = [str(p) for p in runs if not p.is_dir()] + [str(p) for p in evals if not p.is_file()]
    if missing:
        print(f"error: {', '.join(missing)} missing: run the study first", file=sys.stderr)
        return 2
    args.results.mkdir(parents=True, exist_ok=True)
    scalars = {m: meta_scalars(args.out / m, tuple(COLUMNS)) for m in args.methods}
    figure(scalars).savefig(args.results / "meta_training.png", dpi=100)
    table = []
    for method, values in scalars.items():
        steps = sorted({s for series in values.values() for s in series})
        for step in steps:
            row = {"method": method, "meta_step": step}
            row.update({c: values.get(t, {}).get(step) for t, c in COLUMNS.items()})
            table.append(row)
    with open(args.results / "meta_training.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["method", "meta_step", *COLUMNS.values()])
        writer.writeheader()
        writer.writerows(table)
    term_norms([*map(str, runs), "--markdown", str(args.results / "terms.md")])
    for method in args.methods:
        table_file = args.results / f"preactivation-{method}.md"
        preactivation_shift([str(args.out / method), "--every", str(args.every), "--markdown",
                             str(table_file)])  # fmt: skip
    last = {m: max((r["meta_step"] for r in table if r["method"] == m), default=0) for m in scalars}
    shown = [
        {
            "method": r["method"],
            "meta_step": str(r["meta_step"]),
            **{c.replace("_", " "): cell(c, r[c]) for c in COLUMNS.values()},
        }
        for r in table
        if r["meta_step"] % args.every == 0 or r["meta_step"] == last[r["method"]]
    ]
    lines = [f"# {args.title}: the record", "", "## Meta-training", ""]
    lines.append(curves.markdown_table(shown))
    lines.append("")
    if args.evals:
        lines += ["Evaluations: " + ", ".join(f"`{e}.md`" for e in args.evals), ""]
    for evaluation in args.evals:
        folder = args.out / evaluation
        shutil.copy(folder / "summary.md", args.results / f"{evaluation}.md")
        shutil.copy(folder / "transfer.png", args.results / f"{evaluation}-transfer.png")
        binned_curves(folder, args.results / f"{evaluation}-curves.csv")
        videos = sorted((folder / "videos").glob("*.gif"))  # evaluate --video, tens of kB each
        if videos:
            (args.results / f"{evaluation}-videos").mkdir(exist_ok=True)
        for video in videos:
            shutil.copy(video, args.results / f"{evaluation}-videos" / video.name)
    stages = args.out / "stages.log"
    if stages.is_file():
        shutil.copy(stages, args.results / "stages.log")
        lines += ["## Stages (wall time)", "", "```", stages.read_text().rstrip(), "```", ""]
    (args.results / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
