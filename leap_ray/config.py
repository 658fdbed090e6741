"""One typed configuration: a frozen pydantic model per concern under `Config`, loaded strictly
from YAML (unknown keys rejected) with `--set section.field=value` overrides, validated before
any actor starts, and passed to the Ray actors as is. Constraints are declared on the fields;
a violation is a one-line `ConfigError` naming the field and quoting at most a short prefix of
the value. Glossary: `env_step` (agent steps), `update` (learner optimizer steps), `meta_step`
(parameter-server updates)."""

from __future__ import annotations

import copy
import math
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from leap_ray.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000  # a config is a page of YAML; larger files are refused unread


def short_repr(value: Any) -> str:
    """At most ~60 characters of a value's repr, however large or deeply nested it is."""
    limits = reprlib.Repr()
    limits.maxlevel, limits.maxstring, limits.maxother = 2, 40, 40
    limits.maxlist = limits.maxtuple = limits.maxdict = limits.maxset = 4
    text = limits.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _yaml_float(value: Any) -> Any:
    """PyYAML reads 1e-4 (no dot) as a string; such a string is a float here."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _one_or_many(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


Float = Annotated[float, BeforeValidator(_yaml_float), Field(strict=True, allow_inf_nan=False)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
UnitFloat = Annotated[Float, Field(ge=0, le=1)]
Count = Annotated[StrictInt, Field(ge=1)]
Names = Annotated[tuple[StrictStr, ...], BeforeValidator(_one_or_many)]


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_non_finite(v) for v in value)
    return False


def _unique(names: tuple[str, ...], field: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{field}: {name!r} is listed twice")
        seen.add(name)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class EnvConfig(Section):
    """Which tasks the learners train on and how observations look."""

    # ALE, or vector-observation gymnasium tasks: leap_ray/suites' registry (a test keeps the
    # names equal)
    suite: Literal["atari", "gym", "minatar"] = "atari"
    games: Names = ()  # the meta-training pool; empty: classic games with <= max_actions
    max_actions: Annotated[StrictInt, Field(ge=2)] = 10  # pool filter (paper: <= 10)
    held_out: Names = ("Breakout", "SpaceInvaders")  # never meta-trained on
    num_envs: Count = 32  # parallel environments per learner (paper: batch 32)
    grayscale: StrictBool = False  # the paper uses RGB frames
    frame_stack: Count = 1  # frames stacked per observation
    frame_skip: Count = 4
    noop_max: Annotated[StrictInt, Field(ge=0)] = 30  # random no-ops at episode start
    # sticky actions (Machado et al. 2018; ALE v5's default is 0.25): the chance that the emulator
    # repeats the previous action instead. The paper states none and follows the DQN/A3C
    # protocol without them (as SB3's NoFrameskip-v4 games do): 0
    repeat_action_probability: UnitFloat = 0.0
    # a lost life is a learning terminal (OpenAI baselines, SB3); episode statistics still count
    # whole games. The paper does not say; on for the games where it helps (Breakout)
    life_loss_terminal: StrictBool = True
    fire_reset: StrictBool = True  # press FIRE at each game's start where the game needs it
    # MinAtar: its games get harder as they go on (MinAtar's default); a task name may say
    # otherwise ("Breakout?ramping=false")
    difficulty_ramping: StrictBool = True
    # the policy plays ALE's full set of 18 actions in every game (ALE v5, Machado et al. 2018)
    # instead of each game's minimal set; the pool's max_actions rule reads the minimal set
    full_action_space: StrictBool = False
    # press FIRE for the agent on the step after a lost life, as SB3's FireResetEnv under its
    # EpisodicLifeEnv does (the agent need not learn to serve); that step stays out of the
    # policy gradient and entropy (the agent did not choose it)
    fire_after_life_loss: StrictBool = False
    # time limit in emulator frames (108,000 = 30 minutes of play, the common protocol); a cut
    # episode is bootstrapped from its value, not treated as a terminal
    max_episode_frames: Count = 108_000
    reward_clip: PositiveFloat = 5.0  # rewards clipped to +-reward_clip for learning (paper: 5)
    env_threads: Count = 1  # ALE C++ threads per half of the environments

    @model_validator(mode="after")
    def _consistent(self) -> EnvConfig:
        _unique(self.games, "env.games")
        _unique(self.held_out, "env.held_out")
        if self.max_episode_frames < self.frame_skip:
            raise ValueError(
                f"env.max_episode_frames: must be >= env.frame_skip, got {self.max_episode_frames}"
            )
        return self


class A2CConfig(Section):
    """The per-task learner; defaults are the paper's Atari settings."""

    # mlp: vector observations; minatar: the MinAtar paper's (conv 16 3x3, fc 128) for 10x10
    encoder: Literal["mnih2013", "nature", "mlp", "minatar"] = "mnih2013"
    steps_per_task: Count = 1_000_000  # env_steps per task (paper: 1M workshop, 5M final)
    unroll: Count = 5  # env_steps per environment between updates
    lr: PositiveFloat = 1e-4  # RMSProp learning rate
    rms_eps: PositiveFloat = 1e-4
    rms_alpha: Annotated[Float, Field(ge=0, lt=1)] = 0.99
    entropy_cost: NonNegativeFloat = 0.01
    value_cost: NonNegativeFloat = 0.5  # on 0.5 * mean squared advantage
    discount: UnitFloat = 0.99
    max_grad_norm: NonNegativeFloat = 0.0  # 0 disables gradient-norm clipping
    device: Annotated[StrictStr, Field(pattern=r"^(cpu|cuda(:\d+)?)$")] = "cpu"
    # bfloat16: the forwards run under autocast (fast on CPUs with AMX and on Ampere+ GPUs);
    # parameters, gradients, losses and the meta-gradient stay float32
    precision: Literal["float32", "bfloat16"] = "float32"
    torch_threads: Count = 1  # intra-op threads per learner


# PPO settings whose bad values RLlib's own check lets through (they fail later, in a task
# worker): name -> (lowest, whether the lowest is allowed, highest or None)
PPO_RANGES: dict[str, tuple[float, bool, float | None]] = {
    "lr": (0, False, None),
    "num_epochs": (1, True, None),
    "minibatch_size": (1, True, None),
    "train_batch_size_per_learner": (1, True, None),
    "gamma": (0, True, 1),
    "lambda_": (0, True, 1),
    "clip_param": (0, False, None),
    "vf_clip_param": (0, False, None),
    "entropy_coeff": (0, True, None),
    "vf_loss_coeff": (0, True, None),
    "kl_coeff": (0, True, None),
    "kl_target": (0, False, None),
    "grad_clip": (0, False, None),
}


def _check_range(field: str, value: Any) -> None:
    low, inclusive, high = PPO_RANGES[field.rsplit(".", 1)[-1]]
    if isinstance(value, list):  # a schedule, [[timestep, value], ...]: RLlib checks it
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: must be a number, got {short_repr(value)}")
    if value < low or (value == low and not inclusive) or (high is not None and value > high):
        bound = f"{'>=' if inclusive else '>'} {low}" + (f" and <= {high}" if high else "")
        raise ValueError(f"{field}: must be {bound}, got {short_repr(value)}")


class RLlibConfig(Section):
    """The `rllib_ppo` learner (leap_ray/learners/rllib_ppo.py): RLlib's PPO on its new API
    stack runs each task inside the task worker's process. `training` passes through to
    `PPOConfig.training(...)` (lr, num_epochs, minibatch_size, train_batch_size_per_learner, ...)
    and `model` to the RLModule's `DefaultModelConfig` (fcnet_hiddens, conv_filters,
    vf_share_layers, ...); RLlib itself checks both before Ray starts. Of the env section,
    num_envs, grayscale, frame_stack, frame_skip, repeat_action_probability and reward_clip
    apply; the rest of Atari's preprocessing is RLlib's `wrap_atari_for_new_api_stack`."""

    steps_per_task: Count = 100_000  # env_steps per task, rounded up to whole PPO iterations
    torch_threads: Count = 1  # intra-op threads per learner (RLlib's learner runs in-process)
    training: dict[StrictStr, Any] = Field(default_factory=dict)
    model: dict[StrictStr, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _finite(self) -> RLlibConfig:
        for section in ("training", "model"):
            for key, value in getattr(self, section).items():
                if _has_non_finite(value):
                    raise ValueError(
                        f"rllib.{section}.{key}: must be finite, got {short_repr(value)}"
                    )
        for key, value in self.training.items():
            if key in ("learner_class", "learner_connector"):
                raise ValueError(f"rllib.training.{key}: set by leap-ray, not by the config")
            if key in PPO_RANGES and value is not None:
                _check_range(f"rllib.training.{key}", value)
        return self


class MetaConfig(Section):
    """The meta-learner (worker side) and the meta-optimizer (server side)."""

    algorithm: Literal["leap", "reptile"] = "leap"
    metric: Literal["energy", "length"] = "energy"  # energy: the paper's Atari choice
    # With the energy metric and the loss term off, Leap is Reptile exactly (the d_theta sum
    # telescopes). Measured (EXPERIMENTS.md): A2C on Atari, the term was >= 99% of the first
    # meta_step's meta-gradient norm (698.5 against a path term of 6.82) and that norm swung
    # 520-fold across meta_steps; A2C on MinAtar, a median 0.12-0.23% of the squared norm
    # (experiments/results/minatar/terms.md); the MinAtar sweep could not tell on from off. No
    # measurement favours either, so A2C keeps the paper's; off for rllib_ppo (Config), where it
    # changed nothing measurable and PPO re-bases its loss every epoch.
    loss_term: StrictBool = True
    stabilizer: StrictBool = True
    # Options for noisy RL losses (leap_ray/meta/leap.py). Each default leaves eq. 3 as the paper
    # writes it: none has been swept yet, so none has a measured reason to change it.
    # loss_scale: lambda of the manifold (theta, lambda*l), which weighs the loss term by
    # lambda^2 against the path (1: eq. 3 as written)
    loss_scale: PositiveFloat = 1.0
    # beta of the exponential moving average of batch losses the manifold uses (0: the batch
    # loss): consecutive A2C/PPO losses are of different batches, their difference mostly noise
    loss_smoothing: Annotated[Float, Field(ge=0, lt=1)] = 0.0
    # which task gradient the loss term multiplies: the raw one, or the clipped one the learner
    # steps with (a2c.max_grad_norm, RLlib's grad_clip); equal when the learner does not clip
    loss_gradient: Literal["raw", "clipped"] = "raw"
    # a task's whole meta-gradient is scaled down to this norm before the meta-batch mean, so no
    # single task (one loss jump) can dominate a meta_step (0: no bound)
    max_task_norm: NonNegativeFloat = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"  # over the initialization
    # the paper's Adam 0.01; configs/minatar.yaml takes its sweep's 0.003 (EXPERIMENTS.md)
    lr: PositiveFloat = 0.01
    meta_batch_size: Count = 16  # tasks per meta_step (sync) (paper: 16)
    meta_steps: Count = 100
    mode: Literal["sync", "async"] = "sync"  # async: a meta_step every async_k tasks
    async_k: Count = 4
    max_staleness: Annotated[StrictInt, Field(ge=0)] = 2  # async: older inits' partials dropped
    stream_every: Count = 100  # updates between partials streamed to the server
    max_partial_norm: PositiveFloat = 1e6  # a partial with a larger norm is rejected
    seed: Annotated[StrictInt, Field(ge=0)] = 0  # root seed; task seeds are derived from it


class ResourcesConfig(Section):
    """What each Ray actor asks the cluster for."""

    num_workers: Count = 2  # task-worker actors
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: NonNegativeFloat = 0.0  # fractional GPUs let several workers share one
    server_resource: StrictStr = ""  # a custom resource to pin the parameter server
    max_attempts: Count = 3  # attempts per task before the run fails


class LoggingConfig(Section):
    """Where a run writes, and how often."""

    logdir: StrictStr = "runs"  # a run writes under logdir/<run name>
    # one path component under logdir (letters, digits, ".", "_", "-"; at most 100 characters;
    # runs.check_run_name, where a run directory is named): a run never writes or locks
    # outside its log directory. Empty: a timestamp
    run_name: StrictStr = ""
    checkpoint_every: Count = 1  # meta_steps between checkpoints
    log_every: Count = 50  # learner updates between TensorBoard points of a task
    keep_checkpoints: Count = 3
    progress: StrictBool = True  # a progress bar on the terminal
    # each task's path length, energy and distance travelled, measured at every update
    # (`path/*`, `meta/task_path_*`): Leap's objective, read directly; it costs the A2C learner
    # 1-6% of its env_steps/s (BENCHMARKS.md), less than noise for RLlib PPO
    measure_paths: StrictBool = True
    # per meta_step, the initialization's dead and always-on encoder units on a fixed batch of
    # held-out frames (`meta/init_dead_units`, `meta/init_always_on_units`; the A2C learner) and
    # each parameter's distance from theta_0 (`meta/init_relative_distance/*`): whether the
    # meta-updates damage the network; also `evaluate`'s "Initialization health" section. The
    # probe's frames cost about a second per held-out game
    init_health: StrictBool = True
    dashboard: StrictBool = True  # start Ray's dashboard with a local Ray
    dashboard_host: StrictStr = "127.0.0.1"  # its bind address: loopback unless you mean it


class Config(Section):
    # a2c: this project's A2C (leap_ray/learners/a2c/), the paper's learner and the fast one;
    # rllib_ppo: RLlib's PPO, for users whose training runs are RLlib's (section `rllib`).
    # The names are those of leap_ray/learners' registry (a test keeps the two equal)
    learner: Literal["a2c", "rllib_ppo"] = "a2c"
    env: EnvConfig = EnvConfig()
    a2c: A2CConfig = A2CConfig()
    rllib: RLlibConfig = RLlibConfig()
    meta: MetaConfig = MetaConfig()
    resources: ResourcesConfig = ResourcesConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="before")
    @classmethod
    def _learner_defaults(cls, data: Any) -> Any:
        """`meta.loss_term` defaults to off for `rllib_ppo`: PPO re-bases its loss on every
        batch, so the loss differences Leap's term weighs are batch noise (EXPERIMENTS.md,
        "Leap over RLlib PPO"). A config that sets it keeps its value."""
        if isinstance(data, dict) and data.get("learner") == "rllib_ppo":
            meta = data.get("meta", {})
            if isinstance(meta, dict) and "loss_term" not in meta:
                data = {**data, "meta": {**meta, "loss_term": False}}
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe data (tuples become lists)."""
        return self.model_dump(mode="json")


# What a resumed run may change: how long it goes on, the meta learning rate (applied to the
# restored meta-optimizer), where and how fast it runs, and its logging. Everything else defines
# the run's learning processes and must stay as recorded.
RESUMABLE = (
    "meta.meta_steps",
    "meta.lr",
    "a2c.device",
    "a2c.torch_threads",
    "rllib.torch_threads",
    "env.env_threads",
    "resources.",
    "logging.",
)


def _changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(old.keys() | new.keys())
            for change in _changes(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [(prefix[:-1], old, new)]


def check_resumable(recorded: Config, asked: Config) -> None:
    """Refuse, naming the fields, a resume whose settings change what the run learns."""
    fixed = [
        f"{name} (run: {short_repr(old)}, now: {short_repr(new)})"
        for name, old, new in _changes(recorded.to_dict(), asked.to_dict())
        if not name.startswith(RESUMABLE)
    ]
    if fixed:
        raise ConfigError(
            f"--resume: {'; '.join(fixed)} cannot change on resume (may change: "
            f"{', '.join(f + '*' if f.endswith('.') else f for f in RESUMABLE)})"
        )


def check_worker_devices(cfg: Config) -> None:
    """Ray gives a task worker a GPU only when it asks for one."""
    if cfg.a2c.device.startswith("cuda") and cfg.resources.gpus_per_worker == 0:
        raise ConfigError(
            f"a2c.device: {cfg.a2c.device!r} needs resources.gpus_per_worker > 0 "
            "(Ray gives a task worker no GPU otherwise)"
        )


def _message(error: dict) -> str:
    """One pydantic error as `section.field: why, got value`."""
    where = ".".join(str(part) for part in error["loc"])
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        return f"unknown config key '{where}'"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        key, sign = bounds[kind]
        why = f"must be {sign} {ctx[key]}"
    elif kind == "literal_error":
        why = f"must be {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        why = "must be 'cpu' or 'cuda[:N]'"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        why = "must be a mapping"
    elif kind.endswith(("_type", "_parsing")):
        why = f"must be {kind.split('_')[0]}"
    else:
        why = error["msg"]
    return f"{where or 'config'}: {why}, got {short_repr(value)}"


def _known(where: str) -> str:
    section = Config.model_fields.get(where.split(".")[0]) if "." in where else None
    fields = section.annotation.model_fields if section else Config.model_fields
    return ", ".join(sorted(fields))


def config_from_dict(data: Any, overrides: typing.Sequence[str] = ()) -> Config:
    """A validated Config from plain data (a YAML file's, a checkpoint's), with overrides."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: must be a mapping of sections, got {short_repr(data)}")
    data = copy.deepcopy(data)
    for override in overrides:
        _apply_override(data, override)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        message = _message(first)
        if first["type"] == "extra_forbidden":
            message += f" (known: {_known('.'.join(map(str, first['loc'])))})"
        raise ConfigError(message) from None


def _apply_override(data: dict, override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {short_repr(override)}: expected section.field=value")
    *sections, leaf = key.strip().split(".")
    node = data
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {short_repr(override)}: {section} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError:
        raise ConfigError(f"override {short_repr(override)}: the value is not valid YAML") from None


def load_config(path: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Strict YAML (safe_load: no code is ever evaluated) plus overrides -> a validated Config.
    No path: the defaults (the paper's full run). An empty file is refused: it would silently
    start that full run."""
    if path is None:
        return config_from_dict({}, overrides)
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is over {MAX_CONFIG_BYTES:,} bytes")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"config file {str(path)!r} is not valid YAML{where}") from None
    if data is None:
        raise ConfigError(
            f"config file {str(path)!r} is empty; name at least one section (the defaults "
            "alone are the paper's full 27-game run: use configs/atari27.yaml for that)"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of sections")
    return config_from_dict(data, overrides)
