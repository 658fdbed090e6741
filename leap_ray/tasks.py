"""The task layer (no Ray): what one learning process is and where a run's files go, shared by
meta-training (driver and task workers), the finetuning baseline and transfer evaluation.

Layers, one direction: core (`meta/`) <- learner (`a2c`, `envs`, `models`; or `rllib_ppo`,
imported only when `learner: rllib_ppo`: RLlib ships inside the `ray` package, but the module
never calls Ray) <- tasks (this) <- Ray roles (`worker`, `server`, `pool`, `driver`,
`evaluate`) <- CLI. A task runs here in any process; a worker only adds Ray around it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leap_ray.a2c import LearnerSummary, make_learner
from leap_ray.config import Config, ConfigError, check_worker_devices
from leap_ray.envs import observation_shape
from leap_ray.meta import MetaInitialization, PartialMetaGradient
from leap_ray.models import ActorCritic, encoder_state, make_encoder, shape_mismatch

Encoder = Mapping[str, np.ndarray]  # encoder parameter name (without "encoder.") -> values


@dataclass(frozen=True)
class TaskSpec:
    """One learning process of meta-training: which game, seed and initialization version."""

    task_id: int
    attempt: int
    game: str
    seed: int
    env_steps: int
    init_version: int


# -- tasks: seeds, games, initializations ------------------------------------------------------
def task_seed(root_seed: int, task_id: int) -> int:
    """Seeds derived, never random: one per task id, logged with the task."""
    return int(np.random.SeedSequence([root_seed, task_id]).generate_state(1)[0] % (2**31))


def sample_games(cfg: Config, games: tuple[str, ...], draw: int, count: int) -> list[str]:
    """`count` games of the meta-training pool for draw number `draw` (a meta_step)."""
    rng = np.random.default_rng([cfg.meta.seed, draw])
    replace = count > len(games)
    return [games[i] for i in rng.choice(len(games), size=count, replace=replace)]


def check_learner(cfg: Config, games: tuple[str, ...]) -> None:
    """The learner's checks, before Ray starts: devices, and RLlib's own check of its config."""
    check_worker_devices(cfg)
    if cfg.learner == "rllib_ppo":
        from leap_ray import rllib_ppo

        rllib_ppo.check_rllib(cfg, games[0])


def new_encoder(cfg: Config, game: str, seed: int) -> dict[str, np.ndarray]:
    """The configured learner's encoder for `game`, freshly initialized from `seed`."""
    if cfg.learner == "rllib_ppo":
        from leap_ray import rllib_ppo  # RLlib is imported only by runs that use it

        return rllib_ppo.new_encoder(cfg, game, seed)
    torch.manual_seed(seed)
    encoder = make_encoder(cfg.a2c.encoder, observation_shape(cfg.env, game))
    return {name: p.detach().numpy().copy() for name, p in encoder.named_parameters()}


def initial_encoder(cfg: Config, games: tuple[str, ...]) -> dict[str, np.ndarray]:
    """theta_0 of meta-training (and of the finetuning baseline): drawn from `meta.seed`."""
    return new_encoder(cfg, games[0], cfg.meta.seed)


def check_encoder_fits(cfg: Config, games: tuple[str, ...], init: Encoder, what: str) -> None:
    """An initialization must fit the configured encoder on every game (observation shapes)."""
    got = {name: tuple(np.shape(value)) for name, value in init.items()}
    encoder = f"a2c.encoder={cfg.a2c.encoder!r}" if cfg.learner == "a2c" else "RLlib's encoder"
    for game in games:
        want = {name: np.shape(value) for name, value in new_encoder(cfg, game, 0).items()}
        bad = shape_mismatch(want, got)
        if bad is not None:
            raise ConfigError(
                f"{what}: its encoder does not fit {encoder} on {game} "
                f"({bad}: checkpoint {got.get(bad)}, config {want.get(bad)})"
            )


def load_encoder(model: ActorCritic, init: Encoder) -> None:
    """Copy an initialization into the model's encoder (its memory layouts kept)."""
    # a copy: arrays from Ray's object store are read-only, which torch warns about
    model.encoder.load_state_dict({name: torch.tensor(value) for name, value in init.items()})


def encoder_checkpoint(cfg: Config, init: Encoder, driver: dict) -> dict:
    """A leap-ray checkpoint holding only an encoder: `load_checkpoint` and `evaluate` take it."""
    meta_init = MetaInitialization(init, cfg.meta.optimizer, cfg.meta.lr)
    return {
        "format": 1,
        "meta_init": meta_init.state_dict(),
        "meta_step": 0,
        "ledger": {},
        "config": cfg.to_dict(),
        "torch_rng": torch.get_rng_state(),
        "driver": driver,
    }


def checkpoint_encoder(state: Mapping, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The initialization a checkpoint holds, as numpy arrays, once its whole meta-state
    (initialization and meta-optimizer state) has passed the template checks of
    `MetaInitialization.load_state_dict`."""
    meta = state["config"].get("meta", {}) if isinstance(state["config"], Mapping) else {}
    init = {name: t.numpy().copy() for name, t in state["meta_init"]["init"].items()}
    try:
        probe = MetaInitialization(init, meta.get("optimizer", "adam"), meta.get("lr", 0.01))
        probe.load_state_dict(state["meta_init"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigError(f"{source}: unusable meta-state: {error}") from None
    return init


# -- what a meta-batch of tasks did ------------------------------------------------------------
def late_return(episodes, env_steps: int) -> float | None:
    """Mean return of the episodes that ended in the last quarter of a task (None: none did)."""
    late = [r for step, r, _ in episodes if step > 0.75 * env_steps]
    return sum(late) / len(late) if late else None


def meta_batch_stats(reports) -> dict[str, float]:
    """Per meta_step: the mean path length, energy and distance travelled of the batch's tasks
    (what Leap's objective says should shrink) and each game's late return."""
    if not reports:
        return {}
    stats = {
        f"meta/task_path_{key}": sum(r.path[f"path/{key}"] for r in reports) / len(reports)
        for key in ("length", "energy", "distance_from_init")
        if all(f"path/{key}" in r.path for r in reports)
    }
    by_game: dict[str, list[float]] = {}
    for r in reports:
        value = late_return(r.episodes, r.env_steps)
        if value is not None:
            by_game.setdefault(r.game, []).append(value)
    for game, values in by_game.items():
        stats[f"meta/task_return/{game}"] = sum(values) / len(values)
    return stats


# -- running a task --------------------------------------------------------------------------
def run_meta_task(
    cfg: Config,
    spec: TaskSpec,
    init: Encoder,
    on_partial: Callable[[PartialMetaGradient], None],
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> LearnerSummary:
    """One learning process of meta-training: a learner from initialization `spec.init_version`,
    its meta-learner streaming partials every `meta.stream_every` updates and at the end."""
    if cfg.learner == "rllib_ppo":
        from leap_ray import rllib_ppo

        return rllib_ppo.run_meta_task(cfg, spec, init, on_partial, on_log)
    learner = make_learner(cfg, spec.game, spec.seed)
    try:
        learner.meta_learner.load(init, spec.init_version)
        learner.meta_learner.to(learner.model)
        return learner.train(
            spec.env_steps,
            stream_every=cfg.meta.stream_every,
            on_partial=on_partial,
            on_log=on_log,
            log_every=cfg.logging.log_every,
            measure_path=cfg.logging.measure_paths,
        )
    finally:
        learner.envs.close()


def run_transfer_task(
    cfg: Config,
    game: str,
    seed: int,
    steps: int,
    init: Encoder | None,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[LearnerSummary, dict[str, np.ndarray]]:
    """A fresh learner (new heads, no meta-learner) whose encoder starts from `init` (None: the
    seed's own random encoder). Returns its summary and its final encoder."""
    if cfg.learner == "rllib_ppo":
        from leap_ray import rllib_ppo

        return rllib_ppo.run_transfer_task(cfg, game, seed, steps, init, on_log)
    learner = make_learner(cfg, game, seed, meta=False)
    try:
        if init is not None:
            load_encoder(learner.model, init)
        summary = learner.train(
            steps,
            on_log=on_log,
            log_every=cfg.logging.log_every,
            measure_path=cfg.logging.measure_paths,
        )
    finally:
        learner.envs.close()
    return summary, {name: t.numpy() for name, t in encoder_state(learner.model).items()}


# -- run directories ---------------------------------------------------------------------------
def run_name(cfg: Config, prefix: str = "") -> str:
    """`logging.run_name`, else the prefix and a timestamp."""
    return cfg.logging.run_name or prefix + time.strftime("%Y%m%d-%H%M%S")


def fresh_run_dir(path: str | Path, what: str, hint: str = "") -> Path:
    """A run never writes into another run's files: an existing non-empty directory is refused."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{what}: {str(path)!r} exists and is not empty{hint}")
    return path


class RunLock:
    """One process writes a run directory at a time: an exclusive `flock` on `RUN/lock`, which
    the kernel releases when its holder exits however it ends (no stale locks). The file names
    the holder (pid, host, since) for the refusal message; it stays behind, empty, after a run."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(fd)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
            raise ConfigError(
                f"{self.path.parent} is in use by pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {since}: one process writes a run at a time"
            ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return self

    def _holder(self) -> dict:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the lock
            self.fd = None
