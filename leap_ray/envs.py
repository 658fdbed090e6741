"""Vectorized tasks for the learner: Atari through ale-py's C++ `AtariVectorEnv`, and small
vector-observation gymnasium tasks (CartPole) through the same interface. A gym id may carry
attribute overrides, "CartPole-v1?length=0.8&gravity=12", for a parametrized task family.

The environments are split into groups that step asynchronously (`send` / `recv`): while one
group's ALE thread emulates, the learner runs the policy on another group's observations. Rewards
come back unclipped; the learner clips them for learning and `EpisodeTracker` records the real
episode returns for reporting. A finished episode resets in the same step (its next observation
is the first of a new episode).

Three ends are told apart, as SB3's `AtariWrapper` and gymnasium's `AtariPreprocessing` do:
- `terminated`: a learning terminal (no bootstrap). With `env.life_loss_terminal` a lost life is
  one, though the game goes on (ALE's `life_loss_info`, not its `episodic_life`, which resets
  the game at every lost life and so changes which states are seen);
- `truncated`: the time limit (`env.max_episode_frames`) cut the episode; the learner bootstraps
  it from V(final_obs), because the state was not terminal;
- `game_over`: a whole game ended (terminated at the last life, or truncated): what episode
  statistics count, so returns are whole-game scores whatever the learning terminals are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from leap_ray.config import EnvConfig
from leap_ray.games import meta_training_pool, num_actions, resolve_game, rom_id


@dataclass
class StepResult:
    obs: np.ndarray  # [N, ...] observations after the step (a new episode's first where one ended)
    reward: np.ndarray  # [N] float32, unclipped
    terminated: np.ndarray  # [N] bool, a learning terminal (game over, or a life lost)
    truncated: np.ndarray  # [N] bool, cut by the time limit, not terminated: bootstrap it
    game_over: np.ndarray  # [N] bool, a whole game ended (for episode statistics)
    final_obs: np.ndarray | None  # [N, ...] last observations; rows where `truncated` are valid


class EpisodeTracker:
    """Sums unclipped rewards per environment; collects (env_step, return, length) per episode."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished: list[tuple[int, float, int]] = []

    def record(self, rows: slice, reward: np.ndarray, game_over: np.ndarray, env_step: int) -> None:
        self.returns[rows] += reward
        self.lengths[rows] += 1
        for i in np.flatnonzero(game_over):
            row = rows.start + i
            self.finished.append((env_step, float(self.returns[row]), int(self.lengths[row])))
            self.returns[row] = 0.0
            self.lengths[row] = 0

    def drain(self) -> list[tuple[int, float, int]]:
        finished, self.finished = self.finished, []
        return finished


class AtariGroup:
    """One ALE vector environment; observations as uint8 [N, C, 84, 84]."""

    def __init__(self, game: str, num_envs: int, seed: int, cfg: EnvConfig) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.env = AtariVectorEnv(
            rom_id(game),
            num_envs,
            num_threads=cfg.env_threads,
            grayscale=cfg.grayscale,
            stack_num=cfg.frame_stack,
            frameskip=cfg.frame_skip,
            noop_max=cfg.noop_max,
            reward_clipping=False,
            repeat_action_probability=cfg.repeat_action_probability,
            life_loss_info=cfg.life_loss_terminal,
            use_fire_reset=cfg.fire_reset,
            max_num_frames_per_episode=cfg.max_episode_frames,
            autoreset_mode="SameStep",
        )
        self.num_envs = num_envs
        self.seed = seed
        self.lives = np.zeros(num_envs, dtype=np.int64)

    @staticmethod
    def _frames(obs: np.ndarray) -> np.ndarray:
        if obs.ndim == 5:  # RGB: [N, stack, H, W, 3] -> [N, stack * 3, H, W]
            n, stack, h, w, c = obs.shape  # a view (channels-last strides) when stack is 1
            return obs.transpose(0, 1, 4, 2, 3).reshape(n, stack * c, h, w)
        return obs

    def reset(self) -> np.ndarray:
        obs, info = self.env.reset(seed=self.seed)
        self.lives = info["lives"].astype(np.int64)
        return self._frames(obs)

    def send(self, actions: np.ndarray) -> None:
        self.env.send(actions)

    def recv(self) -> StepResult:
        obs, reward, terminated, truncated, info = self.env.recv()
        # ALE reports the lives of the observation it returns: fewer lives than before mean a
        # life was lost and the game goes on; a game that ended was reset to its full lives
        lives = info["lives"].astype(np.int64)
        life_lost = terminated & (lives < self.lives)
        self.lives = lives
        final_obs = info.get("final_obs")
        return StepResult(
            obs=self._frames(obs),
            reward=reward.astype(np.float32),
            terminated=terminated,
            truncated=truncated & ~terminated,
            game_over=(terminated | truncated) & ~life_lost,
            final_obs=None if final_obs is None else self._frames(final_obs),
        )

    def close(self) -> None:
        self.env.close()


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
            raise ValueError(f"{env_id}: {key!r} is not a numeric attribute of {base}")
        try:
            setattr(inner, key, float(raw))
        except ValueError:
            env.close()
            raise ValueError(f"{env_id}: {key}={raw!r} is not a number") from None
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


class VectorTask:
    """A game's environments in `groups` asynchronous groups, plus episode bookkeeping."""

    def __init__(self, game: str, cfg: EnvConfig, seed: int, groups: int = 2) -> None:
        groups = max(1, min(groups, cfg.num_envs))
        if cfg.suite == "atari" and cfg.num_envs % groups:
            groups = 1
        sizes = [cfg.num_envs // groups + (i < cfg.num_envs % groups) for i in range(groups)]
        if cfg.suite == "atari":
            self.game = resolve_game(game)
            self.num_actions = num_actions(self.game)
            self.groups = [
                AtariGroup(self.game, n, seed + 10_007 * i, cfg) for i, n in enumerate(sizes)
            ]
        else:
            self.game = game
            probe = make_gym(game)
            if not isinstance(probe.action_space, gym.spaces.Discrete):
                raise ValueError(f"{game}: only discrete action spaces are supported")
            self.num_actions = int(probe.action_space.n)
            probe.close()
            self.groups = [GymGroup(game, n, seed + 10_007 * i) for i, n in enumerate(sizes)]
        self.obs_shape = observation_shape(cfg, self.game)
        starts = np.cumsum([0] + sizes)
        self.rows = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        self.num_envs = cfg.num_envs
        self.episodes = EpisodeTracker(cfg.num_envs)

    def reset(self) -> np.ndarray:
        """[N, ...] first observations of every environment."""
        return np.concatenate([group.reset() for group in self.groups])

    def close(self) -> None:
        for group in self.groups:
            group.close()


def observation_shape(cfg: EnvConfig, game: str) -> tuple[int, ...]:
    """[C, 84, 84] frames for Atari (C = stack x 1 or 3 channels); the env's shape otherwise."""
    if cfg.suite == "atari":
        return (cfg.frame_stack * (1 if cfg.grayscale else 3), 84, 84)
    probe = make_gym(game)
    shape = tuple(probe.observation_space.shape)
    probe.close()
    return shape


def training_games(cfg: EnvConfig) -> tuple[str, ...]:
    """The meta-training games: `env.games` (checked) or ALE's classic games with few actions."""
    if cfg.suite == "gym":
        if not cfg.games:
            raise ValueError("env.games: the gym suite needs an explicit list of gymnasium ids")
        return cfg.games
    if not cfg.games:
        games = meta_training_pool(cfg.max_actions, cfg.held_out)
    else:
        games = tuple(resolve_game(g) for g in cfg.games)
    held_out = {resolve_game(g) for g in cfg.held_out}
    leaked = sorted(held_out.intersection(games))
    if leaked:
        raise ValueError(f"env.games: {', '.join(leaked)} is held out (env.held_out)")
    if not games:
        raise ValueError(f"env.games: no game has at most {cfg.max_actions} actions")
    return games
