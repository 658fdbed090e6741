"""The MinAtar suite (Young & Tian 2019): Asterix, Breakout, Freeway, Seaquest and
SpaceInvaders on a 10x10 grid, tens to hundreds of thousands of steps per second on one core,
so that hundreds of learning processes fit a laptop. The `minatar` package is GPL-3.0: an
optional extra a user installs (`pip install minatar`), imported only by runs that use it.

A task is a game or a variant of one, "Breakout?sticky=0.25&ramping=false", so the
meta-training pool can be larger than three games: `sticky` (the chance the previous action is
repeated; default `env.repeat_action_probability`) and `ramping` (difficulty ramping; default
`env.difficulty_ramping`). Observations are [10, 10, 10] uint8 in {0, 1}, each game's 4-10
channels zero-padded to 10 so one encoder fits every game; all five games take MinAtar's full
set of 6 actions. `env.max_episode_frames` is a time limit in steps (MinAtar has no frame skip),
bootstrapped from the value of the last observation, not a terminal.
"""

from __future__ import annotations

import difflib

import numpy as np

from leap_ray.config import EnvConfig
from leap_ray.errors import ConfigError
from leap_ray.suites.base import StepResult

GAMES = {  # our name -> MinAtar's module
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
CHANNELS = 10  # the most of any game (Seaquest): every game's observation is padded to it
GRID = 10
NUM_ACTIONS = 6  # no-op, left, up, right, down, fire: the same set in every game
VARIANT_KEYS = ("sticky", "ramping")
# a colour per channel for videos (channel k drawn over channel k - 1)
PALETTE = np.array(
    [
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
        [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
    ],
    dtype=np.uint8,
)  # fmt: skip


def environment_class():
    try:
        from minatar import Environment
    except ImportError:
        raise ConfigError(
            "env.suite: 'minatar' needs the minatar package (GPL-3.0, not installed with "
            "leap-ray): pip install minatar==1.0.15"
        ) from None
    return Environment


def parse_task(name: str, cfg: EnvConfig) -> tuple[str, float, bool]:
    """(game, sticky-action probability, difficulty ramping) of a task name."""
    base, _, query = name.partition("?")
    game = _game(base)
    sticky, ramping = cfg.repeat_action_probability, cfg.difficulty_ramping
    for item in filter(None, query.split("&")):
        key, _, raw = item.partition("=")
        if key == "sticky":
            try:
                sticky = float(raw)
            except ValueError:
                raise ConfigError(f"{name}: sticky={raw!r} is not a number") from None
            if not 0.0 <= sticky <= 1.0:
                raise ConfigError(f"{name}: sticky must be in [0, 1], got {sticky}")
        elif key == "ramping":
            if raw not in ("true", "false"):
                raise ConfigError(f"{name}: ramping must be true or false, got {raw!r}")
            ramping = raw == "true"
        else:
            raise ConfigError(f"{name}: unknown variant key {key!r} (known: {VARIANT_KEYS})")
    return game, sticky, ramping


def _game(base: str) -> str:
    by_key = {g.lower(): g for g in GAMES}
    game = by_key.get(base.replace("_", "").lower())
    if game is None:
        close = difflib.get_close_matches(base, list(GAMES), n=2)
        hint = f"did you mean: {', '.join(close)}?" if close else f"one of {', '.join(GAMES)}"
        raise ConfigError(f"unknown MinAtar game {base!r}; {hint}")
    return game


def canonical(name: str, cfg: EnvConfig) -> str:
    """The name with the game spelled as here and only the variant keys it sets, in order,
    their values written one way ("sticky=0.10" is "sticky=0.1")."""
    base, _, query = name.partition("?")
    _, sticky, ramping = parse_task(name, cfg)  # checks every key and value
    given = {item.partition("=")[0] for item in filter(None, query.split("&"))}
    values = {"sticky": f"{sticky:g}", "ramping": "true" if ramping else "false"}
    keys = [f"{key}={values[key]}" for key in VARIANT_KEYS if key in given]
    return _game(base) + ("?" + "&".join(keys) if keys else "")


class MinAtarGroup:
    """N MinAtar environments stepped in turn; a finished episode resets in the same step."""

    def __init__(self, task: str, num_envs: int, seed: int, cfg: EnvConfig) -> None:
        game, sticky, ramping = parse_task(task, cfg)
        make = environment_class()
        self.envs = [
            make(GAMES[game], sticky_action_prob=sticky, difficulty_ramping=ramping)
            for _ in range(num_envs)
        ]
        for i, env in enumerate(self.envs):  # independent streams: seed s + 1 shares none of s's
            env.seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        self.num_envs = num_envs
        self.limit = cfg.max_episode_frames
        self.steps = np.zeros(num_envs, dtype=np.int64)  # [N] steps into the episode
        self.obs = np.zeros((num_envs, CHANNELS, GRID, GRID), dtype=np.uint8)  # [N, C, H, W]
        self.channels = self.envs[0].state_shape()[2]
        self._actions: np.ndarray | None = None

    def _observe(self, i: int, out: np.ndarray) -> None:
        out[i, : self.channels] = self.envs[i].state().transpose(2, 0, 1)

    def reset(self) -> np.ndarray:
        for i, env in enumerate(self.envs):
            env.reset()
            self._observe(i, self.obs)
        self.steps[:] = 0
        return self.obs.copy()

    def send(self, actions: np.ndarray) -> None:
        self._actions = actions

    def recv(self) -> StepResult:
        n = self.num_envs
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        final_obs = None
        for i, env in enumerate(self.envs):
            reward[i], terminated[i] = env.act(int(self._actions[i]))
            self.steps[i] += 1
            truncated[i] = not terminated[i] and self.steps[i] >= self.limit
            if truncated[i]:
                if final_obs is None:
                    final_obs = self.obs.copy()
                self._observe(i, final_obs)
            if terminated[i] or truncated[i]:
                env.reset()
                self.steps[i] = 0
            self._observe(i, self.obs)
        return StepResult(
            obs=self.obs.copy(),
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            game_over=terminated | truncated,
            final_obs=final_obs,
        )

    def close(self) -> None:
        self.envs = []


class MinAtarSuite:
    """`env.suite: minatar` (suites/base.Suite)."""

    name = "minatar"
    frames = False  # not Atari frames: no frame stacking, no RLlib Atari wrapper
    even_groups = False
    async_groups = False  # Python environments stepped in turn: one group, one forward a step
    video = True

    def resolve(self, game: str) -> str:
        return canonical(game, EnvConfig(suite="minatar"))

    def training_games(self, cfg: EnvConfig) -> tuple[str, ...]:
        """`env.games` (games or variants), else the three games not held out."""
        held_out = {parse_task(g, cfg)[0] for g in cfg.held_out}
        games = tuple(canonical(g, cfg) for g in cfg.games) or tuple(
            g for g in GAMES if g not in held_out
        )
        leaked = sorted({parse_task(g, cfg)[0] for g in games} & held_out)
        if leaked:
            raise ConfigError(f"env.games: {', '.join(leaked)} is held out (env.held_out)")
        seen: dict[tuple, str] = {}
        for game in games:  # "Seaquest" is "Seaquest?sticky=0.1" when that is the default
            task = parse_task(game, cfg)
            if task in seen:
                raise ConfigError(f"env.games: {seen[task]} and {game} are the same task")
            seen[task] = game
        if not games:
            raise ConfigError("env.games: every MinAtar game is held out")
        return games

    def observation_shape(self, cfg: EnvConfig, game: str) -> tuple[int, ...]:
        return (CHANNELS, GRID, GRID)

    def num_actions(self, cfg: EnvConfig, game: str) -> int:
        return NUM_ACTIONS

    def fire_action(self, cfg: EnvConfig, game: str) -> int | None:
        return None  # no lives to lose

    def vector_group(self, game: str, num_envs: int, seed: int, cfg: EnvConfig) -> MinAtarGroup:
        return MinAtarGroup(game, num_envs, seed, cfg)

    def single_env(self, game: str, cfg: EnvConfig):
        raise ConfigError("the MinAtar suite runs with learner: a2c (not yet with rllib_ppo)")

    def max_return(self, game: str) -> float | None:
        return None

    def rgb_frame(self, cfg: EnvConfig, obs: np.ndarray) -> np.ndarray:
        """[C, 10, 10] -> [80, 80, 3]: each active channel in its colour, 8x8 pixels a cell."""
        frame = np.zeros((GRID, GRID, 3), dtype=np.uint8)
        for channel in range(obs.shape[0]):
            frame[obs[channel] > 0] = PALETTE[channel]
        return frame.repeat(8, axis=0).repeat(8, axis=1)
