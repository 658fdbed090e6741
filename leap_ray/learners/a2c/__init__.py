"""`learner: a2c`, this project's synchronous n-step A2C (the paper's learner): the `Learner`
the registry hands out. Its parts sit beside it: `learning.py` (rollout, loss, update),
`networks.py` (encoders and heads), `envs.py` (the suite's vector groups), `rmsprop.py`."""

from __future__ import annotations

import json

import numpy as np
import torch

from leap_ray.config import Config
from leap_ray.learners.a2c.envs import VectorTask
from leap_ray.learners.a2c.learning import A2CLearner, make_learner
from leap_ray.learners.a2c.networks import ActorCritic, encoder_state, make_encoder
from leap_ray.learners.base import Encoder, LearnerSummary, OnLog, OnPartial
from leap_ray.suites import observation_shape
from leap_ray.tasks import TaskSpec

# the health probe: 4 environments of random play, a frame of each every 25 steps up to 200
PROBE_ENVS, PROBE_STEPS, PROBE_EVERY, PROBE_SEED = 4, 200, 25, 12345


def load_encoder(model: ActorCritic, init: Encoder) -> None:
    """Copy an initialization into the model's encoder (its memory layouts kept)."""
    # a copy: arrays from Ray's object store are read-only, which torch warns about
    model.encoder.load_state_dict({name: torch.tensor(value) for name, value in init.items()})


def encoder_holding(cfg: Config, init: Encoder, observation_shape: tuple[int, ...]):
    """A stand-alone encoder with `init`'s values, for probing it on observations."""
    with torch.random.fork_rng(devices=[]):  # its random init is overwritten at once
        encoder = make_encoder(cfg.a2c.encoder, observation_shape)
    encoder.load_state_dict({name: torch.tensor(value) for name, value in init.items()})
    return encoder


class A2C:
    name = "a2c"
    needs_ray = False
    records_video = True

    def check(self, cfg: Config, games: tuple[str, ...]) -> None:
        pass  # the a2c section is checked by its config model

    def steps_per_task(self, cfg: Config) -> int:
        return cfg.a2c.steps_per_task

    def describe(self, cfg: Config) -> str:
        return f"A2C learners (a2c.encoder={cfg.a2c.encoder})"

    def encoder_name(self, cfg: Config) -> str:
        return f"a2c.encoder={cfg.a2c.encoder!r}"

    def new_encoder(self, cfg: Config, game: str, seed: int) -> dict[str, np.ndarray]:
        torch.manual_seed(seed)
        encoder = make_encoder(cfg.a2c.encoder, observation_shape(cfg.env, game))
        return {name: p.detach().numpy().copy() for name, p in encoder.named_parameters()}

    def probe_observations(self, cfg: Config, games: tuple[str, ...]) -> np.ndarray:
        """Random play of PROBE_ENVS environments on each game: every PROBE_EVERY steps a frame
        of each (32 per game), the same ones every time (fixed seeds)."""
        env = cfg.env.model_copy(update={"num_envs": PROBE_ENVS})
        rng = np.random.default_rng(PROBE_SEED)
        batches = []
        for game in games:
            envs = VectorTask(game, env, PROBE_SEED, groups=1)
            try:
                envs.reset()
                for step in range(1, PROBE_STEPS + 1):
                    envs.groups[0].send(rng.integers(envs.num_actions, size=PROBE_ENVS))
                    obs = envs.groups[0].recv().obs
                    if step % PROBE_EVERY == 0:
                        batches.append(obs.copy())
            finally:
                envs.close()
        return np.concatenate(batches)

    @torch.no_grad()
    def unit_activity(self, cfg: Config, init: Encoder, observations) -> dict[str, float]:
        encoder = encoder_holding(cfg, init, tuple(observations.shape[1:]))
        features = encoder(torch.from_numpy(observations))  # [B, F]
        active = features > 0
        return {
            "meta/init_dead_units": float((~active).all(0).float().mean()),
            "meta/init_always_on_units": float(active.all(0).float().mean()),
        }

    def encoder_metadata(self, cfg: Config, game: str) -> dict[str, str]:
        return {
            "encoder": cfg.a2c.encoder,  # networks.make_encoder(name, observation_shape)
            "observation_shape": json.dumps(list(observation_shape(cfg.env, game))),  # [C, H, W]
        }

    def run_meta_task(
        self, cfg: Config, spec: TaskSpec, init: Encoder, on_partial: OnPartial, on_log: OnLog
    ) -> LearnerSummary:
        learner = make_learner(cfg, spec.game, spec.seed)
        try:
            learner.meta_learner.load(init, spec.init_version)
            learner.meta_learner.to(learner.model)
            return self._train(cfg, learner, spec.env_steps, on_partial, on_log)
        finally:
            learner.envs.close()

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
        learner = make_learner(cfg, game, seed, meta=False)
        try:
            if init is not None:
                load_encoder(learner.model, init)
            summary = self._train(cfg, learner, steps, None, on_log)
            if video_steps > 0:
                summary.video = learner.record_episode(video_steps)
        finally:
            learner.envs.close()
        return summary, {name: t.numpy() for name, t in encoder_state(learner.model).items()}

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
        learner = make_learner(cfg, game, seed)
        try:
            return self._train(cfg, learner, steps, on_partial, on_log, log_every)
        finally:
            learner.envs.close()

    @staticmethod
    def _train(cfg: Config, learner: A2CLearner, steps, on_partial, on_log, log_every=None):
        return learner.train(
            steps,
            stream_every=cfg.meta.stream_every if on_partial is not None else 0,
            on_partial=on_partial,
            on_log=on_log,
            log_every=log_every or cfg.logging.log_every,
            measure_path=cfg.logging.measure_paths,
        )


__all__ = ["A2C", "A2CLearner", "load_encoder", "make_learner"]
