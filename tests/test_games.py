"""The Atari game catalogue, checked against the real ROMs that ale-py ships."""

import pytest

from leap_ray.config import load_config
from leap_ray.suites import atari as games
from leap_ray.suites import training_games

PAPER_HELD_OUT = ("Breakout", "SpaceInvaders")


@pytest.fixture(scope="module")
def pool() -> tuple[str, ...]:
    return games.meta_training_pool(held_out=PAPER_HELD_OUT)


def test_pool_is_computed_and_non_empty(pool: tuple[str, ...]) -> None:
    assert pool and pool == tuple(sorted(set(pool)))
    assert set(pool) <= set(games.CLASSIC_SUITE)


def test_pool_excludes_held_out_games(pool: tuple[str, ...]) -> None:
    assert not set(pool) & set(PAPER_HELD_OUT)


def test_the_config_decides_what_is_held_out() -> None:
    default = training_games(load_config(None).env)
    assert "Breakout" not in default and "SpaceInvaders" not in default
    breakout_back = training_games(load_config(None, ["env.held_out=[SpaceInvaders]"]).env)
    assert set(breakout_back) - set(default) == {"Breakout"}
    none_held = training_games(load_config(None, ["env.held_out=[]"]).env)
    assert {"Breakout", "SpaceInvaders"} <= set(none_held)


def test_pool_games_have_at_most_ten_actions(pool: tuple[str, ...]) -> None:
    assert all(games.num_actions(g) <= 10 for g in pool)
    rest = set(games.CLASSIC_SUITE) - set(pool) - set(PAPER_HELD_OUT)
    assert all(games.num_actions(g) > 10 for g in rest)
    assert games.meta_training_pool(4, PAPER_HELD_OUT) == ("Atlantis", "Freeway", "Skiing")
    assert games.meta_training_pool(4) == ("Atlantis", "Breakout", "Freeway", "Skiing")


@pytest.mark.parametrize(
    ("game", "count"), [("Pong", 6), ("Breakout", 4), ("SpaceInvaders", 6), ("MsPacman", 9)]
)
def test_known_minimal_action_counts(game: str, count: int) -> None:
    assert games.num_actions(game) == count


def test_multiplayer_only_rom_raises_instead_of_exiting() -> None:
    with pytest.raises(ValueError, match="single-player"):
        games.num_actions("Combat")


def test_all_games_lists_every_shipped_rom() -> None:
    everything = games.all_games()
    assert len(everything) == 108 == len(set(everything))
    assert set(games.CLASSIC_SUITE) <= set(everything)


def test_classic_suite_matches_gymnasium_v4_registrations() -> None:
    import gymnasium

    v4 = {k.removesuffix("NoFrameskip-v4") for k in gymnasium.registry if "NoFrameskip-v4" in k}
    assert set(games.CLASSIC_SUITE) == v4
    assert len(games.CLASSIC_SUITE) == len(set(games.CLASSIC_SUITE))


@pytest.mark.parametrize(
    ("name", "expected"),
    [("pong", "Pong"), ("space_invaders", "SpaceInvaders"), ("SpaceInvaders", "SpaceInvaders"),
     ("spaceinvaders", "SpaceInvaders"), ("tic_tac_toe_3d", "TicTacToe3D")],
)  # fmt: skip
def test_resolve_game(name: str, expected: str) -> None:
    assert games.resolve_game(name) == expected


@pytest.mark.parametrize(
    ("game", "rom"),
    [("SpaceInvaders", "space_invaders"), ("MontezumaRevenge", "montezuma_revenge"),
     ("Hero", "hero"), ("UpNDown", "up_n_down"), ("Jamesbond", "jamesbond"), ("Pong", "pong")],
)  # fmt: skip
def test_rom_id(game: str, rom: str) -> None:
    assert games.rom_id(game) == rom


def test_unknown_game_suggests_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown Atari game 'Pongg'; did you mean: .*Pong") as e:
        games.resolve_game("Pongg")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown Atari game"):
        games.num_actions("NotAGame")
