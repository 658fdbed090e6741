"""The gym suite: small vector-observation gymnasium tasks (CartPole). A gym id may carry
attribute overrides, "CartPole-v1?length=0.8&gravity=12", for a parametrized task family."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np

from leap_ray.config import EnvConfig
from leap_ray.errors import ConfigError
from leap_ray.suites.base import StepResult


def make_gym(env_id: str) -> gym.Env:
    """`gym.make` for ids like "CartPole-v1?length=0.8&gravity=12": each key=value sets a numeric
    attribute of the unwrapped env (its physics), so one id names one task of a family."""
    base, _, query = env_id.partition("?")
    env = gym.make(base)
    inner = env.unwrapped
    for item in filter(None, query.split("&")):
        key, _, raw = item.partition("=")
        current = getattr(inner, key, None)
        if isinstance(current, bool) or not isinstance(current, int | float):
            env.close()
            raise ConfigError(f"{env_id}: {key!r} is not a numeric attribute of {base}")
        try:
            setattr(inner, key, float(raw))
        except ValueError:
            env.close()
            raise ConfigError(f"{env_id}: {key}={raw!r} is not a number") from None
    if hasattr(inner, "polemass_length"):  # CartPole derives these two in __init__
        inner.total_mass = inner.masspole + inner.masscart
        inner.polemass_length = inner.masspole * inner.length
    return env


class GymGroup:
    """A synchronous gymnasium vector env behind the same send/recv interface."""

    def __init__(self, env_id: str, num_envs: int, seed: int) -> None:
        self.env = gym.vector.SyncVectorEnv(
            [functools.partial(make_gym, env_id)] * num_envs,
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self.num_envs = num_envs
        self.seed = seed
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed)
        return obs.astype(np.float32)

    def send(self, actions: np.ndarray) -> None:
        self._actions = actions

    def recv(self) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.step(self._actions)
        obs = obs.astype(np.float32)
        final_obs = None
        if "final_obs" in info:  # an object array, None where no episode ended
            final_obs = obs.copy()
            for i in np.flatnonzero(info["_final_obs"]):
                final_obs[i] = info["final_obs"][i]
        return StepResult(
            obs=obs,
            reward=reward.astype(np.float32),
            terminated=terminated,
            truncated=truncated & ~terminated,
            game_over=terminated | truncated,
            final_obs=final_obs,
        )

    def close(self) -> None:
        self.env.close()


class GymSuite:
    """`env.suite: gym` (suites/base.Suite): tasks named by gymnasium ids."""

    name = "gym"
    frames = False
    even_groups = False
    async_groups = True  # stepped in turn, but kept at two groups: the recorded results used two
    video = False  # vector observations: nothing to draw

    def resolve(self, game: str) -> str:
        try:
            make_gym(game).close()
        except gym.error.Error as error:
            raise ConfigError(f"unknown gym id {game!r}: {error}") from None
        return game

    def training_games(self, cfg: EnvConfig) -> tuple[str, ...]:
        if not cfg.games:
            raise ConfigError("env.games: the gym suite needs an explicit list of gymnasium ids")
        return cfg.games

    def observation_shape(self, cfg: EnvConfig, game: str) -> tuple[int, ...]:
        probe = make_gym(game)
        shape = tuple(probe.observation_space.shape)
        probe.close()
        return shape

    def num_actions(self, cfg: EnvConfig, game: str) -> int:
        probe = make_gym(game)
        space = probe.action_space
        probe.close()
        if not isinstance(space, gym.spaces.Discrete):
            raise ConfigError(f"{game}: only discrete action spaces are supported")
        return int(space.n)

    def fire_action(self, cfg: EnvConfig, game: str) -> int | None:
        return None

    def vector_group(self, game: str, num_envs: int, seed: int, cfg: EnvConfig) -> GymGroup:
        return GymGroup(game, num_envs, seed)

    def single_env(self, game: str, cfg: EnvConfig) -> gym.Env:
        return make_gym(game)

    def max_return(self, game: str) -> float | None:
        """Known for the CartPole family: one point per step up to the time limit."""
        base = game.partition("?")[0]
        if base.startswith("CartPole"):
            return float(gym.spec(base).max_episode_steps)
        return None

    def rgb_frame(self, cfg: EnvConfig, obs: np.ndarray) -> np.ndarray:
        raise ConfigError("the gym suite's observations are vectors, not pictures")
