"""One typed configuration: a frozen dataclass per concern under `Config`, loaded strictly from
YAML (unknown keys rejected) with `--set section.field=value` overrides, validated before any
actor starts. Glossary: `env_step` (agent steps), `update` (learner optimizer steps),
`meta_step` (parameter-server updates)."""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A one-line, user-facing message naming the offending field."""


def _check(condition: bool, name: str, why: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"{name}: {why}, got {value!r}")


@dataclass(frozen=True)
class EnvConfig:
    """Which tasks the learners train on and how observations look."""

    suite: str = "atari"  # "atari" (ALE) or "gym" (vector-observation gymnasium tasks)
    games: tuple[str, ...] = ()  # the meta-training pool; empty: classic games with <= max_actions
    max_actions: int = 10  # pool filter on the minimal action set (paper: <= 10)
    held_out: tuple[str, ...] = ("Breakout", "SpaceInvaders")  # never meta-trained on
    num_envs: int = 32  # parallel environments per learner (paper: batch 32)
    grayscale: bool = False  # the paper uses RGB frames
    frame_stack: int = 1  # frames stacked per observation
    frame_skip: int = 4
    noop_max: int = 30  # random no-ops at episode start
    # sticky actions (Machado et al. 2018; ALE v5's default is 0.25): the chance that the emulator
    # repeats the previous action instead. The paper states none and follows the DQN/A3C
    # protocol without them (as SB3's NoFrameskip-v4 games do): 0
    repeat_action_probability: float = 0.0
    # a lost life is a learning terminal (OpenAI baselines, SB3); episode statistics still count
    # whole games. The paper does not say; on for the games where it helps (Breakout)
    life_loss_terminal: bool = True
    fire_reset: bool = True  # press FIRE at each game's start where the game needs it
    # time limit in emulator frames (108,000 = 30 minutes of play, the common protocol); a cut
    # episode is bootstrapped from its value, not treated as a terminal
    max_episode_frames: int = 108_000
    reward_clip: float = 5.0  # rewards clipped to +-reward_clip for learning only (paper: 5)
    env_threads: int = 1  # ALE C++ threads per half of the environments

    def __post_init__(self) -> None:
        _check(self.suite in ("atari", "gym"), "env.suite", "must be 'atari' or 'gym'", self.suite)
        _check(self.max_actions >= 2, "env.max_actions", "must be >= 2", self.max_actions)
        _check(self.num_envs >= 1, "env.num_envs", "must be >= 1", self.num_envs)
        _check(self.frame_stack >= 1, "env.frame_stack", "must be >= 1", self.frame_stack)
        _check(self.frame_skip >= 1, "env.frame_skip", "must be >= 1", self.frame_skip)
        _check(self.noop_max >= 0, "env.noop_max", "must be >= 0", self.noop_max)
        _check(
            0 <= self.repeat_action_probability <= 1,
            "env.repeat_action_probability",
            "must be in [0, 1]",
            self.repeat_action_probability,
        )
        _check(
            self.max_episode_frames >= self.frame_skip,
            "env.max_episode_frames",
            "must be >= env.frame_skip",
            self.max_episode_frames,
        )
        _check(self.reward_clip > 0, "env.reward_clip", "must be > 0", self.reward_clip)
        _check(self.env_threads >= 1, "env.env_threads", "must be >= 1", self.env_threads)


@dataclass(frozen=True)
class A2CConfig:
    """The per-task learner; defaults are the paper's Atari settings."""

    encoder: str = "mnih2013"  # mnih2013 (paper), nature, or mlp (vector observations)
    steps_per_task: int = 1_000_000  # env_steps per task (paper: 1M workshop, 5M final)
    unroll: int = 5  # env_steps per environment between updates
    lr: float = 1e-4  # RMSProp learning rate
    rms_eps: float = 1e-4
    rms_alpha: float = 0.99
    entropy_cost: float = 0.01
    value_cost: float = 0.5
    discount: float = 0.99
    max_grad_norm: float = 0.0  # 0 disables gradient-norm clipping
    device: str = "cpu"  # cpu or cuda
    # bfloat16: the forwards run under autocast (fast on CPUs with AMX and on Ampere+ GPUs);
    # parameters, gradients, losses and the meta-gradient stay float32
    precision: str = "float32"
    torch_threads: int = 1  # intra-op threads per learner

    def __post_init__(self) -> None:
        encoders = ("mnih2013", "nature", "mlp")
        _check(self.encoder in encoders, "a2c.encoder", f"must be one of {encoders}", self.encoder)
        _check(self.steps_per_task >= 1, "a2c.steps_per_task", "must be >= 1", self.steps_per_task)
        _check(self.unroll >= 1, "a2c.unroll", "must be >= 1", self.unroll)
        for name in ("lr", "rms_eps"):
            _check(getattr(self, name) > 0, f"a2c.{name}", "must be > 0", getattr(self, name))
        _check(0 <= self.rms_alpha < 1, "a2c.rms_alpha", "must be in [0, 1)", self.rms_alpha)
        _check(0 <= self.discount <= 1, "a2c.discount", "must be in [0, 1]", self.discount)
        for name in ("entropy_cost", "value_cost", "max_grad_norm"):
            _check(getattr(self, name) >= 0, f"a2c.{name}", "must be >= 0", getattr(self, name))
        _check(
            self.device == "cpu" or self.device.startswith("cuda"),
            "a2c.device",
            "must be 'cpu' or 'cuda[:N]'",
            self.device,
        )
        precisions = ("float32", "bfloat16")
        _check(
            self.precision in precisions,
            "a2c.precision",
            f"must be one of {precisions}",
            self.precision,
        )
        _check(self.torch_threads >= 1, "a2c.torch_threads", "must be >= 1", self.torch_threads)


@dataclass(frozen=True)
class MetaConfig:
    """The meta-learner (worker side) and the meta-optimizer (server side)."""

    algorithm: str = "leap"  # leap or reptile
    metric: str = "energy"  # energy (paper's Atari choice) or length
    loss_term: bool = True
    stabilizer: bool = True
    optimizer: str = "adam"  # adam or sgd, over the initialization
    lr: float = 0.01
    meta_batch_size: int = 16  # tasks per meta_step (sync) (paper: 16)
    meta_steps: int = 100
    mode: str = "sync"  # sync: one meta_step per full meta-batch; async: every async_k tasks
    async_k: int = 4
    max_staleness: int = 2  # async: partials from inits older than this many versions are dropped
    stream_every: int = 100  # updates between partials streamed to the server
    max_partial_norm: float = 1e6  # a partial with a larger norm is rejected
    seed: int = 0  # root seed; task seeds are derived from it

    def __post_init__(self) -> None:
        algorithms = ("leap", "reptile")
        _check(
            self.algorithm in algorithms,
            "meta.algorithm",
            f"must be one of {algorithms}",
            self.algorithm,
        )
        _check(
            self.metric in ("energy", "length"),
            "meta.metric",
            "must be 'energy' or 'length'",
            self.metric,
        )
        _check(
            self.optimizer in ("adam", "sgd"),
            "meta.optimizer",
            "must be 'adam' or 'sgd'",
            self.optimizer,
        )
        _check(self.lr > 0, "meta.lr", "must be > 0", self.lr)
        for name in ("meta_batch_size", "meta_steps", "async_k", "stream_every"):
            _check(getattr(self, name) >= 1, f"meta.{name}", "must be >= 1", getattr(self, name))
        _check(self.mode in ("sync", "async"), "meta.mode", "must be 'sync' or 'async'", self.mode)
        _check(self.max_staleness >= 0, "meta.max_staleness", "must be >= 0", self.max_staleness)
        _check(
            self.max_partial_norm > 0, "meta.max_partial_norm", "must be > 0", self.max_partial_norm
        )


@dataclass(frozen=True)
class ResourcesConfig:
    """What each Ray actor asks the cluster for."""

    num_workers: int = 2  # task-worker actors
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0  # fractional GPUs let several workers share one
    server_resource: str = ""  # a custom resource to pin the parameter server (e.g. leap_server)
    max_attempts: int = 3  # attempts per task before the run fails

    def __post_init__(self) -> None:
        _check(self.num_workers >= 1, "resources.num_workers", "must be >= 1", self.num_workers)
        _check(
            self.cpus_per_worker > 0,
            "resources.cpus_per_worker",
            "must be > 0",
            self.cpus_per_worker,
        )
        _check(
            self.gpus_per_worker >= 0,
            "resources.gpus_per_worker",
            "must be >= 0",
            self.gpus_per_worker,
        )
        _check(self.max_attempts >= 1, "resources.max_attempts", "must be >= 1", self.max_attempts)


@dataclass(frozen=True)
class LoggingConfig:
    """Where a run writes, and how often."""

    logdir: str = "runs"  # a run writes under logdir/<run name>
    run_name: str = ""  # empty: a timestamp
    checkpoint_every: int = 1  # meta_steps between checkpoints
    log_every: int = 50  # learner updates between TensorBoard points of a task
    keep_checkpoints: int = 3
    progress: bool = True  # a progress bar on the terminal
    dashboard: bool = True  # start Ray's dashboard with a local Ray
    dashboard_host: str = "127.0.0.1"  # its bind address: loopback unless you mean otherwise

    def __post_init__(self) -> None:
        _check(
            self.checkpoint_every >= 1,
            "logging.checkpoint_every",
            "must be >= 1",
            self.checkpoint_every,
        )
        _check(
            self.keep_checkpoints >= 1,
            "logging.keep_checkpoints",
            "must be >= 1",
            self.keep_checkpoints,
        )


@dataclass(frozen=True)
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    a2c: A2CConfig = field(default_factory=A2CConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def updates_per_task(self) -> int:
        return max(1, self.a2c.steps_per_task // (self.env.num_envs * self.a2c.unroll))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe data (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def _coerce(value: Any, annotation: Any, name: str) -> Any:
    """Plain YAML values into the annotated type; bool is not an int here, an int is a float."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{name}: must be a list of strings, got {value!r}")
        return tuple(_coerce(item, typing.get_args(annotation)[0], name) for item in items)
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is float and isinstance(value, str):  # PyYAML reads 1e-4 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if annotation in (int, str, bool) and type(value) is annotation:
        return value
    kind = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    raise ConfigError(f"{name}: must be {kind}, got {value!r}")


def _build(cls: type, data: Any, section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{section or 'config'}: must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{section}." if section else ""
        raise ConfigError(
            f"unknown config key '{where}{unknown[0]}' (known: {', '.join(sorted(known))})"
        )
    kwargs = {}
    for key, value in data.items():
        name = f"{section}.{key}" if section else key
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, name)
        else:
            kwargs[key] = _coerce(value, hint, name)
    return cls(**kwargs)


def _apply_override(data: dict, override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected section.field=value")
    *sections, leaf = key.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {section} is not a section")
    node[leaf] = yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Strict YAML (safe_load: no code is ever evaluated) plus overrides -> a validated Config."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return config_from_dict(data, overrides)


def config_from_dict(data: dict, overrides: typing.Sequence[str] = ()) -> Config:
    """Rebuild a Config saved with `Config.to_dict` (e.g. from a checkpoint), with overrides."""
    data = copy.deepcopy(data)
    for override in overrides:
        _apply_override(data, override)
    return _build(Config, data, "")
