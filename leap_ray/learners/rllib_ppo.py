"""The `rllib_ppo` learner: RLlib's PPO on its new API stack runs a task, and the project's own
meta-learner (`leap_ray.meta`: Leap or Reptile) reads its path from inside RLlib's Learner.

One RLlib Algorithm per task, built in the calling process with no env-runner and no learner
actors (`num_env_runners=0`, `num_learners=0`): the task worker stays one process, as with A2C.
`LeapPPOLearner` subclasses RLlib's torch PPO learner and hands the meta-learner every optimizer
step's (theta_i, l_i, g_i) from `compute_gradients`, the one place that holds all three: after
backward, before RLlib clips the gradients (`postprocess_gradients`) and steps the optimizer.
Only the RLModule's `encoder` is meta-learned; the policy and value heads are fresh per task.

Atari goes through RLlib's own preprocessing (`wrap_atari_for_new_api_stack`: 84x84, frame max
and skip, 30 random no-ops, a lost life ends an episode, FIRE on reset) with frames stacked by
RLlib's connectors; rewards are clipped to +-env.reward_clip by gymnasium's `ClipReward`.
Episode returns are recorded beneath all of that, so they are whole, unclipped games as with A2C.

RLlib ships inside the `ray` package, so this module imports it; it never starts or calls Ray
itself: a task runs in a task worker, or in the local Ray the CLI starts for `train-task` and
`finetune`. The registry imports it only for runs that use it. It keeps no module state: what a
task's environments record is read back from its own env runner.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.env_to_module.frame_stacking import FrameStackingEnvToModule
from ray.rllib.connectors.learner.frame_stacking import FrameStackingLearner
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from ray.rllib.env.wrappers.atari_wrappers import wrap_atari_for_new_api_stack
from ray.tune.registry import register_env

from leap_ray.config import Config, EnvConfig
from leap_ray.errors import ConfigError, LearnerDiverged
from leap_ray.learners.base import (
    Encoder,
    LearnerSummary,
    OnLog,
    OnPartial,
    PathTracker,
    configured_meta_learner,
    log_episodes,
    shape_mismatch,
)
from leap_ray.meta import PartialMetaGradient, PathMetaLearner
from leap_ray.suites import suite_for
from leap_ray.tasks import TaskSpec

# TensorBoard names (as the A2C learner's) of RLlib's PPO learner statistics
LOSS_STATS = {
    "policy": "policy_loss",
    "value": "vf_loss",
    "entropy": "entropy",
    "total": "total_loss",
    "kl": "mean_kl_loss",
}
TASK_ENV = "leap_ray_task"  # RLlib takes a custom env by registered name only


class _DropNotices(logging.Filter):
    NOTICES = ("You are running PPO on the new API stack", "RLModule(config=[RLModuleConfig")

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(notice in record.getMessage() for notice in self.NOTICES)


DROP_NOTICES = _DropNotices()


@functools.cache
def _register_task_env() -> None:
    register_env(TASK_ENV, make_task_env)


def _set_up_rllib() -> None:
    """When a task config is made: the task env registered with RLlib (once per process), and
    the notices RLlib 2.60 prints for every Algorithm whatever the config, about its own
    internals, silenced (its env id re-registered, a GPU monitor, the new API stack being the
    default: it is asked for explicitly, the deprecated way its own PPO builds its RLModule).
    Every other RLlib warning still shows."""
    _register_task_env()
    warnings.filterwarnings("ignore", message=".*Overriding environment rllib-single-agent-env")
    logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)
    for name in ("ray.rllib", "ray.rllib.algorithms.algorithm_config", "ray._common.deprecation"):
        logging.getLogger(name).addFilter(DROP_NOTICES)  # the same filter object: added once


# -- environments ------------------------------------------------------------------------------
class GameRecorder(gym.Wrapper):
    """Beneath every other wrapper: sums the real rewards of whole games (a game cut by a time
    limit above it ends at the reset that follows); `drain` hands over the finished ones."""

    def __init__(self, env: gym.Env, frames_per_step: int) -> None:
        super().__init__(env)
        self.frames_per_step = frames_per_step
        self.total, self.frames = 0.0, 0
        self.finished: list[tuple[float, int]] = []  # (return, length) per finished game

    def _record(self) -> None:
        if self.frames:
            steps = math.ceil(self.frames / self.frames_per_step)
            self.finished.append((self.total, steps))
        self.total, self.frames = 0.0, 0

    def drain(self) -> list[tuple[float, int]]:
        finished, self.finished = self.finished, []
        return finished

    def reset(self, **kwargs):
        self._record()
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.total += float(reward)
        self.frames += 1
        if terminated or truncated:
            self._record()
        return obs, reward, terminated, truncated, info


def make_task_env(ctx: Mapping[str, Any]) -> gym.Env:
    """The env of one task for RLlib's env runner: `ctx` holds the game and the env section
    (`_env_context`). Frames go through RLlib's Atari preprocessing, which skips (and
    max-pools) frames itself; rewards are clipped above everything."""
    cfg = EnvConfig(**ctx["env"])
    suite = suite_for(cfg)
    raw = suite.single_env(ctx["game"], cfg)
    if suite.frames:
        env = wrap_atari_for_new_api_stack(
            GameRecorder(raw, cfg.frame_skip),
            dim=84,
            frameskip=cfg.frame_skip,
            framestack=None,  # stacked by the connectors
            grayscale=cfg.grayscale,
        )
    else:
        env = GameRecorder(raw, 1)
    return gym.wrappers.ClipReward(env, -cfg.reward_clip, cfg.reward_clip)


def _env_context(cfg: Config, game: str) -> dict[str, Any]:
    return {"game": suite_for(cfg.env).resolve(game), "env": cfg.env.model_dump()}


def game_recorders(env_runner) -> list[GameRecorder]:
    """The `GameRecorder` of each of an env runner's environments (beneath RLlib's wrappers)."""
    recorders = []
    for env in env_runner.env.unwrapped.envs:
        while not isinstance(env, GameRecorder):
            env = env.env
        recorders.append(env)
    return recorders


def _stack_env_to_module(env, spaces, device, *, frames: int):
    return FrameStackingEnvToModule(num_frames=frames)


def _stack_learner(obs_space, action_space, *, frames: int):
    return FrameStackingLearner(num_frames=frames)


# -- the algorithm -----------------------------------------------------------------------------
def ppo_config(cfg: Config, game: str, seed: int) -> PPOConfig:
    """RLlib's PPOConfig of one task: in-process, the env settings mapped, `rllib.training` and
    `rllib.model` passed through. RLlib's own errors (an unknown setting, a bad value) become
    one-line `ConfigError`s naming the section."""
    _set_up_rllib()
    config = (
        PPOConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(TASK_ENV, env_config=_env_context(cfg, game))
        .env_runners(num_env_runners=0, num_envs_per_env_runner=cfg.env.num_envs)
        # the learner in this process, on the worker's GPU where Ray gave it one
        .learners(num_learners=0, num_gpus_per_learner=int(cfg.resources.gpus_per_worker > 0))
        .debugging(seed=seed, log_level="ERROR")
        .reporting(metrics_num_episodes_for_smoothing=1)
    )
    stacked = suite_for(cfg.env).frames and cfg.env.frame_stack > 1
    if stacked:
        frames = cfg.env.frame_stack
        config.env_runners(
            env_to_module_connector=functools.partial(_stack_env_to_module, frames=frames)
        )
    config.learners(
        learner_class=LeapPPOLearner,
        learner_connector=(
            functools.partial(_stack_learner, frames=cfg.env.frame_stack) if stacked else None
        ),
    )
    try:
        config.training(**cfg.rllib.training)
    except TypeError as error:
        raise ConfigError(f"rllib.training: not a PPO setting ({error})") from None
    try:
        config.rl_module(model_config=DefaultModelConfig(**cfg.rllib.model))
    except TypeError as error:
        raise ConfigError(f"rllib.model: not a DefaultModelConfig field ({error})") from None
    return config


def _validate_without_gpus(cfg: Config, game: str) -> None:
    """RLlib's check, on the driver: which GPU a worker gets is the worker's business."""
    ppo_config(cfg, game, seed=0).learners(num_gpus_per_learner=0).validate()


class LeapPPOLearner(PPOTorchLearner):
    """RLlib's torch PPO learner that shows every optimizer step to a `StepObserver`: with the
    raw gradients (after backward, before RLlib clips them), or with `observer.sees_clipped`
    the ones the optimizer steps with (after `postprocess_gradients`)."""

    observer: StepObserver | None = None

    def compute_gradients(self, loss_per_module, **kwargs):
        grads = super().compute_gradients(loss_per_module, **kwargs)
        if self.observer is not None and grads:
            loss = sum(loss_per_module.values())
            if self.observer.sees_clipped:
                self.observer.pending_loss = loss
            else:
                self.observer.before_step(loss, self.module[DEFAULT_MODULE_ID])
        return grads

    def apply_gradients(self, gradients_dict) -> None:
        if self.observer is not None and gradients_dict and self.observer.sees_clipped:
            for pid, grad in gradients_dict.items():  # as the step will: the clipped gradient
                self._params[pid].grad = grad
            self.observer.before_step(self.observer.pending_loss, self.module[DEFAULT_MODULE_ID])
        super().apply_gradients(gradients_dict)
        if self.observer is not None and gradients_dict:
            self.observer.after_step(self.module[DEFAULT_MODULE_ID])


class StepObserver:
    """What the task does at each optimizer step: feed the meta-learner (after backward, before
    clipping and the step), stream its partial every `stream_every` steps, measure the path."""

    def __init__(
        self,
        game: str,
        meta_learner: PathMetaLearner | None,
        path: PathTracker | None,
        on_partial: Callable[[PartialMetaGradient], None] | None,
        stream_every: int,
        sees_clipped: bool = False,
    ) -> None:
        self.game, self.meta_learner, self.path = game, meta_learner, path
        self.on_partial, self.stream_every = on_partial, stream_every
        self.sees_clipped = sees_clipped  # meta.loss_gradient: clipped
        self.pending_loss: torch.Tensor | None = None
        self.updates = 0
        self.loss = float("nan")

    def before_step(self, loss: torch.Tensor, module: torch.nn.Module) -> None:
        self.loss = float(loss.detach())
        if not math.isfinite(self.loss):
            raise LearnerDiverged(
                f"the PPO learner on {self.game} diverged: its loss is {self.loss} at update "
                f"{self.updates + 1}; lower rllib.training.lr"
            )
        self.updates += 1
        if self.meta_learner is not None:
            self.meta_learner.update(loss, module)
            if self.on_partial and self.stream_every and self.updates % self.stream_every == 0:
                self.on_partial(self.meta_learner.take_partial(module))

    def after_step(self, module: torch.nn.Module) -> None:
        if self.path is not None:
            self.path.update(module, self.loss)


def encoder_arrays(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {n: p.detach().cpu().numpy().copy() for n, p in module.encoder.named_parameters()}


def check_fits(module: torch.nn.Module, init: Encoder, game: str) -> None:
    """The initialization must name exactly the RLModule's encoder parameters, shape for shape."""
    want = {name: tuple(p.shape) for name, p in module.encoder.named_parameters()}
    got = {name: tuple(np.shape(value)) for name, value in init.items()}
    bad = shape_mismatch(want, got)
    if bad is not None:
        raise ConfigError(
            f"the initialization does not fit RLlib's encoder on {game} ({bad}: "
            f"initialization {got.get(bad)}, RLModule {want.get(bad)}); did rllib.model or the "
            "env settings change since it was made?"
        )


class PPOTask:
    """One RLlib PPO Algorithm on one game, its encoder started from a given initialization."""

    def __init__(self, cfg: Config, game: str, seed: int) -> None:
        torch.manual_seed(seed)
        torch.set_num_threads(cfg.rllib.torch_threads)
        self.cfg, self.game = cfg, game
        self.algo = ppo_config(cfg, game, seed).build_algo()
        learners = self.algo.learner_group.foreach_learner(lambda learner: learner)
        self.learner: LeapPPOLearner = next(iter(learners)).get()
        self.module = self.learner.module[DEFAULT_MODULE_ID]
        self.recorders = game_recorders(self.algo.env_runner)

    def encoder(self) -> dict[str, np.ndarray]:
        return encoder_arrays(self.module)

    def acting_encoder(self) -> dict[str, np.ndarray]:
        """The encoder the env runner acts with (the test that it got the initialization)."""
        return encoder_arrays(self.algo.env_runner.module)

    def load_encoder(self, init: Encoder) -> None:
        """Into the learner's module, then to the env runner, which acts with its own copy."""
        check_fits(self.module, init, self.game)
        self.module.encoder.load_state_dict({n: torch.tensor(v) for n, v in init.items()})
        self.algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=self.algo.learner_group, inference_only=True
        )
        acting = self.acting_encoder()
        if not all(np.array_equal(acting[name], value) for name, value in init.items()):
            raise RuntimeError(f"RLlib's env runner on {self.game} did not take the initialization")

    def finished_games(self) -> list[tuple[float, int]]:
        """(return, length) of the games finished since the last call, environment by
        environment."""
        return [game for recorder in self.recorders for game in recorder.drain()]

    def train(
        self,
        num_env_steps: int,
        meta_learner: PathMetaLearner | None = None,
        *,
        stream_every: int | None = None,
        on_partial: OnPartial | None = None,
        on_log: OnLog | None = None,
    ) -> LearnerSummary:
        """PPO iterations until `num_env_steps` are sampled; then the meta-learner's path is
        closed at theta_K (without a loss there: PPO's loss needs a new batch) and its last
        partial sent. Partials stream every `stream_every` steps (None: `meta.stream_every`)."""
        if stream_every is None:
            stream_every = self.cfg.meta.stream_every
        summary = LearnerSummary()
        path = PathTracker(self.module) if self.cfg.logging.measure_paths else None
        clipped = self.cfg.meta.loss_gradient == "clipped"
        observer = StepObserver(self.game, meta_learner, path, on_partial, stream_every, clipped)
        self.learner.observer = observer
        start = time.perf_counter()
        env_steps = 0
        self.finished_games()  # the probe episodes of building the algorithm, if any
        try:
            while env_steps < num_env_steps:
                began = time.perf_counter()
                result = self.algo.train()
                sampled = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
                rate = (sampled - env_steps) / max(time.perf_counter() - began, 1e-9)
                env_steps = sampled
                episodes = [(env_steps, r, n) for r, n in self.finished_games()]
                summary.episodes += episodes
                if on_log is not None:
                    log_episodes(on_log, env_steps, episodes)
                    stats = result["learners"][DEFAULT_MODULE_ID]
                    losses = {
                        f"losses/{ours}": float(stats[theirs])
                        for ours, theirs in LOSS_STATS.items()
                        if theirs in stats
                    }
                    on_log(
                        env_steps,
                        {
                            **losses,
                            "perf/env_steps_per_second": rate,
                            **(path.measure() if path is not None else {}),
                        },
                    )
        finally:
            self.learner.observer = None
        if meta_learner is not None:
            partial = meta_learner.finish_task(self.module)  # d_l = 0 on the last segment
            if on_partial is not None:
                on_partial(partial)
            summary.terms = dict(meta_learner.terms)
        if path is not None:
            path.finish(float("nan"))
            summary.path = path.measure()
        summary.final_loss = observer.loss
        summary.env_steps = env_steps
        summary.updates = observer.updates
        summary.seconds = time.perf_counter() - start
        return summary

    def close(self) -> None:
        self.algo.stop()


def task_spaces(cfg: Config, game: str) -> tuple[gym.Space, gym.Space]:
    """The RLModule's observation and action spaces on `game`: the env's, its frames stacked
    along the last axis as RLlib's frame-stacking connector does."""
    env = make_task_env(_env_context(cfg, game))
    obs, actions = env.observation_space, env.action_space
    env.close()
    if suite_for(cfg.env).frames and cfg.env.frame_stack > 1:
        k = cfg.env.frame_stack
        obs = gym.spaces.Box(
            np.repeat(obs.low, k, axis=-1), np.repeat(obs.high, k, axis=-1), dtype=obs.dtype
        )
    return obs, actions


class RLlibPPO:
    """`learner: rllib_ppo` (learners/base.Learner)."""

    name = "rllib_ppo"
    needs_ray = True  # an RLlib Algorithm needs a Ray runtime, even with everything in-process
    records_video = False  # not yet: evaluate --video refuses it before Ray starts

    def check(self, cfg: Config, games: tuple[str, ...]) -> None:
        """RLlib's own validation of the task config, and a build of its RLModule, before any
        Ray starts (RLlib's messages are long: the first line is kept, at most 200
        characters)."""
        for what, check in (
            ("refuses the PPO config", lambda: _validate_without_gpus(cfg, games[0])),
            ("cannot build the RLModule", lambda: self.new_encoder(cfg, games[0], seed=0)),
        ):
            try:
                check()
            except ConfigError:
                raise
            except Exception as error:  # RLlib raises ValueError, TypeError, AssertionError...
                lines = str(error).strip().splitlines() or [type(error).__name__]
                raise ConfigError(f"rllib: RLlib {what}: {lines[0][:200]}") from None

    def steps_per_task(self, cfg: Config) -> int:
        return cfg.rllib.steps_per_task

    def describe(self, cfg: Config) -> str:
        return f"RLlib PPO learners (rllib.model={cfg.rllib.model})"

    def encoder_name(self, cfg: Config) -> str:
        return "RLlib's encoder"

    def new_encoder(self, cfg: Config, game: str, seed: int) -> dict[str, np.ndarray]:
        """An encoder as RLlib initializes it for `game`, drawn from `seed`, built without an
        Algorithm (so without Ray): theta_0 of meta-training, and the template of its names."""
        spec = ppo_config(cfg, game, seed).get_rl_module_spec(
            spaces={DEFAULT_MODULE_ID: task_spaces(cfg, game)}
        )
        torch.manual_seed(seed)
        module = spec.build()
        return encoder_arrays(module)

    def probe_observations(self, cfg: Config, games: tuple[str, ...]) -> None:
        return None  # not measured: RLlib's encoders are built from its own model config

    def unit_activity(self, cfg: Config, init: Encoder, observations) -> dict[str, float]:
        return {}

    def encoder_metadata(self, cfg: Config, game: str) -> dict[str, str]:
        obs, _ = task_spaces(cfg, game)
        return {
            "encoder": "rllib_default_ppo",  # DefaultPPOTorchRLModule's encoder
            "rllib_model": json.dumps(cfg.rllib.model, sort_keys=True),  # its DefaultModelConfig
            "observation_shape": json.dumps(list(obs.shape)),  # RLlib's, channels last
        }

    def run_meta_task(
        self, cfg: Config, spec: TaskSpec, init: Encoder, on_partial: OnPartial, on_log: OnLog
    ) -> LearnerSummary:
        task = PPOTask(cfg, spec.game, spec.seed)
        try:
            task.load_encoder(init)
            meta_learner = configured_meta_learner(cfg.meta, init)
            meta_learner.load(init, spec.init_version)
            return task.train(spec.env_steps, meta_learner, on_partial=on_partial, on_log=on_log)
        finally:
            task.close()

    def run_transfer_task(
        self,
        cfg: Config,
        game: str,
        seed: int,
        steps: int,
        init: Encoder | None,
        on_log: OnLog,
        video_steps: int = 0,
    ) -> tuple[LearnerSummary, dict[str, np.ndarray]]:
        task = PPOTask(cfg, game, seed)
        try:
            if init is not None:
                task.load_encoder(init)
            summary = task.train(steps, on_log=on_log)
            return summary, task.encoder()
        finally:
            task.close()

    def run_single_task(
        self,
        cfg: Config,
        game: str,
        seed: int,
        steps: int,
        on_partial: OnPartial,
        on_log: OnLog,
        log_every: int,
    ) -> LearnerSummary:
        task = PPOTask(cfg, game, seed)
        try:
            meta_learner = configured_meta_learner(cfg.meta, task.encoder())
            return task.train(steps, meta_learner, on_partial=on_partial, on_log=on_log)
        finally:
            task.close()
