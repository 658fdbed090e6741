"""The Atari options on real ALE ROMs: sticky actions, a lost life as a learning terminal while
episode statistics count whole games, and the time limit bootstrapped from V(final_obs)."""

import numpy as np
import pytest
import torch

from leap_ray.config import load_config
from leap_ray.learners.a2c.envs import EpisodeTracker
from leap_ray.learners.a2c.learning import a2c_losses, make_learner
from leap_ray.suites.atari import AtariGroup


def env_config(*overrides):
    return load_config(None, ["env.num_envs=2", "env.grayscale=true", *overrides]).env


def play(group: AtariGroup, actions: np.ndarray):
    """Step through `actions` [T, N]; the frames and every StepResult."""
    frames, results = [group.reset()], []
    for step_actions in actions:
        group.send(step_actions)
        results.append(group.recv())
        frames.append(results[-1].obs.copy())
    group.close()
    return np.stack(frames), results


def test_sticky_actions_repeat_the_previous_action():
    rng = np.random.default_rng(0)
    random_actions = rng.integers(0, 4, (60, 2))
    noops = np.zeros_like(random_actions)
    runs = {}
    for probability in (0.0, 1.0):
        cfg = env_config(f"env.repeat_action_probability={probability}")
        runs[probability] = [
            play(AtariGroup("Breakout", 2, 3, cfg), actions)[0]
            for actions in (random_actions, noops)
        ]
    assert not np.array_equal(*runs[0.0]), "without stickiness the actions must matter"
    assert np.array_equal(*runs[1.0]), "always sticky: the emulator never takes a new action"


def test_lost_lives_are_learning_terminals_and_statistics_count_whole_games():
    actions = np.random.default_rng(1).integers(0, 4, (700, 2))
    runs = {}
    for life_loss in (True, False):
        cfg = env_config(f"env.life_loss_terminal={str(life_loss).lower()}")
        _, results = play(AtariGroup("Breakout", 2, 5, cfg), actions)
        tracker = EpisodeTracker(2)
        for t, result in enumerate(results):
            tracker.record(slice(0, 2), result.reward, result.game_over, t + 1)
        terminated = np.stack([r.terminated for r in results])
        game_over = np.stack([r.game_over for r in results])
        runs[life_loss] = (terminated, game_over, tracker.drain())
    terminated, game_over, games = runs[True]
    assert game_over.sum() >= 2, "random play should end some games in 700 steps"
    assert terminated.sum() >= 4 * game_over.sum(), "Breakout has 5 lives: a terminal per life"
    assert not (game_over & ~terminated).any()
    plain_terminated, plain_game_over, plain_games = runs[False]
    assert np.array_equal(plain_terminated, plain_game_over)
    assert np.array_equal(game_over, plain_game_over), "life terminals must not change the game"
    assert games == plain_games and all(length > 50 for _, _, length in games)


def test_time_limit_is_bootstrapped_from_the_final_value_not_terminal():
    cfg = load_config(
        None,
        [
            "env.num_envs=2",
            "env.grayscale=true",
            "env.frame_stack=4",
            "a2c.encoder=nature",
            "env.max_episode_frames=60",
            "env.life_loss_terminal=false",
        ],
    )  # Pong: no lives, long games; 60 frames = 15 env_steps per episode
    learner = make_learner(cfg, "Pong", seed=0, meta=False)
    seen = []
    for group in learner.envs.groups:
        real_recv = group.recv

        def recording_recv(real_recv=real_recv):
            seen.append(real_recv())
            return seen[-1]

        group.recv = recording_recv
    checked = 0
    for _ in range(4):  # 20 env_steps per environment: each is cut once
        seen.clear()
        learner.rollout.collect()
        per_step = [seen[i : i + len(learner.envs.groups)] for i in range(0, len(seen), 2)]
        for t, results in enumerate(per_step):
            for rows, result in zip(learner.envs.rows, results, strict=True):
                for i in np.flatnonzero(result.truncated):
                    final = torch.from_numpy(result.final_obs[i : i + 1])
                    assert not np.array_equal(result.final_obs[i], result.obs[i])
                    with torch.no_grad():
                        value = float(learner.model(final)[1])
                    reward = np.clip(result.reward[i], -cfg.env.reward_clip, cfg.env.reward_clip)
                    expected = reward + cfg.a2c.discount * value
                    row = rows.start + i
                    assert float(learner.rollout.rewards[t, row]) == pytest.approx(
                        expected, abs=1e-5
                    )
                    assert float(learner.rollout.dones[t, row]) == 1.0
                    assert abs(value) > 0, "a zero value would hide a missing bootstrap"
                    checked += 1
                assert not (result.truncated & result.terminated).any()
        learner.rollout.obs[0].copy_(learner.rollout.obs[-1])
    assert checked >= 2
    games = learner.envs.episodes.drain()
    assert games and all(length == 15 for _, _, length in games), games
    learner.envs.close()


def test_fire_after_a_lost_life_is_pressed_for_the_agent_and_left_out_of_its_gradient():
    """env.fire_after_life_loss on real Breakout: the step after every lost life (game not
    over) sends FIRE, marked forced; forced steps leave the policy and entropy terms."""
    cfg = load_config(None, ["env.num_envs=4", "env.fire_after_life_loss=true"])
    learner = make_learner(cfg, "Breakout", seed=0, meta=False)
    lost = []
    for group in learner.envs.groups:
        real_recv = group.recv

        def recording_recv(real_recv=real_recv):
            result = real_recv()
            lost.append(result.terminated & ~result.game_over)
            return result

        group.recv = recording_recv
    forced_steps, lives_lost = 0, 0
    for _ in range(120):  # random play loses lives within a few hundred env_steps
        lost.clear()
        previous = learner.rollout.must_fire.clone()
        learner.rollout.collect()
        forced = learner.rollout.forced
        groups = len(learner.envs.groups)
        expected = torch.zeros_like(forced)
        expected[0] = previous
        for k, life_lost in enumerate(lost[: (cfg.a2c.unroll - 1) * groups]):
            t, g = divmod(k, groups)
            expected[t + 1, learner.envs.rows[g]] |= torch.from_numpy(life_lost)
        assert torch.equal(forced, expected)
        assert (learner.rollout.actions[forced] == 1).all()  # FIRE is action 1 in Breakout
        forced_steps += int(forced.sum())
        lives_lost += int(sum(int(x.sum()) for x in lost))
        learner.rollout.advance()
    assert forced_steps >= 3 and lives_lost >= forced_steps
    learner.envs.close()

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values, returns = torch.zeros(3), torch.tensor([1.0, -1.0, 2.0])
    actions = torch.tensor([0, 1, 1])
    mask = torch.tensor([True, False, True])
    masked = a2c_losses(logits, values, actions, returns, mask)
    kept = a2c_losses(logits[mask], values[mask], actions[mask], returns[mask])
    torch.testing.assert_close(masked[0], kept[0])  # policy: the chosen rows only
    torch.testing.assert_close(masked[2], kept[2])  # entropy: the chosen rows only
    torch.testing.assert_close(masked[1], a2c_losses(logits, values, actions, returns)[1])


def test_the_v5_protocol_plays_18_actions_and_keeps_the_papers_pool():
    """configs/atari_v5.yaml: the full action set in every game, while the meta-training pool
    is still chosen by each game's minimal action set (the paper's 27 games)."""
    from leap_ray.suites import training_games
    from leap_ray.suites.atari import num_actions

    v5 = load_config("configs/atari_v5.yaml", ["env.num_envs=2"])
    assert training_games(v5.env) == training_games(load_config("configs/atari27.yaml").env)
    assert len(training_games(v5.env)) == 25  # 27 with the two held out (docs/games.md)
    env = v5.env
    assert (env.repeat_action_probability, env.full_action_space) == (0.25, True)
    assert not env.life_loss_terminal and env.max_episode_frames == 108_000
    learner = make_learner(v5, "Pong", seed=0)
    try:
        assert num_actions("Pong") == 6 and learner.model.policy.out_features == 18
        assert learner.envs.groups[0].env.single_action_space.n == 18
        learner.update(None, 0)  # the emulator takes all 18 actions
    finally:
        learner.envs.close()


def test_fire_after_life_loss_presses_the_full_sets_fire():
    from leap_ray.suites import suite_for

    env = load_config(None, ["env.full_action_space=true"]).env
    assert suite_for(env).fire_action(env, "Breakout") == 1  # ALE's Action.FIRE
    minimal = load_config(None, []).env
    assert suite_for(minimal).fire_action(minimal, "Breakout") == 1  # NOOP, FIRE, RIGHT, LEFT
