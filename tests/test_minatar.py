"""The MinAtar suite on the real `minatar` package: task names and variants, observations
padded to one shape, the time limit, sticky actions, and meta-training, evaluation and
finetuning end to end through the same workers, server and checkpoints as Atari."""

import numpy as np
import pytest

from leap_ray.checkpoint import checkpoint_encoder, load_checkpoint
from leap_ray.cli import main
from leap_ray.config import ConfigError, load_config
from leap_ray.driver import train
from leap_ray.learners import initial_encoder, learner_for
from leap_ray.learners.a2c import make_learner
from leap_ray.suites import SUITES, training_games
from leap_ray.suites.minatar import MinAtarGroup

SMOKE = "configs/minatar_smoke.yaml"
SUITE = SUITES["minatar"]


def env(*overrides):
    return load_config(SMOKE, list(overrides)).env


def test_task_names_variants_and_the_pool():
    assert SUITE.resolve("space_invaders") == "SpaceInvaders"
    assert (
        SUITE.resolve("breakout?ramping=false&sticky=0.25") == "Breakout?sticky=0.25&ramping=false"
    )
    assert training_games(env()) == ("Asterix", "Freeway?sticky=0", "Seaquest?ramping=false")
    assert training_games(env("env.games=[]")) == ("Asterix", "Freeway", "Seaquest")
    with pytest.raises(ConfigError, match="unknown MinAtar game 'Breakot'; did you mean: Breakout"):
        SUITE.resolve("Breakot")
    with pytest.raises(ConfigError, match="unknown variant key 'speed'"):
        SUITE.resolve("Breakout?speed=2")
    with pytest.raises(ConfigError, match="sticky must be in"):
        SUITE.resolve("Breakout?sticky=2")
    with pytest.raises(ConfigError, match="Seaquest and Seaquest.sticky=0.1 are the same task"):
        training_games(env("env.games=[Seaquest, 'Seaquest?sticky=0.10']"))  # 0.1 is the default
    with pytest.raises(ConfigError, match="Breakout is held out"):
        training_games(env("env.games=[Asterix, 'Breakout?sticky=0.5']"))


def test_observations_are_padded_to_ten_channels_and_all_games_take_six_actions():
    for game, channels in (("Breakout", 4), ("Freeway", 7), ("Seaquest", 10)):
        group = MinAtarGroup(game, 3, seed=0, cfg=env())
        obs = group.reset()
        assert obs.shape == (3, 10, 10, 10) and obs.dtype == np.uint8
        assert set(np.unique(obs)) <= {0, 1} and obs[:, :channels].any()
        assert not obs[:, channels:].any()  # the padding
        assert SUITE.num_actions(env(), game) == 6
        group.close()


def test_the_time_limit_cuts_an_episode_without_a_terminal():
    group = MinAtarGroup("Freeway", 2, seed=0, cfg=env("env.max_episode_frames=7"))
    group.reset()
    for step in range(1, 8):
        group.send(np.zeros(2, dtype=np.int64))  # Freeway: no-op never ends the game
        result = group.recv()
        assert not result.terminated.any()
        assert result.truncated.all() == (step == 7) and result.game_over.all() == (step == 7)
    assert result.final_obs is not None and result.final_obs.shape == (2, 10, 10, 10)


def test_sticky_actions_one_repeats_the_first_action_whatever_is_asked():
    def play(actions):
        group = MinAtarGroup("Breakout?sticky=1.0", 1, seed=3, cfg=env())
        frames = [group.reset()]
        for action in actions:
            group.send(np.array([action]))
            frames.append(group.recv().obs)
        return np.stack(frames)

    rng = np.random.default_rng(0)
    assert np.array_equal(play(rng.integers(6, size=30)), play(rng.integers(6, size=30)))
    free = MinAtarGroup("Breakout?sticky=0.0", 1, seed=3, cfg=env())
    free.reset()
    moved = []
    for action in (1, 1, 1, 1):  # left: the paddle (channel 0) moves
        free.send(np.array([action]))
        moved.append(free.recv().obs[0, 0].copy())
    assert not np.array_equal(moved[0], moved[-1])


@pytest.mark.usefixtures("ray_session")
def test_meta_training_evaluation_and_finetuning_end_to_end(tmp_path):
    cfg = load_config(SMOKE, [f"logging.logdir={tmp_path}", "logging.run_name=meta"])
    run_dir = train(cfg)
    state = load_checkpoint(run_dir)
    assert state["meta_step"] == 2 and state["meta_init"]["version"] == 2
    theta_0 = initial_encoder(cfg, training_games(cfg.env))
    moved = state["meta_init"]["init"]
    assert set(moved) == {"convs.0.weight", "convs.0.bias", "fc.weight", "fc.bias"}
    assert any(not np.allclose(moved[n].numpy(), theta_0[n]) for n in moved)
    control = tmp_path / "perturbed"
    assert main(["perturb", str(run_dir), "--out", str(control)]) == 0
    out = tmp_path / "eval"
    args = ["evaluate", "--init", str(run_dir), "--baseline", "random", "--steps", "400"]
    args += ["--baseline", f"perturbed:{control}"]
    assert main([*args, "--seeds", "2", "--video", "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "videos").iterdir()) == [
        f"{method}--{game}.gif"
        for method in ("leap", "perturbed", "random")
        for game in ("Breakout", "SpaceInvaders")
    ]
    # the health of each initialization; random's is the mean over the encoders that the
    # learners of seeds 0 and 1 drew
    health = (out / "summary.md").read_text().split("## Initialization health")[1]
    a2c = learner_for(cfg)
    probe = a2c.probe_observations(cfg, ("Breakout", "SpaceInvaders"))

    def reading(init):
        units = a2c.unit_activity(cfg, init, probe)
        return np.array([units["meta/init_dead_units"], units["meta/init_always_on_units"]])

    drawn = []
    for seed in (0, 1):
        learner = make_learner(cfg, "Breakout", seed, meta=False)
        learner.envs.close()
        drawn.append({n: p.detach().numpy() for n, p in learner.model.encoder.named_parameters()})
    assert not np.array_equal(drawn[0]["fc.weight"], drawn[1]["fc.weight"])
    expected = {
        "random": (reading(drawn[0]) + reading(drawn[1])) / 2,
        "leap": reading(checkpoint_encoder(state)),
        "perturbed": reading(checkpoint_encoder(load_checkpoint(control))),
    }
    for method, (dead, on) in expected.items():
        assert f"| {method} | {dead:.1%} | {on:.1%} |" in health, health
    ft = ["finetune", "--config", SMOKE, "--steps-per-game", "400", "--out", str(tmp_path / "ft")]
    assert main(ft) == 0
    assert load_checkpoint(tmp_path / "ft")["progress"]["games_done"] == 3
