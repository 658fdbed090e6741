"""Transfer evaluation, the paper's test of an initialization (Flennerhag et al., 2019, Sec. 4.3):
fresh learners of the configured kind on held-out games, new heads, the encoder loaded from each
initialization, the same seeds for every method (a paired comparison). A method is `random`, a
meta-training run, or the multi-task baseline that `finetune.py` writes (`finetune:RUN`).

The learning runs are `TaskWorker.run_eval` on Ray actors ({ref: job} + `ray.wait`), started
through `distributed.launch`. The curve maths lives in `curves.py`; only this driver-side code
writes logs.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
from tqdm import tqdm

from leap_ray import curves
from leap_ray.checkpoint import FINETUNE, checkpoint_encoder, init_digest, load_checkpoint
from leap_ray.config import Config, config_from_dict, load_config
from leap_ray.distributed.launch import check_resources, connect, make_worker
from leap_ray.distributed.pool import WorkerPool
from leap_ray.distributed.signals import Stopped, StopSignals, signal_name
from leap_ray.errors import ConfigError, RunFailed
from leap_ray.intervals import interval_section
from leap_ray.learners import check_encoder_fits, check_learner, learner_for
from leap_ray.logger import RunLogger
from leap_ray.runs import RunLock, fresh_run_dir, write_atomically
from leap_ray.suites import suite_for, training_games
from leap_ray.video import gif_summary

log = logging.getLogger(__name__)
RANDOM = "random"  # the paper's "no pretraining": each seed's own freshly drawn encoder
LABEL = re.compile(r"([A-Za-z][\w.-]*):(.+)")


@dataclass(frozen=True)
class Method:
    name: str
    source: str  # a checkpoint or run directory, or "random"
    init: dict | None  # encoder parameter name -> np.ndarray; None: the seed's random encoder


@dataclass(frozen=True)
class EvalJob:
    method: str
    game: str
    seed: int


@dataclass(frozen=True)
class EvalPlan:
    cfg: Config
    methods: tuple[Method, ...]
    games: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    out: Path
    video: bool = False  # one game per (game, method) after seed 0's run, as OUT/videos/*.gif


# -- inputs: everything that can fail on bad input, checked before Ray starts -------------------
def _path(spec: str) -> str:
    """The checkpoint part of `[NAME:]CHECKPOINT`."""
    match = LABEL.fullmatch(spec)
    return match[2] if match else spec


def parse_method(spec: str, need_label: bool) -> Method:
    """`random`, `NAME:CHECKPOINT`, or (for --init) a bare checkpoint or run directory, whose
    label is then "finetune" for a finetune checkpoint, else the run's meta-algorithm."""
    if spec == RANDOM:
        return Method(RANDOM, RANDOM, None)
    match = LABEL.fullmatch(spec)
    if need_label and not match:
        raise ConfigError(f"--baseline {spec!r}: expected 'random' or NAME:CHECKPOINT")
    state = load_checkpoint(_path(spec))
    progress = state["progress"] if state["kind"] == FINETUNE else {}
    if progress.get("games_done", len(progress.get("games", ()))) < len(progress.get("games", ())):
        raise ConfigError(
            f"{_path(spec)}: finetuning stopped after {progress['games_done']} of "
            f"{len(progress['games'])} games; finish it with `finetune --resume`"
        )
    init = checkpoint_encoder(state, _path(spec))
    meta = state["config"].get("meta", {}) if isinstance(state["config"], dict) else {}
    algorithm = "finetune" if state["kind"] == FINETUNE else meta.get("algorithm", "leap")
    label = match[1] if match else algorithm
    return Method(label, _path(spec), init)


def eval_config(init: str, config_path: str | None, overrides: list[str]) -> Config:
    """--config if given, else the --init checkpoint's own config; then the --set overrides."""
    if config_path:
        return load_config(config_path, overrides)
    return config_from_dict(load_checkpoint(_path(init))["config"], overrides)


def resolve_games(cfg: Config, names: list[str]) -> tuple[str, ...]:
    suite = suite_for(cfg.env)
    return tuple(suite.resolve(name) for name in names)


def check_shapes(cfg: Config, games: tuple[str, ...], methods: list[Method]) -> None:
    """Every initialization must fit the configured encoder on every game."""
    for method in (m for m in methods if m.init is not None):
        check_encoder_fits(cfg, games, method.init, f"{method.name} ({method.source})")


def make_plan(
    init: str,
    baselines: list[str],
    games: list[str] | None,
    steps: int | None,
    seeds: int,
    config_path: str | None = None,
    overrides: tuple[str, ...] = (),
    out: str | None = None,
    resume: bool = False,
    video: bool = False,
) -> EvalPlan:
    if seeds < 1 or (steps is not None and steps < 1):
        raise ConfigError(f"--seeds and --steps must be >= 1, got {seeds} and {steps}")
    cfg = eval_config(init, config_path, list(overrides))
    methods = [parse_method(init, need_label=False)]
    methods += [parse_method(spec, need_label=True) for spec in baselines]
    methods.sort(key=lambda m: m.name == RANDOM)  # last: paired differences read "X − random"
    names = [m.name for m in methods]
    if len(set(names)) < len(names):
        raise ConfigError(f"method names must differ, got {names}; label them NAME:CHECKPOINT")
    resolved = resolve_games(cfg, list(games or cfg.env.held_out))
    check_learner(cfg, tuple(resolved))
    if video:
        check_video(cfg)
    check_shapes(cfg, resolved, methods)
    if out is None:
        root = Path(_path(init))
        run = root if root.is_dir() else root.parent
        run = run.parent if run.name == "checkpoints" else run
        out = str(run / f"eval-{time.strftime('%Y%m%d-%H%M%S')}")
    if resume:
        if not (Path(out) / "plan.json").is_file():
            raise ConfigError(f"--resume: {out!r} is not the directory of a stopped evaluation")
    else:
        fresh_run_dir(out, "--out", "; add --resume to continue it")
    steps = steps or learner_for(cfg).steps_per_task(cfg)
    return EvalPlan(cfg, tuple(methods), resolved, tuple(range(seeds)), steps, Path(out), video)


def check_video(cfg: Config) -> None:
    learner, suite = learner_for(cfg), suite_for(cfg.env)
    if not learner.records_video:
        raise ConfigError(f"--video: the {learner.name} learner records no video yet")
    if not suite.video:
        raise ConfigError(f"--video: the {suite.name} suite's observations are not frames")


# -- the learning runs, on Ray ------------------------------------------------------------------
def jobs(plan: EvalPlan) -> list[EvalJob]:
    """Every game x method x seed; the same seeds for every method."""
    return [EvalJob(m.name, g, s) for g in plan.games for m in plan.methods for s in plan.seeds]


def run_jobs(
    plan: EvalPlan,
    address: str | None = None,
    finished: dict[EvalJob, dict] | None = None,
    on_result: Callable[[EvalJob, dict], None] | None = None,
) -> dict[EvalJob, dict]:
    """Every job not `finished` on task-worker actors (the run needs no parameter server, so
    none is pinned); `on_result` sees each result as it arrives."""
    results = dict(finished or {})
    queue = [job for job in jobs(plan) if job not in results]
    if not queue:
        return results
    resources = plan.cfg.resources.model_copy(update={"server_resource": ""})
    cfg = plan.cfg.model_copy(update={"resources": resources})
    started_ray = connect(cfg, address)
    try:
        check_resources(cfg)
        init_refs = {m.name: ray.put(m.init) for m in plan.methods if m.init is not None}
        with tqdm(total=len(queue), unit="run", disable=not cfg.logging.progress) as bar:
            results.update(_dispatch(cfg, plan.steps, queue, init_refs, bar, on_result, plan.video))
        return results
    finally:
        if started_ray:
            ray.shutdown()


def _dispatch(
    cfg: Config,
    steps: int,
    queue: list[EvalJob],
    init_refs: dict,
    bar,
    on_result=None,
    video: bool = False,
) -> dict:
    """Every job on a `WorkerPool`; a job whose worker died runs again, up to max_attempts."""
    workers = WorkerPool(
        lambda: make_worker(cfg, None, None),
        min(cfg.resources.num_workers, len(queue)),
        needs=f"{cfg.resources.cpus_per_worker} CPU",
    )
    results, attempts = {}, dict.fromkeys(queue, 0)

    def call(job: EvalJob):
        record = video and job.seed == 0
        args = (job.game, job.seed, steps, init_refs.get(job.method), job.method, record)
        return lambda worker: worker.run_eval.remote(*args)

    while queue or workers.running:
        while workers.idle and queue:
            job = queue.pop(0)
            workers.run(job, call(job))
        for outcome in workers.wait():
            job = outcome.job
            if outcome.error is not None:
                raise outcome.error
            if outcome.lost:
                attempts[job] += 1
                if attempts[job] >= cfg.resources.max_attempts:
                    raise RunFailed(f"{job}: its worker died {attempts[job]} times")
                log.warning("the worker of %s died; re-running it on a new worker", job)
                queue.insert(0, job)
            else:
                results[job] = outcome.result
                if on_result is not None:
                    on_result(job, outcome.result)
                bar.update(1)
    return results


# -- the record of finished runs: what --resume continues from ---------------------------------
def plan_record(plan: EvalPlan) -> dict:
    """What must match for a stopped evaluation to be continued: the same initializations (by
    content), games, seeds, steps and config."""
    record = {
        "methods": {
            m.name: {"source": m.source, "sha256": init_digest(m.init) if m.init else None}
            for m in plan.methods
        },
        "games": list(plan.games),
        "seeds": list(plan.seeds),
        "steps": plan.steps,
        "config": plan.cfg.to_dict(),
    }
    if plan.video:  # recorded only when asked, so plans written before --video still resume
        record["video"] = True
    return record


def _run_file(plan: EvalPlan, job: EvalJob) -> Path:
    return plan.out / "runs" / f"{job.method}--{_tag(job.game)}--seed{job.seed}.json"


def _video_file(plan: EvalPlan, job: EvalJob) -> Path:
    return plan.out / "videos" / f"{job.method}--{_tag(job.game)}.gif"


def save_run(plan: EvalPlan, job: EvalJob, result: dict) -> None:
    """The run's record (and its video, a file of its own) where a resume finds them."""
    if "video" in result:
        video = _video_file(plan, job)
        video.parent.mkdir(exist_ok=True)
        write_atomically(video, result.pop("video"))
        result["video"] = str(video.relative_to(plan.out))
    path = _run_file(plan, job)
    path.parent.mkdir(exist_ok=True)
    episodes = [list(e) for e in result["episodes"]]
    write_atomically(path, json.dumps({**result, "episodes": episodes}))


def finished_runs(plan: EvalPlan) -> dict[EvalJob, dict]:
    """The runs a stopped (or finished) evaluation made; refuses one whose plan differs from this
    one except by added methods: a run depends only on its own method, game, seed, steps and
    config, so a baseline finished later (finetuning, say) joins without redoing the others."""
    record_path = plan.out / "plan.json"
    record = json.loads(json.dumps(plan_record(plan)))  # as read back: lists, not tuples
    if not record_path.exists():
        write_atomically(record_path, json.dumps(record, indent=2))
        return {}
    saved = json.loads(record_path.read_text())
    changed = sorted(key for key in record if key != "methods" and saved.get(key) != record[key])
    changed += [
        f"method {name}"
        for name, method in saved["methods"].items()
        if record["methods"].get(name) != method
    ]
    if changed:
        raise ConfigError(
            f"{plan.out} evaluated another plan (differs in: {', '.join(changed)}); "
            "resume with the same --init, --baseline, --games, --steps, --seeds and config "
            "(adding a --baseline is allowed)"
        )
    added = [name for name in record["methods"] if name not in saved["methods"]]
    if added:
        print(f"adding {', '.join(added)}: the finished runs of the other methods are kept")
        write_atomically(record_path, json.dumps(record, indent=2))
    results = {}
    for job in jobs(plan):
        path = _run_file(plan, job)
        if path.exists():
            result = json.loads(path.read_text())
            result["episodes"] = tuple(tuple(e) for e in result["episodes"])
            results[job] = result
    return results


# -- outputs: curves.csv, TensorBoard, transfer.png, summary.md ---------------------------------
def _tag(game: str) -> str:
    return game.replace("/", "_")


def binned_curves(plan: EvalPlan, results: dict[EvalJob, dict]) -> tuple[np.ndarray, dict]:
    """The bins' centres and game -> method -> seed -> binned return curve of every run."""
    edges = curves.bin_edges(plan.steps)
    by_game = {g: {m.name: {} for m in plan.methods} for g in plan.games}
    for job, result in results.items():
        steps, returns = [e[0] for e in result["episodes"]], [e[1] for e in result["episodes"]]
        by_game[job.game][job.method][job.seed] = curves.bin_curve(steps, returns, edges)
    return curves.bin_centers(edges), by_game


def transfer_aucs(plan: EvalPlan, results: dict[EvalJob, dict], method: str) -> dict:
    """game -> the AUC of each seed's binned return curve (`curves.auc`) of `method`; a seed
    that finished no episode has none."""
    x, by_game = binned_curves(plan, results)
    return {
        game: [curves.auc(x, c) for c in by_method[method].values() if not np.isnan(c).any()]
        for game, by_method in by_game.items()
    }


def write_outputs(plan: EvalPlan, results: dict[EvalJob, dict], logger: RunLogger) -> None:
    x, by_game = binned_curves(plan, results)
    with open(plan.out / "curves.csv", "w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["method", "game", "seed", "env_step", "episode_return"])
        order = {job: i for i, job in enumerate(jobs(plan))}
        for job in sorted(results, key=order.__getitem__):
            episodes = results[job]["episodes"]
            tag = f"eval/{_tag(job.game)}/{job.method}/seed{job.seed}/episode_return"
            for env_step, episode_return, _ in episodes:
                rows.writerow([job.method, job.game, job.seed, env_step, episode_return])
            logger.rows((tag, step, value) for step, value, _ in episodes)
            if results[job].get("video"):
                gif = (plan.out / results[job]["video"]).read_bytes()
                logger.image(f"eval/{_tag(job.game)}/{job.method}/video", gif_summary("", gif), 0)
    for game, by_method in by_game.items():
        for method, by_seed in by_method.items():
            finished = [c for c in by_seed.values() if not np.isnan(c).any()]
            tag = f"eval/{_tag(game)}/{method}/mean_episode_return"
            means = np.mean(finished, axis=0) if finished else ()
            logger.rows((tag, int(step), value) for step, value in zip(x, means, strict=False))
    curves.transfer_figure(x, by_game).savefig(plan.out / "transfer.png", dpi=100)
    (plan.out / "summary.md").write_text(summary_text(plan, x, by_game))


def summary_text(plan: EvalPlan, x: np.ndarray, by_game: dict) -> str:
    try:
        trained_on = set(training_games(plan.cfg.env))
    except ConfigError:
        trained_on = set()
    header = [
        "# Transfer evaluation",
        "",
        f"{plan.steps} env_steps per run, seeds {list(plan.seeds)} (the same for every method), "
        f"{learner_for(plan.cfg).describe(plan.cfg)}, {len(x)} bins of {x[1] - x[0]:.0f} "
        "env_steps.",
        "",
        *(f"- `{m.name}`: {m.source}" for m in plan.methods),
    ]
    suite = suite_for(plan.cfg.env)
    max_returns = {game: suite.max_return(game) for game in by_game}
    text = curves.summary_markdown(header, x, by_game, max_returns, trained_on)
    sections = interval_section(x, by_game, RANDOM) + health_section(plan)
    return text + "\n" + "\n".join(sections)


def health_section(plan: EvalPlan) -> list[str]:
    """Markdown lines: each initialization's dead and always-on encoder units on fixed frames
    of random play on the evaluated games (the driver's `meta/init_*_units`), the control that
    tells an encoder that lost its units from one that learned features; `random` is the mean
    over the seeds' own encoders. None where the learner does not measure it, or with
    `logging.init_health` off (the probe's frames cost about a second per game)."""
    if not plan.cfg.logging.init_health:
        return []
    learner = learner_for(plan.cfg)
    probe = learner.probe_observations(plan.cfg, plan.games)
    if probe is None:
        return []
    rows = []
    for method in plan.methods:
        inits = (
            [method.init]
            if method.init is not None
            else [learner.new_encoder(plan.cfg, plan.games[0], seed) for seed in plan.seeds]
        )  # the encoder each seed's learner draws (make_learner seeds torch with it)
        readings = [learner.unit_activity(plan.cfg, init, probe) for init in inits]
        dead = np.mean([r["meta/init_dead_units"] for r in readings])
        always = np.mean([r["meta/init_always_on_units"] for r in readings])
        rows.append(
            {"method": method.name, "dead units": f"{dead:.1%}", "always-on units": f"{always:.1%}"}
        )
    return [
        "## Initialization health",
        "",
        f"Encoder output units on {len(probe)} frames of random play on "
        f"{', '.join(plan.games)} that never fire (dead) or always fire (always-on).",
        "",
        curves.markdown_table(rows),
        "",
    ]


def evaluate(
    plan: EvalPlan,
    address: str | None = None,
    command: str = "evaluate",
    resume_command: str | None = None,
) -> Path:
    """Run the plan's evaluation into `plan.out`. On SIGINT/SIGTERM the finished runs stay in
    `OUT/runs`, Ray shuts down, and `resume_command` is printed (exit 130/143)."""
    with RunLock(plan.out), StopSignals() as stop:
        try:
            return _evaluate(plan, address, command)
        except KeyboardInterrupt:
            done = len(list((plan.out / "runs").glob("*.json")))  # none yet: no folder, 0
            again = resume_command or "the same evaluate command with --out and --resume"
            print(
                f"\nstopped by {signal_name(stop.signum)}: {done} of {len(jobs(plan))} runs "
                f"finished and kept in {plan.out / 'runs'}\ncontinue with: {again}",
                flush=True,
            )
            raise Stopped(stop.signum) from None


def _evaluate(plan: EvalPlan, address: str | None, command: str) -> Path:
    start = time.monotonic()
    finished = finished_runs(plan)  # a refused resume stops here, before anything is written
    logger = RunLogger(plan.out, plan.cfg, command)
    methods = {m.name: m.source for m in plan.methods}
    logger.meta["evaluation"] = {"methods": methods, "seeds": list(plan.seeds), "steps": plan.steps}
    success = False
    try:
        if finished:
            print(f"resuming: {len(finished)} of {len(jobs(plan))} runs finished before")
        results = run_jobs(plan, address, finished, lambda job, r: save_run(plan, job, r))
        write_outputs(plan, results, logger)
        made = [r for job, r in results.items() if job not in finished]  # a resume's own work
        env_steps = sum(r["env_steps"] for r in made)
        seconds = time.monotonic() - start
        print(
            f"done: {len(results)} runs ({len(made)} now: {env_steps} env_steps in "
            f"{seconds:.0f} s); {plan.out}"
        )
        success = True
    finally:
        logger.close(success)
    return plan.out
