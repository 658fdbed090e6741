"""The Atari game catalogue: names, ROM ids and minimal action-set sizes, all taken from ALE.

Leap (Flennerhag et al., 2019) meta-learns on the Atari games whose minimal action set has at most
10 actions (27 games in their suite), with Breakout and SpaceInvaders held out for evaluation
(`env.held_out`). This module builds that pool from the ROMs that ale-py ships. Action counts
are always read from ALE (`ALEInterface.getMinimalActionSet`), never typed in by hand, so they
follow the installed ALE version. No Ray imports: this module is safe to use anywhere.
"""

from __future__ import annotations

import difflib
import functools
import re

from ale_py import Action, ALEInterface, LoggerMode, roms

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
    raise ValueError(f"unknown Atari game {name!r}; {hint}")


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
        raise ValueError(f"ale-py ships no ROM file for {game!r}")
    ALEInterface.setLoggerMode(LoggerMode.Error)  # global in ALE; silences the load banner
    ale = ALEInterface()
    # ALE exits the whole process on a ROM it cannot run single-player, so check first.
    if ale.isSupportedROM(str(path)) is None:
        raise ValueError(f"Atari game {game!r} has no single-player mode in ALE")
    ale.loadROM(str(path))
    return list(ale.getMinimalActionSet())


def meta_training_pool(max_actions: int = 10, held_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Classic-suite games with at most `max_actions` minimal actions, minus `held_out` (the
    config's `env.held_out` decides; the paper's are Breakout and SpaceInvaders), sorted."""
    excluded = {resolve_game(g) for g in held_out}
    return tuple(
        sorted(g for g in CLASSIC_SUITE if g not in excluded and num_actions(g) <= max_actions)
    )
