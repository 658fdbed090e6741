"""The Atari suite: the game catalogue (names, ROM ids and minimal action-set sizes, all taken
from ALE) and its environments (ale-py's C++ `AtariVectorEnv` for the A2C learner, one ALE v5
gymnasium env for RLlib's).

Leap (Flennerhag et al., 2019) meta-learns on the Atari games whose minimal action set has at most
10 actions (27 games in their suite), with Breakout and SpaceInvaders held out for evaluation
(`env.held_out`). This module builds that pool from the ROMs that ale-py ships. Action counts
are always read from ALE (`ALEInterface.getMinimalActionSet`), never typed in by hand, so they
follow the installed ALE version. No Ray imports: this module is safe to use anywhere.

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

import difflib
import functools
import re

import ale_py
import gymnasium as gym
import numpy as np
from ale_py import Action, ALEInterface, LoggerMode, roms

from leap_ray.config import EnvConfig
from leap_ray.errors import ConfigError
from leap_ray.suites.base import StepResult

FULL_ACTION_SET = 18  # every joystick and button combination (ALE's Action enum)

# The classic suite: the games old gym registered as `<Name>-v4` / `<Name>NoFrameskip-v4`
# (ale_py.registration.register_v0_v4_envs registers the same 62 games).
CLASSIC_SUITE: tuple[str, ...] = (
    "Adventure", "AirRaid", "Alien", "Amidar", "Assault", "Asterix", "Asteroids", "Atlantis",
    "BankHeist", "BattleZone", "BeamRider", "Berzerk", "Bowling", "Boxing", "Breakout",
    "Carnival", "Centipede", "ChopperCommand", "CrazyClimber", "Defender", "DemonAttack",
    "DoubleDunk", "ElevatorAction", "Enduro", "FishingDerby", "Freeway", "Frostbite", "Gopher",
    "Gravitar", "Hero", "IceHockey", "Jamesbond", "JourneyEscape", "Kangaroo", "Krull",
    "KungFuMaster", "MontezumaRevenge", "MsPacman", "NameThisGame", "Phoenix", "Pitfall", "Pong",
    "Pooyan", "PrivateEye", "Qbert", "Riverraid", "RoadRunner", "Robotank", "Seaquest", "Skiing",
    "Solaris", "SpaceInvaders", "StarGunner", "Tennis", "TimePilot", "Tutankham", "UpNDown",
    "Venture", "VideoPinball", "WizardOfWor", "YarsRevenge", "Zaxxon",
)  # fmt: skip


def _camel(rom: str) -> str:
    """ALE rom id -> Gymnasium's CamelCase name (same rule as ale_py.registration)."""
    return rom.title().replace("_", "")


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


@functools.cache
def _roms() -> dict[str, str]:
    """CamelCase name -> rom id, for every ROM ale-py ships."""
    return {_camel(rom): rom for rom in roms.get_all_rom_ids()}


@functools.cache
def _by_key() -> dict[str, str]:
    """Normalised name (lower case, alphanumerics only) -> CamelCase name."""
    return {_key(name): name for name in _roms()}


def all_games() -> tuple[str, ...]:
    """CamelCase names of every ROM ale-py ships, sorted."""
    return tuple(sorted(_roms()))


def resolve_game(name: str) -> str:
    """The canonical CamelCase name for `name` ("pong", "space_invaders", "SpaceInvaders", ...)."""
    by_key = _by_key()
    if (game := by_key.get(_key(name))) is not None:
        return game
    close = [by_key[k] for k in difflib.get_close_matches(_key(name), by_key, n=3)]
    hint = f"did you mean: {', '.join(close)}?" if close else "see leap_ray.games.all_games()"
    raise ConfigError(f"unknown Atari game {name!r}; {hint}")


def rom_id(game: str) -> str:
    """The ALE rom id of `game`, e.g. "SpaceInvaders" -> "space_invaders"."""
    return _roms()[resolve_game(game)]


def num_actions(game: str) -> int:
    """Size of `game`'s minimal action set, read from ALE by loading the ROM (cached)."""
    return len(_minimal_actions(resolve_game(game)))


def fire_action(game: str) -> int | None:
    """The index of FIRE in `game`'s minimal action set (the agent's action number), or None."""
    actions = _minimal_actions(resolve_game(game))
    return actions.index(Action.FIRE) if Action.FIRE in actions else None


@functools.cache
def _minimal_actions(game: str) -> list:
    path = roms.get_rom_path(_roms()[game])
    if path is None:
        raise ConfigError(f"ale-py ships no ROM file for {game!r}")
    ALEInterface.setLoggerMode(LoggerMode.Error)  # global in ALE; silences the load banner
    ale = ALEInterface()
    # ALE exits the whole process on a ROM it cannot run single-player, so check first.
    if ale.isSupportedROM(str(path)) is None:
        raise ConfigError(f"Atari game {game!r} has no single-player mode in ALE")
    ale.loadROM(str(path))
    return list(ale.getMinimalActionSet())


def meta_training_pool(max_actions: int = 10, held_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Classic-suite games with at most `max_actions` minimal actions, minus `held_out` (the
    config's `env.held_out` decides; the paper's are Breakout and SpaceInvaders), sorted."""
    excluded = {resolve_game(g) for g in held_out}
    return tuple(
        sorted(g for g in CLASSIC_SUITE if g not in excluded and num_actions(g) <= max_actions)
    )


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
            full_action_space=cfg.full_action_space,
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


class AtariSuite:
    """`env.suite: atari` (suites/base.Suite)."""

    name = "atari"
    frames = True  # 84x84 frames: frame stacking and RLlib's Atari preprocessing apply
    even_groups = True  # AtariVectorEnv groups must be of equal size
    async_groups = True  # ALE's C++ threads emulate one group while the policy acts on another
    video = True

    def resolve(self, game: str) -> str:
        return resolve_game(game)

    def training_games(self, cfg: EnvConfig) -> tuple[str, ...]:
        """`env.games` (checked) or ALE's classic games with at most `env.max_actions`."""
        if not cfg.games:
            games = meta_training_pool(cfg.max_actions, cfg.held_out)
        else:
            games = tuple(resolve_game(g) for g in cfg.games)
        held_out = {resolve_game(g) for g in cfg.held_out}
        leaked = sorted(held_out.intersection(games))
        if leaked:
            raise ConfigError(f"env.games: {', '.join(leaked)} is held out (env.held_out)")
        if not games:
            raise ConfigError(f"env.games: no game has at most {cfg.max_actions} actions")
        return games

    def observation_shape(self, cfg: EnvConfig, game: str) -> tuple[int, ...]:
        """[C, 84, 84] frames (C = stack x 1 or 3 channels)."""
        return (cfg.frame_stack * (1 if cfg.grayscale else 3), 84, 84)

    def num_actions(self, cfg: EnvConfig, game: str) -> int:
        """The minimal action set's size, or 18 with `env.full_action_space` (ALE v5). The
        meta-training pool's "at most max_actions" rule always reads the minimal set."""
        return FULL_ACTION_SET if cfg.full_action_space else num_actions(game)

    def fire_action(self, cfg: EnvConfig, game: str) -> int | None:
        if cfg.full_action_space:
            return Action.FIRE.value  # the full set is ALE's Action enum in order
        return fire_action(game)

    def vector_group(self, game: str, num_envs: int, seed: int, cfg: EnvConfig) -> AtariGroup:
        return AtariGroup(game, num_envs, seed, cfg)

    def single_env(self, game: str, cfg: EnvConfig) -> gym.Env:
        """ALE v5 without frame skipping (RLlib's Atari wrapper skips and max-pools frames)."""
        gym.register_envs(ale_py)
        return gym.make(
            f"ALE/{resolve_game(game)}-v5",
            frameskip=1,
            repeat_action_probability=cfg.repeat_action_probability,
            full_action_space=cfg.full_action_space,
        )

    def max_return(self, game: str) -> float | None:
        return None

    def rgb_frame(self, cfg: EnvConfig, obs: np.ndarray) -> np.ndarray:
        """The newest frame of the stack, [84, 84, 3]."""
        if cfg.grayscale:
            return np.repeat(obs[-1][:, :, None], 3, axis=2)
        return np.ascontiguousarray(obs[-3:].transpose(1, 2, 0))
