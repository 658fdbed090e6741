"""The A2C learner: it learns (CartPole, same code path as Atari), and on real ALE ROMs its
shapes, action sets, reward clipping, episode returns and partial meta-gradients are right."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from leap_ray.config import load_config
from leap_ray.learners.a2c.learning import a2c_losses, make_learner, n_step_returns
from leap_ray.learners.a2c.networks import make_encoder
from leap_ray.meta import PartialMetaGradient
from leap_ray.suites.atari import AtariGroup, num_actions


def atari_config(*overrides):
    return load_config(None, ["env.num_envs=4", "a2c.unroll=5", *overrides])


def test_n_step_returns_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    returns = n_step_returns(rewards, dones, torch.tensor([10.0, -1.0]), discount=0.5)
    # env 0: t=2: 3 + .5 * 10 = 8; t=1 ends an episode: 2; t=0: 1 + .5 * 2 = 2
    # env 1: t=2: 0 + .5 * -1 = -.5; t=1: 1 - .25 = .75; t=0: .375
    torch.testing.assert_close(returns, torch.tensor([[2.0, 0.375], [2.0, 0.75], [8.0, -0.5]]))


def test_cartpole_learns_through_the_same_learner():
    """The CI learning test: the Atari learner's code path on CartPole must rise far above random
    play (~22) within 60k env_steps (~12 s); a broken update or initialization stays near it."""
    cfg = load_config(
        None,
        [
            "env.suite=gym",
            "env.num_envs=8",
            "a2c.encoder=mlp",
            "a2c.lr=2e-3",
            "a2c.rms_eps=1e-5",
            "a2c.entropy_cost=0.0",
            "a2c.max_grad_norm=0.5",
        ],
    )
    learner = make_learner(cfg, "CartPole-v1", seed=0)
    summary = learner.train(60_000)
    episodes = np.array([(env_step, ret) for env_step, ret, _ in summary.episodes])
    first = episodes[episodes[:, 0] <= 10_000, 1].mean()
    last = episodes[episodes[:, 0] > 50_000, 1].mean()
    assert first < 60, f"the first 10k env_steps already average {first:.1f}"
    assert last >= 150, f"games ending in the last 10k env_steps average {last:.1f} (random: ~22)"


def test_path_tracker_measures_the_task_path_leap_minimizes():
    """summary.path is sum_i sqrt(|theta_{i+1} - theta_i|^2 + (l_{i+1} - l_i)^2) over the encoder,
    l_K being theta_K's loss, recomputed here from the recorded parameters and losses."""
    cfg = load_config(None, ["env.suite=gym", "env.num_envs=4", "a2c.encoder=mlp", "a2c.lr=1e-2"])
    learner = make_learner(cfg, "CartPole-v1", seed=3)
    thetas = [[p.detach().clone() for p in learner.model.encoder.parameters()]]
    losses = []
    update = learner.update

    def recording_update(*args, **kwargs):
        stats = update(*args, **kwargs)
        thetas.append([p.detach().clone() for p in learner.model.encoder.parameters()])
        losses.append(stats["losses/total"])
        return stats

    learner.update = recording_update
    summary = learner.train(400)
    losses.append(summary.final_loss)
    assert len(losses) == len(thetas) == 21
    d_theta_sq = np.array(
        [
            sum(float((b - a).pow(2).sum()) for a, b in zip(before, after, strict=True))
            for before, after in zip(thetas[:-1], thetas[1:], strict=True)
        ]
    )
    squared = d_theta_sq + np.diff(losses) ** 2
    assert summary.path["path/length"] == pytest.approx(np.sqrt(squared).sum(), rel=1e-5)
    assert summary.path["path/energy"] == pytest.approx(squared.sum(), rel=1e-5)
    distance = (
        sum(float((b - a).pow(2).sum()) for a, b in zip(thetas[0], thetas[-1], strict=True)) ** 0.5
    )
    assert summary.path["path/distance_from_init"] == pytest.approx(distance, rel=1e-5)
    assert summary.path["path/length"] > distance > 0


def test_atari_rollout_shapes_and_minimal_action_set():
    cfg = atari_config()  # the paper's observation: one RGB frame
    learner = make_learner(cfg, "MsPacman", seed=1)
    assert learner.envs.num_actions == num_actions("MsPacman") == 9
    assert learner.model.policy.out_features == 9
    learner.rollout.collect()
    assert (
        learner.rollout.obs.shape == (6, 4, 3, 84, 84) and learner.rollout.obs.dtype == torch.uint8
    )
    assert learner.rollout.obs[1:].float().std() > 0, "frames are blank"
    assert learner.rollout.actions.shape == (5, 4)
    assert 0 <= int(learner.rollout.actions.min()) and int(learner.rollout.actions.max()) < 9
    stacked = make_learner(atari_config("env.grayscale=true", "env.frame_stack=4"), "Pong", 1)
    assert stacked.rollout.obs.shape == (6, 4, 4, 84, 84)


def test_rgb_frames_keep_channels_in_stack_then_colour_order():
    raw = np.random.default_rng(0).integers(0, 256, (2, 3, 84, 84, 3), dtype=np.uint8)
    frames = AtariGroup._frames(raw)  # ALE's [N, stack, H, W, RGB] -> [N, stack * RGB, H, W]
    assert frames.shape == (2, 9, 84, 84)
    for k in range(3):
        for colour in range(3):
            assert np.array_equal(frames[:, 3 * k + colour], raw[:, k, :, :, colour])
    single = raw[:, :1]
    assert np.shares_memory(AtariGroup._frames(single), single), "one RGB frame needs no copy"


NATURE = ["env.grayscale=true", "env.frame_stack=4", "a2c.encoder=nature"]


@pytest.mark.parametrize(
    "game, overrides",
    [
        ("Pong", NATURE),
        ("CartPole-v1", ["env.suite=gym", "a2c.encoder=mlp"]),
        ("Pong", [*NATURE, "a2c.precision=bfloat16"]),
    ],
)
def test_update_gradient_equals_one_plain_forward_over_the_batch(game, overrides):
    """The loss reuses the acting steps' trunk graphs; its gradient must be exactly that of one
    ordinary float32 forward over the rollout's observations (close to it under bfloat16)."""
    cfg = atari_config(*overrides)
    learner = make_learner(cfg, game, seed=4, meta=False)
    learner.rollout.collect()
    learner.loss()[0].backward()
    reused = {name: p.grad.clone() for name, p in learner.model.named_parameters()}
    learner.model.zero_grad()

    steps, model = cfg.a2c.unroll, learner.model
    with torch.no_grad():
        bootstrap = model(learner.rollout.obs[steps])[1]
    rewards = learner.rollout.rewards.clamp(-cfg.env.reward_clip, cfg.env.reward_clip)
    returns = n_step_returns(rewards, learner.rollout.dones, bootstrap, cfg.a2c.discount)
    logits, values = model(learner.rollout.obs[:steps].flatten(0, 1))
    policy, value, entropy = a2c_losses(
        logits, values, learner.rollout.actions.flatten(), returns.flatten()
    )
    (policy + cfg.a2c.value_cost * value - cfg.a2c.entropy_cost * entropy).backward()
    for name, p in model.named_parameters():
        assert p.grad.abs().sum() > 0, name
        if cfg.a2c.precision == "float32":
            torch.testing.assert_close(p.grad, reused[name], rtol=1e-4, atol=1e-7, msg=name)
        else:  # 8-bit mantissas in the forward: the direction and size hold, not the digits.
            # At the orthogonal init this batch's advantages are small differences of values:
            # the conv biases' gradients keep cosine 0.94-0.97 (0.99+ elsewhere and other seeds)
            cosine = F.cosine_similarity(p.grad.flatten(), reused[name].flatten(), dim=0)
            assert cosine > 0.93, f"{name}: cosine {cosine:.4f}"
            assert abs(reused[name].norm() / p.grad.norm() - 1) < 0.1, name


def test_encoder_layouts_change_layout_only():
    """Channels-last convolutions and the transposed fc weight are for speed: the encoder must
    compute, and differentiate, what plain contiguous layers with the same numbers do, give
    gradients in its parameters' layouts, and survive a round trip through numpy (the driver's
    C-ordered copies) into a fresh encoder."""
    torch.manual_seed(0)
    encoder = make_encoder("nature", (4, 84, 84))
    assert encoder.fc.weight.shape == (512, 3136) and encoder.fc.weight.stride() == (1, 512)
    obs = torch.randint(0, 256, (6, 4, 84, 84), dtype=torch.uint8)
    plain = {
        name: p.detach().contiguous().requires_grad_() for name, p in encoder.named_parameters()
    }

    x = obs.float() / 255.0
    for index, layer in enumerate(encoder.convs):
        if isinstance(layer, torch.nn.Conv2d):
            weight, bias = plain[f"convs.{index}.weight"], plain[f"convs.{index}.bias"]
            x = F.relu(F.conv2d(x, weight, bias, layer.stride))
    expected = F.relu(F.linear(x.flatten(1), plain["fc.weight"], plain["fc.bias"]))
    features = encoder(obs)
    # float32 sums in another order: errors of a few ulps of the O(1) features the orthogonal
    # init gives (the layouts would be off by whole features if they mixed up an axis)
    assert float(expected.detach().abs().max()) > 0.5
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)

    features.square().sum().backward()
    expected.square().sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad.stride() == p.stride(), name
        scale = float(plain[name].grad.abs().max())  # O(100) here: ulps scale with it
        torch.testing.assert_close(p.grad, plain[name].grad, rtol=1e-4, atol=1e-6 * scale, msg=name)

    state = {name: p.detach().numpy().copy() for name, p in encoder.named_parameters()}
    fresh = make_encoder("nature", (4, 84, 84))
    fresh.load_state_dict({name: torch.from_numpy(array) for name, array in state.items()})
    assert fresh.fc.weight.stride() == (1, 512)
    assert torch.equal(fresh(obs), features.detach())


def test_reward_clipping_applies_to_learning_only():
    learner = make_learner(atari_config(), "SpaceInvaders", seed=2, meta=False)
    raw_rewards = []  # what ALE returned, copied before the learner sees it
    for group in learner.envs.groups:
        real_recv = group.recv

        def recording_recv(real_recv=real_recv):
            result = real_recv()
            raw_rewards.append(result.reward.copy())
            return result

        group.recv = recording_recv
    summary = learner.train(3_000)
    returns = [episode_return for _, episode_return, _ in summary.episodes]
    assert returns, "no SpaceInvaders episode finished in 3000 env steps"
    assert max(returns) >= 50, "episode returns must be the game's score"
    in_progress = float(learner.envs.episodes.returns.sum())
    assert sum(returns) + in_progress == pytest.approx(float(np.concatenate(raw_rewards).sum()))
    largest_stored = 0.0
    for _ in range(200):  # a kill in the upper rows scores 10-30: stored clipped to 5
        learner.rollout.collect()
        largest_stored = max(largest_stored, float(learner.rollout.rewards.max()))
        if max(float(r.max()) for r in raw_rewards) > 5:
            break
    assert max(float(r.max()) for r in raw_rewards) > 5
    assert largest_stored <= 5.0


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_atari_partials_stream_and_sum_to_the_one_shot_meta_gradient(precision):
    """Streamed every 4 updates on real ALE, the partials must add up to what the same task
    (same seed, same path) gives when its meta-gradient is taken once at the end."""
    cfg = atari_config("a2c.lr=1e-3", f"a2c.precision={precision}")
    totals = {}
    for stream_every in (4, 0):
        learner = make_learner(cfg, "Pong", 3)
        partials: list[PartialMetaGradient] = []
        summary = learner.train(20 * 5 * 4, stream_every=stream_every, on_partial=partials.append)
        learner.envs.close()
        assert summary.updates == 20
        assert len(partials) == (6 if stream_every else 1)  # 5 streamed + the closing one
        totals[stream_every] = PartialMetaGradient.sum(partials)
    streamed, one_shot = totals[4], totals[0]
    assert streamed.num_tasks == 1 and streamed.num_segments == 20  # 19 + the closing segment
    assert set(streamed.grads) == {n for n, _ in learner.model.encoder.named_parameters()}
    assert streamed.is_finite() and streamed.norm() > 0
    for name, grad in one_shot.grads.items():
        scale = float(grad.abs().max())
        torch.testing.assert_close(streamed.grads[name], grad, rtol=1e-4, atol=1e-5 * scale)


def test_unknown_game_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean: Pong"):
        make_learner(atari_config(), "Pongg", seed=0)


def cartpole_config(*overrides: str):
    """One CartPole-v1 task, 4 environments, the MLP encoder."""
    base = ["env.suite=gym", "env.games=[CartPole-v1]", "env.held_out=[]", "env.num_envs=4"]
    return load_config(None, [*base, "a2c.encoder=mlp", *overrides])


@pytest.mark.parametrize("measure", [True, False])
def test_logging_measure_paths_switches_the_path_diagnostic(measure):
    """`logging.measure_paths`: the path's length, energy and distance in the task's summary
    and its logged rows, or none of them (and the same learning otherwise)."""
    from leap_ray.learners import learner_for

    cfg = cartpole_config("logging.log_every=5", f"logging.measure_paths={str(measure).lower()}")
    rows: list[dict] = []
    summary, _ = learner_for(cfg).run_transfer_task(
        cfg, "CartPole-v1", 0, 400, None, lambda _, r: rows.append(r)
    )
    keys = {"path/length", "path/energy", "path/distance_from_init"}
    logged = set().union(*rows)
    if measure:
        assert set(summary.path) == keys and keys <= logged and summary.path["path/length"] > 0
    else:
        assert summary.path == {} and not keys & logged


@pytest.mark.parametrize("choice", ["raw", "clipped"])
def test_meta_loss_gradient_chooses_the_raw_or_the_clipped_task_gradient(choice):
    """meta.loss_gradient: the loss term multiplies g_i before the learner's clipping (raw) or
    the clipped g_i the learner steps with."""
    cfg = cartpole_config("a2c.max_grad_norm=0.01", f"meta.loss_gradient={choice}")
    learner = make_learner(cfg, "CartPole-v1", seed=0)
    seen = []
    update = learner.meta_learner.update

    def recording_update(loss, model):
        total = sum(float((p.grad**2).sum()) for p in model.parameters() if p.grad is not None)
        seen.append(total**0.5)
        update(loss, model)

    learner.meta_learner.update = recording_update
    try:
        learner.train(200)
    finally:
        learner.envs.close()
    assert len(seen) == 10
    if choice == "clipped":
        assert max(seen) <= 0.01 * (1 + 1e-4), seen
    else:
        assert max(seen) > 0.02, seen
