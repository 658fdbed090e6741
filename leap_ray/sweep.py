"""`sweep`: a grid over config fields on Ray Tune. Each trial meta-trains with its settings on
the pool minus the *validation* tasks, then transfers its initialization to those validation
tasks (pool games or variants, never the held-out games, which stay for the final study) and
reports the mean transfer AUC as its metric. A trial's workers are placed in its own placement
group (a 0-CPU bundle for the trial's driver, one bundle per task worker), so one trial runs at a
time on a 2-core machine and many on a cluster. A trial's meta-training is an ordinary run
directory under OUT/runs, so a stopped sweep resumes (`Tuner.restore`) with its trials' own
checkpoints: a finished trial is kept, an unfinished one goes on from its newest checkpoint.

Outputs: OUT/sweep.csv and OUT/sweep.md (one row per trial, best first) and OUT/sweep.png.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from leap_ray.checkpoint import checkpoint_encoder, list_checkpoints, load_checkpoint
from leap_ray.config import Config, ConfigError, config_from_dict, load_config
from leap_ray.curves import markdown_table
from leap_ray.errors import RunFailed
from leap_ray.suites import suite_for, training_games

METRIC = "transfer_auc"
SET_BY_THE_SWEEP = ("env.games", "logging.logdir", "logging.run_name")  # not a grid's to sweep
# a trial's transfer seeds start here: never the seeds 0..S-1 that `evaluate` uses, so a final
# comparison's seeds are never the sweep's
SEED_OFFSET = 1000


@dataclass(frozen=True)
class SweepPlan:
    cfg: Config  # the base config (each trial's: `trial_config`)
    grid: dict[str, list]  # config field -> its values
    validation: tuple[str, ...]  # pool tasks held back from every trial's meta-training
    transfer_steps: int
    seeds: int
    out: Path


def parse_grid(specs: list[str]) -> dict[str, list]:
    """`FIELD=V1,V2,...` (values read as YAML) -> {field: [values]}."""
    grid: dict[str, list] = {}
    for spec in specs:
        field, sep, values = spec.partition("=")
        if not sep or not field or not values:
            raise ConfigError(f"--grid {spec!r}: expected SECTION.FIELD=VALUE1,VALUE2")
        if field in grid:
            raise ConfigError(f"--grid: {field} is given twice")
        if field in SET_BY_THE_SWEEP:
            raise ConfigError(f"--grid: {field} is set by the sweep for each trial")
        try:
            grid[field] = [yaml.safe_load(value) for value in values.split(",")]
        except yaml.YAMLError:
            raise ConfigError(f"--grid {spec!r}: a value is not valid YAML") from None
    if not grid:
        raise ConfigError("sweep: name at least one --grid SECTION.FIELD=VALUE1,VALUE2")
    return grid


def trials(plan: SweepPlan) -> list[dict]:
    """Every combination of the grid, in order."""
    combos: list[dict] = [{}]
    for field, values in plan.grid.items():
        combos = [{**combo, field: value} for combo in combos for value in values]
    return combos


def trial_name(params: dict) -> str:
    return "trial-" + hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]


def trial_config(plan: SweepPlan, params: dict) -> Config:
    """The base config with the trial's fields, meta-training on the pool minus validation."""
    pool = [g for g in training_games(plan.cfg.env) if g not in plan.validation]
    overrides = [f"{field}={json.dumps(value)}" for field, value in params.items()]
    overrides += [
        f"env.games={json.dumps(pool)}",
        f"logging.logdir={json.dumps(str(plan.out / 'runs'))}",
        f"logging.run_name={trial_name(params)}",
        "logging.progress=false",
    ]
    return config_from_dict(plan.cfg.to_dict(), overrides)


def make_plan(
    config: str,
    overrides: list[str],
    grid_specs: list[str],
    validation: list[str],
    transfer_steps: int,
    seeds: int,
    out: str,
    resume: bool,
) -> SweepPlan:
    """Everything that can fail on bad input, before Ray starts: every trial's config is
    validated, the validation tasks must be pool tasks and leave some to meta-train on."""
    if transfer_steps < 1 or seeds < 1:
        raise ConfigError(
            f"--transfer-steps and --seeds must be >= 1, got {transfer_steps}, {seeds}"
        )
    cfg = load_config(config, overrides)
    suite = suite_for(cfg.env)
    pool = training_games(cfg.env)
    resolved = tuple(suite.resolve(game) for game in validation)
    if not resolved:
        raise ConfigError("--validation: name the pool tasks each trial transfers to")
    outside = [g for g in resolved if g not in pool]
    if outside:
        raise ConfigError(
            f"--validation: {', '.join(outside)} is not a task of the meta-training pool "
            "(the held-out games are for the final study, never for choosing settings)"
        )
    if len(set(resolved)) == len(pool):
        raise ConfigError("--validation: leaves no task to meta-train on")
    # resolved: Ray Tune takes storage paths as URIs, and trials run in directories of their own
    plan = SweepPlan(
        cfg, parse_grid(grid_specs), resolved, transfer_steps, seeds, Path(out).resolve()
    )
    plan = dataclasses.replace(plan, grid=validated_grid(plan))
    record = plan.out / "sweep.json"
    if resume:
        if not record.is_file():
            raise ConfigError(f"--resume: {out!r} is not the directory of a stopped sweep")
        if json.loads(record.read_text()) != plan_record(plan):
            raise ConfigError(
                f"--resume: {out!r} swept another plan; resume with the same arguments"
            )
    elif plan.out.exists() and any(plan.out.iterdir()):
        raise ConfigError(f"--out: {out!r} exists and is not empty; add --resume to continue it")
    return plan


def validated_grid(plan: SweepPlan) -> dict[str, list]:
    """Each grid value as the config reads it (a bad one is one line, now; "1e-3" is 0.001),
    refusing a value listed twice: two trials of one setting would share one run."""
    grid = {}
    for field, values in plan.grid.items():
        read = []
        for value in values:
            node = trial_config(plan, {field: value}).to_dict()
            for key in field.split("."):
                node = node[key]
            if node in read:
                raise ConfigError(f"--grid: {field} lists {node!r} twice")
            read.append(node)
        grid[field] = read
    for params in trials(dataclasses.replace(plan, grid=grid)):
        trial_config(plan, params)  # every combination is valid
    return grid


def plan_record(plan: SweepPlan) -> dict:
    return json.loads(
        json.dumps(
            {
                "config": plan.cfg.to_dict(),
                "grid": plan.grid,
                "validation": list(plan.validation),
                "transfer_steps": plan.transfer_steps,
                "seeds": plan.seeds,
            }
        )
    )


# -- one trial (runs inside Ray Tune) ----------------------------------------------------------
def run_trial(params: dict, plan: SweepPlan) -> dict[str, float]:
    """Meta-train (or go on with the trial's own run after a stop), then transfer."""
    from leap_ray.driver import train
    from leap_ray.evaluate import EvalPlan, Method, run_jobs, transfer_aucs

    cfg = trial_config(plan, params)
    run_dir = plan.out / "runs" / trial_name(params)
    finished = (run_dir / "meta.json").is_file() and json.loads(
        (run_dir / "meta.json").read_text()
    ).get("success")
    if not finished:
        if list_checkpoints(run_dir):
            train(cfg, resume=str(run_dir))
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # stopped before its first checkpoint
            train(cfg)
    init = checkpoint_encoder(load_checkpoint(run_dir), str(run_dir))
    method = Method("trial", str(run_dir), init)
    steps, seeds = plan.transfer_steps, tuple(range(SEED_OFFSET, SEED_OFFSET + plan.seeds))
    evaluation = EvalPlan(cfg, (method,), plan.validation, seeds, steps, run_dir / "validation")
    aucs = transfer_aucs(evaluation, run_jobs(evaluation), "trial")
    empty = [game for game in plan.validation if not aucs[game]]
    if empty:  # a trial scored on fewer tasks than another would be ranked on other tasks
        raise RunFailed(
            f"validation task {empty[0]} finished no episode in {steps} env_steps; raise "
            "--transfer-steps (or lower env.num_envs)"
        )
    per_task = {game: float(np.mean(aucs[game])) for game in plan.validation}
    metrics = {METRIC: float(np.mean(list(per_task.values())))}  # each task weighs the same
    metrics.update({f"auc/{game}": value for game, value in per_task.items()})
    return metrics


def _trainable(plan: SweepPlan):
    from ray import tune

    def trainable(params: dict) -> None:
        tune.report(run_trial(params, plan))

    def reservation(params: dict):
        """The trial's own resources (a grid may change them): a 0-CPU bundle for the trial's
        driver and one per task worker, which Tune places its actors in."""
        res = trial_config(plan, params).resources
        worker = {
            "CPU": res.cpus_per_worker,
            **({"GPU": res.gpus_per_worker} if res.gpus_per_worker else {}),
        }
        return tune.PlacementGroupFactory([{"CPU": 0}] + [worker] * res.num_workers)

    return tune.with_resources(trainable, reservation)


# -- the sweep ---------------------------------------------------------------------------------
def sweep(
    plan: SweepPlan, resume: bool, address: str | None = None, resume_command: str = ""
) -> Path:
    """Run every trial not finished (Ray Tune), then write the table and the plot. On SIGINT or
    SIGTERM the finished trials (and the unfinished ones' checkpoints) are kept, Ray shuts
    down and `resume_command` is printed (exit 130/143)."""
    import ray

    from leap_ray.distributed.launch import connect, disconnect
    from leap_ray.distributed.signals import Stopped, StopSignals, signal_name

    started = connect(plan.cfg, address)
    try:
        with StopSignals() as stop:
            try:
                return _sweep(plan, resume)
            except KeyboardInterrupt:
                again = resume_command or f"the same sweep command with --out {plan.out} --resume"
                print(
                    f"\nstopped by {signal_name(stop.signum)}: finished trials are kept in "
                    f"{plan.out}\ncontinue with: {again}",
                    flush=True,
                )
                raise Stopped(stop.signum) from None
    finally:
        if started and ray.is_initialized():
            disconnect()


def _sweep(plan: SweepPlan, resume: bool) -> Path:
    from ray import tune

    from leap_ray.distributed.launch import check_resources

    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT is the stop contract's (`sweep`)
    check_resources(plan.cfg)
    plan.out.mkdir(parents=True, exist_ok=True)
    (plan.out / "sweep.json").write_text(json.dumps(plan_record(plan), indent=2))
    storage = plan.out / "tune"
    trainable = _trainable(plan)
    if resume and tune.Tuner.can_restore(str(storage / "sweep")):
        tuner = tune.Tuner.restore(
            str(storage / "sweep"), trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        space = {field: tune.grid_search(values) for field, values in plan.grid.items()}
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            tune_config=tune.TuneConfig(metric=METRIC, mode="max"),
            run_config=tune.RunConfig(storage_path=str(storage), name="sweep", verbose=0),
        )
    grid = tuner.fit()
    rows = [_row(result, plan) for result in grid]
    failed = [result.error for result in grid if result.error is not None]
    write_outputs(plan, rows)
    if failed:
        raise RunFailed(f"sweep: {len(failed)} trial(s) failed; first: {failed[0]}")
    print(f"done: {len(rows)} trials; table in {plan.out / 'sweep.md'}")
    return plan.out


def _row(result, plan: SweepPlan) -> dict:
    params = {field: result.config.get(field) for field in plan.grid}
    metrics = result.metrics or {}
    row = {**{f: json.dumps(v) for f, v in params.items()}, "trial": trial_name(params)}
    row[METRIC] = metrics.get(METRIC, float("nan"))
    for game in plan.validation:
        row[f"auc/{game}"] = metrics.get(f"auc/{game}", float("nan"))
    return row


def write_outputs(plan: SweepPlan, rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: -r[METRIC] if np.isfinite(r[METRIC]) else np.inf)
    with open(plan.out / "sweep.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shown = [{k: _cell(v) for k, v in r.items()} for r in rows]
    text = [
        "# Sweep",
        "",
        "Validation tasks (left out of every trial's meta-training): "
        f"{', '.join(plan.validation)}; "
        f"{plan.transfer_steps} env_steps per transfer run, {plan.seeds} seed(s); "
        f"`{METRIC}`: the mean transfer AUC over them (higher = learns faster). Best first.",
        "",
        markdown_table(shown),
        "",
    ]
    (plan.out / "sweep.md").write_text("\n".join(text))
    _figure(rows).savefig(plan.out / "sweep.png", dpi=100)


def _cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _figure(rows: list[dict]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 0.8 * len(rows) + 2), 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = [
        ", ".join(
            f"{k.split('.')[-1]}={v}" for k, v in r.items() if "." in k and not k.startswith("auc/")
        )
        for r in rows
    ]
    ax.bar(range(len(rows)), [r[METRIC] for r in rows])
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"{METRIC} (validation)")
    ax.grid(alpha=0.3, axis="y")
    return fig
