"""The meta-training loop: samples meta-batches from the training games, keeps every task worker
busy (through `distributed.pool.WorkerPool`), re-runs tasks whose worker died, asks the
parameter server for meta_steps, and owns the TensorBoard writer. Ray is started and the roles
are made by `distributed.launch`; the stop contract is `distributed.signals`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import ray
from tqdm import tqdm

from leap_ray.checkpoint import FINETUNE, list_checkpoints, load_checkpoint
from leap_ray.config import Config, check_resumable, config_from_dict
from leap_ray.distributed.launch import (
    check_resources,
    connect,
    make_server,
    make_sink,
    make_worker,
)
from leap_ray.distributed.pool import WorkerPool
from leap_ray.distributed.signals import Stopped, StopSignals, signal_name
from leap_ray.distributed.worker import TaskReport
from leap_ray.errors import CheckpointError, ConfigError, LearnerDiverged, RunFailed
from leap_ray.learners import check_learner, initial_encoder, learner_for
from leap_ray.logger import RunLogger
from leap_ray.meta import check_meta_state
from leap_ray.runs import RunLock, fresh_run_dir, run_name
from leap_ray.suites import suite_for, training_games
from leap_ray.tasks import TaskSpec, meta_batch_stats, sample_games, task_seed

log = logging.getLogger(__name__)


class Dispatcher:
    """Runs tasks on a `WorkerPool`; a task whose worker died, or that raised, is re-run from the
    newest initialization under attempt + 1 (the server's ledger drops the old attempt)."""

    def __init__(self, cfg: Config, server, sink) -> None:
        self.cfg = cfg
        self.workers = WorkerPool(
            lambda: make_worker(cfg, server, sink),
            cfg.resources.num_workers,
            needs=f"{cfg.resources.cpus_per_worker} CPU",
        )
        self.server, self.sink = server, sink
        self.queue: list[TaskSpec] = []
        self.failed: list[tuple[TaskSpec, str]] = []  # deterministic failures, not re-run
        self.version, self.init_ref = -1, None

    def set_init(self, version: int, init_ref) -> None:
        self.version, self.init_ref = version, init_ref

    def submit(self, spec: TaskSpec) -> None:
        self.queue.append(spec)
        self._fill()

    def _fill(self) -> None:
        while self.workers.idle and self.queue:
            spec = self.queue.pop(0)
            if spec.init_version != self.version:  # re-runs start from the newest init
                spec = dataclasses.replace(spec, init_version=self.version)
            init_ref = self.init_ref
            self.workers.run(spec, lambda worker, s=spec, i=init_ref: worker.run_task.remote(s, i))

    @property
    def busy(self) -> int:
        return self.workers.running + len(self.queue)

    def wait(self, timeout: float) -> list[TaskReport]:
        """Reports of tasks finished within `timeout` seconds; failed tasks are queued again."""
        reports = []
        for outcome in self.workers.wait(timeout):
            spec = outcome.job
            if outcome.lost:
                log.warning("worker of task %d (%s) died; re-running it", spec.task_id, spec.game)
                self._retry(spec, "its worker died")
            elif outcome.error is not None and not (_alive(self.server) and _alive(self.sink)):
                raise RoleLost(outcome.error)  # what the task talks to died: retries cannot help
            elif isinstance(getattr(outcome.error, "cause", outcome.error), LearnerDiverged):
                reason = str(getattr(outcome.error, "cause", outcome.error))
                log.warning(
                    "task %d: %s; not re-run (the same seed diverges again)", spec.task_id, reason
                )
                ray.get(self.server.fail.remote(spec.task_id, spec.attempt, reason))
                self.failed.append((spec, reason))
            elif outcome.error is not None:
                self._retry(spec, str(outcome.error).splitlines()[0])
            else:
                reports.append(outcome.result)
        self._fill()
        return reports

    def _retry(self, spec: TaskSpec, why: str) -> None:
        if spec.attempt + 1 >= self.cfg.resources.max_attempts:
            raise RunFailed(
                f"task {spec.task_id} ({spec.game}) failed {spec.attempt + 1} times; last: {why}"
            )
        self.queue.insert(0, dataclasses.replace(spec, attempt=spec.attempt + 1))


# -- the loop -----------------------------------------------------------------------------------
class MetaTrainingLoop:
    """Meta-batches of tasks on the workers, a meta_step per batch (sync) or per `async_k`
    finished tasks (async); `server` and `sink` are the run's roles, made by `_train`."""

    def __init__(
        self,
        cfg: Config,
        server,
        sink,
        games: tuple[str, ...],
        logger: RunLogger,
        theta_0: dict,
        resumed: bool = False,
    ) -> None:
        self.cfg, self.server, self.sink, self.games, self.logger = cfg, server, sink, games, logger
        self.theta_0 = theta_0
        self.dispatcher = Dispatcher(cfg, server, self.sink)
        state = ray.get(server.state.remote())
        if resumed:
            print(
                f"resumed at meta_step {state['meta_step']} (init version {state['version']}, "
                f"sha256 {state['init_sha256']})",
                flush=True,
            )
        self.meta_step = state["meta_step"]
        progress = state["progress"]
        self.next_task_id = progress.get("next_task_id", 0)
        # tasks made but not yet applied: an async resume runs them again (sync re-runs its batch)
        self.open: dict[int, TaskSpec] = {}
        self.pending = [TaskSpec(**spec) for spec in progress.get("pending", [])]
        self.env_steps = progress.get("env_steps", 0)
        self.steps_per_task = learner_for(cfg).steps_per_task(cfg)
        self.learner = learner_for(cfg)
        # the initialization's health, read on the same frames of the held-out games each time
        suite = suite_for(cfg.env)
        probe_games = tuple(suite.resolve(g) for g in cfg.env.held_out) or games[:1]
        self.probe = None
        if cfg.logging.init_health:
            self.probe = self.learner.probe_observations(cfg, probe_games)
        self.diverged: list[str] = []  # why each task that failed for good failed
        self.rejected: list[str] = []  # why the server rejected a task
        self.start_time, self.start_steps = time.monotonic(), self.env_steps
        self.bar = tqdm(
            total=cfg.meta.meta_steps,
            initial=self.meta_step,
            unit="meta_step",
            disable=not cfg.logging.progress,
        )

    def _refresh_init(self) -> None:
        version, (init_ref,) = ray.get(self.server.current.remote())
        self.dispatcher.set_init(version, init_ref)

    def _new_task(self, game: str) -> TaskSpec:
        task_id = self.next_task_id
        self.next_task_id += 1
        spec = TaskSpec(
            task_id,
            0,
            game,
            task_seed(self.cfg.meta.seed, task_id),
            self.steps_per_task,
            self.dispatcher.version,
        )
        self.open[task_id] = spec
        return spec

    def _collect(self, finished: list[TaskReport]) -> None:
        reports = self.dispatcher.wait(timeout=1.0)
        for report in reports:
            self.env_steps += report.env_steps
            if report.rejected:
                log.warning(
                    "task %d (%s) rejected: %s", report.task_id, report.game, report.rejected
                )
        finished.extend(reports)
        self.logger.tasks(reports)
        self.logger.failed_tasks(self.dispatcher.failed)
        for spec, reason in self.dispatcher.failed:
            self.open.pop(spec.task_id, None)
            self.diverged.append(reason)
        self.rejected += [r.rejected for r in reports if r.rejected]
        self.dispatcher.failed = []
        self.logger.rows(ray.get(self.sink.drain.remote()))
        rate = (self.env_steps - self.start_steps) / max(time.monotonic() - self.start_time, 1e-9)
        self.bar.set_postfix(
            tasks_running=self.dispatcher.workers.running, env_steps_per_s=f"{rate:.0f}"
        )

    def _apply(self, task_ids: list[int], reports: list[TaskReport]) -> None:
        for task_id in task_ids:
            self.open.pop(task_id, None)
        progress = {
            "next_task_id": self.next_task_id,
            "env_steps": self.env_steps,
            "pending": [dataclasses.asdict(spec) for _, spec in sorted(self.open.items())],
        }
        stats = checkpointing(self.server.apply.remote(task_ids, progress))
        stats.update(meta_batch_stats([r for r in reports if r.task_id in task_ids]))
        self.meta_step = int(stats["meta/meta_step"])
        self._refresh_init()
        stats.update(self.init_health())
        rate = (self.env_steps - self.start_steps) / max(time.monotonic() - self.start_time, 1e-9)
        self.logger.scalars(self.meta_step, {**stats, "perf/env_steps_per_second": rate})
        self.bar.update(1)

    def init_health(self) -> dict[str, float]:
        """The current initialization's dead and always-on encoder units on the probe frames,
        and each parameter's distance from theta_0 relative to its size there."""
        if not self.cfg.logging.init_health:
            return {}
        init = ray.get(self.dispatcher.init_ref)
        health = {}
        if self.probe is not None:
            health.update(self.learner.unit_activity(self.cfg, init, self.probe))
        for name, start in self.theta_0.items():
            size = float(np.linalg.norm(start))
            moved = float(np.linalg.norm(init[name] - start))
            health[f"meta/init_relative_distance/{name}"] = moved / size if size > 0 else moved
        return health

    def log_start(self) -> None:
        """theta_0's health at meta_step 0, the reference for the later ones."""
        if self.meta_step == 0:
            self._refresh_init()
            self.logger.scalars(0, self.init_health())

    def run_sync(self) -> None:
        batch = self.cfg.meta.meta_batch_size
        while self.meta_step < self.cfg.meta.meta_steps:
            self._refresh_init()
            self.next_task_id = self.meta_step * batch  # a resumed batch re-runs under its ids
            games = sample_games(self.cfg, self.games, self.meta_step, batch)
            specs = [self._new_task(game) for game in games]
            for spec in specs:
                self.dispatcher.submit(spec)
            finished: list[TaskReport] = []
            while self.dispatcher.busy:
                self._collect(finished)
            self._apply([spec.task_id for spec in specs], finished)

    def run_async(self) -> None:
        k = self.cfg.meta.async_k
        self._refresh_init()
        finished: list[TaskReport] = []
        for spec in self.pending:  # made before a stop, not applied: they run again
            self.open[spec.task_id] = spec
            self.dispatcher.submit(spec)
        while self.meta_step < self.cfg.meta.meta_steps:
            while self.dispatcher.busy < self.cfg.resources.num_workers:
                self.dispatcher.submit(
                    self._new_task(sample_games(self.cfg, self.games, self.next_task_id, 1)[0])
                )
            self._collect(finished)
            while len(finished) >= k and self.meta_step < self.cfg.meta.meta_steps:
                group, finished = finished[:k], finished[k:]
                self._apply([r.task_id for r in group], group)

    def run(self) -> None:
        self.log_start()
        (self.run_async if self.cfg.meta.mode == "async" else self.run_sync)()
        self.bar.close()

    def why_nothing_applied(self) -> str:
        """The cause, in words, when no task of the run reached a meta-update."""
        parts = []
        if self.diverged:
            parts.append(f"{len(self.diverged)} tasks diverged (first: {self.diverged[0]})")
        if self.rejected:
            parts.append(f"{len(self.rejected)} were rejected (first: {self.rejected[0]})")
        if not parts:
            return "every task was rejected or failed"
        every = len(self.diverged) + len(self.rejected) == self.next_task_id
        return ("all " if every else "") + "; ".join(parts)


def prepare(cfg: Config, resume: str | None) -> tuple[Path, tuple, dict, dict | None]:
    """Everything that can fail on bad input, done before Ray starts."""
    games = training_games(cfg.env)
    check_learner(cfg, games)
    init = initial_encoder(cfg, games)
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resume)  # a run directory or one checkpoint file in it
        run_dir = Path(resume).parent.parent if Path(resume).is_file() else Path(resume)
        newest = list_checkpoints(run_dir)[-1] if list_checkpoints(run_dir) else None
        if Path(resume).is_file() and newest and newest.resolve() != Path(resume).resolve():
            raise ConfigError(
                f"--resume {resume}: the run has a newer checkpoint ({newest.name}) that going on "
                f"from this one would overwrite; to branch from it, copy it into the "
                f"checkpoints/ folder of a new run directory and resume that"
            )
        if checkpoint["kind"] == FINETUNE:
            raise ConfigError(f"--resume {resume}: a finetuning run; use finetune --resume")
        shapes = {name: tuple(value.shape) for name, value in init.items()}
        try:
            check_meta_state(checkpoint["meta_init"], shapes, cfg.meta.optimizer)
        except ValueError as error:  # an incompatible encoder or meta-optimizer state
            raise CheckpointError(f"--resume {resume}: {error}") from None
        check_resumable(config_from_dict(checkpoint["config"]), cfg)
    else:
        run_dir = fresh_run_dir(
            Path(cfg.logging.logdir) / run_name(cfg), "logging.run_name", "; use --resume"
        )
    return run_dir, games, init, checkpoint


class RoleLost(Exception):
    """The parameter server or telemetry sink died under a running task."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _alive(actor) -> bool:
    """False only when Ray says the actor is gone; a slow one (a long fsync) is alive."""
    try:
        ray.get(actor.ping.remote(), timeout=60)
    except ray.exceptions.RayActorError:
        return False
    except ray.exceptions.GetTimeoutError:
        return True
    return True


def checkpointing(ref):
    """`ray.get` of a server call that may write a checkpoint (`save`, `apply`): a failed write
    (a full disk) is its one-line CheckpointError, not Ray's wrapped traceback."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, CheckpointError):
            raise error.cause from None
        raise


def _save(server) -> str:
    return checkpointing(server.save.remote())


def rerun_ids(cfg: Config, checkpoint: dict):
    """Which task ids a resume runs again: sync, the unfinished meta-batch (ids from
    meta_step * meta_batch_size); async, the tasks made but not applied and every later id."""
    driver = checkpoint["progress"]
    if cfg.meta.mode == "sync":
        first = int(checkpoint["meta_step"]) * cfg.meta.meta_batch_size
        return lambda task_id: task_id >= first
    pending = {spec["task_id"] for spec in driver.get("pending", [])}
    later = int(driver.get("next_task_id", 0))
    return lambda task_id: task_id in pending or task_id >= later


def train(cfg: Config, resume: str | None = None, address: str | None = None) -> Path:
    run_dir, games, init, checkpoint = prepare(cfg, resume)
    started_ray = connect(cfg, address)
    try:
        check_resources(cfg)  # the last check before anything is written
        with RunLock(run_dir):
            return _train(cfg, resume, run_dir, games, init, checkpoint)
    finally:
        if started_ray:
            ray.shutdown()


def _train(cfg: Config, resume, run_dir: Path, games, init, checkpoint) -> Path:
    logger = None
    success = False
    with StopSignals() as stop:
        try:
            server = make_server(cfg, init, run_dir, checkpoint)
            if checkpoint is None:  # meta_step 0 on disk: a run stopped before its first
                _save(server)  # meta_step resumes like any other
            logger = RunLogger(run_dir, cfg, "train" + (f" --resume {resume}" if resume else ""))
            if checkpoint is not None:
                logger.settle_tasks(rerun_ids(cfg, checkpoint))
            sink = make_sink()
            resumed = checkpoint is not None
            loop = MetaTrainingLoop(cfg, server, sink, games, logger, init, resumed=resumed)
            _run_loop(loop, server, run_dir, stop)
            if ray.get(server.state.remote())["version"] == 0:
                raise RunFailed(
                    f"no meta-update was applied in {loop.meta_step} meta_steps: "
                    f"{loop.why_nothing_applied()} (see {run_dir / 'tasks.jsonl'})"
                )
            success = True
            print(
                f"done: {loop.meta_step} meta_steps, {loop.env_steps} env_steps; run in {run_dir}"
            )
        finally:
            if logger is not None:
                logger.close(success)
    return run_dir


def _run_loop(loop: MetaTrainingLoop, server, run_dir: Path, stop: StopSignals) -> None:
    """The loop, with what a lost role or a stop signal leaves behind said in one line."""
    try:
        loop.run()
    except (ray.exceptions.RayActorError, RoleLost) as error:
        role = "telemetry sink" if _alive(server) else "parameter server"
        newest = list_checkpoints(run_dir)
        raise RunFailed(
            f"the {role} died (its process or node was lost: {type(error).__name__}) during "
            f"meta_step {loop.meta_step}; the newest checkpoint is "
            f"{newest[-1].name if newest else 'none'}; continue with: python -m leap_ray "
            f"train --resume {run_dir}"
        ) from None
    except KeyboardInterrupt:  # the meta_step in progress is abandoned: its tasks run again
        try:  # on resume
            path = _save(server)
        except ray.exceptions.RayActorError:
            path = "nothing: the parameter server is gone"
        print(
            f"\nstopped by {signal_name(stop.signum)} at meta_step {loop.meta_step}: "
            f"saved {path}\ncontinue with: python -m leap_ray train --resume {run_dir}",
            flush=True,
        )
        raise Stopped(stop.signum) from None
