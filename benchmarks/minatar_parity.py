"""Does our A2C learn the MinAtar games, side by side with stable-baselines3's A2C at matched
settings, and against random play (issue 23's learning check)?

Matched settings (ours: configs/minatar.yaml's learner; SB3: the same numbers):
    envs     MinAtar's full 6 actions, sticky actions 0.1, difficulty ramping on (MinAtar's
             defaults), 128 environments, rewards clipped to +-1 (MinAtar's are 0 or 1 but for
             a few games' larger ones)
    network  the MinAtar paper's (conv 16 3x3 stride 1, fc 128, ReLU), linear policy and value
             heads, orthogonal init (both)
    learner  5 steps per update, RMSProp lr 7e-4 eps 1e-5 alpha 0.99, gradient-norm clip 0.5,
             entropy 0.01, discount 0.99, value 0.25 in SB3's mse units (ours: value_cost 0.5
             on 0.5 * mse), n-step returns (GAE lambda 1)
Ours runs with Leap accumulating its meta-gradient, as in meta-training. The score is the mean
return of the episodes that end in the last quarter of the budget.

    python -m benchmarks.minatar_parity [--steps 250000] [--seeds 0 1] [--games Breakout ...]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from leap_ray.suites.minatar import GAMES

CONFIG = "configs/minatar.yaml"


def late_mean(episodes: list[tuple[int, float]], steps: int) -> float:
    late = [r for step, r in episodes if step > 0.75 * steps]
    return float(np.mean(late)) if late else float("nan")


def run_ours(game: str, seed: int, steps: int) -> tuple[float, float]:
    from leap_ray.config import load_config
    from leap_ray.learners.a2c.learning import make_learner

    cfg = load_config(CONFIG, ["logging.measure_paths=false"])
    learner = make_learner(cfg, f"{game}?sticky=0.1&ramping=true", seed)
    try:
        summary = learner.train(steps, measure_path=False)
    finally:
        learner.envs.close()
    episodes = [(step, r) for step, r, _ in summary.episodes]
    return late_mean(episodes, summary.env_steps), summary.env_steps_per_second


def run_sb3(game: str, seed: int, steps: int, num_envs: int) -> tuple[float, float]:
    import gymnasium as gym
    from minatar.gym import register_envs
    from stable_baselines3 import A2C
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    class MinAtarNet(BaseFeaturesExtractor):
        def __init__(self, space: gym.spaces.Box) -> None:
            super().__init__(space, features_dim=128)
            channels = space.shape[2]
            self.conv = nn.Sequential(nn.Conv2d(channels, 16, 3, 1), nn.ReLU(), nn.Flatten())
            self.fc = nn.Sequential(nn.Linear(16 * 8 * 8, 128), nn.ReLU())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:  # [B, 10, 10, C] in {0, 1}
            return self.fc(self.conv(obs.permute(0, 3, 1, 2)))

    class Episodes(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.episodes: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:
                    self.episodes.append((self.num_timesteps, float(info["episode"]["r"])))
            return True

    register_envs()
    envs = make_vec_env(
        f"MinAtar/{game}-v0",  # the full action set, MinAtar's sticky actions and ramping
        n_envs=num_envs,
        seed=seed,
        wrapper_class=lambda env: gym.wrappers.ClipReward(env, -1.0, 1.0),  # Monitor below
    )
    model = A2C(
        "MlpPolicy",
        envs,
        learning_rate=7e-4,
        n_steps=5,
        gamma=0.99,
        gae_lambda=1.0,
        ent_coef=0.01,
        vf_coef=0.25,
        max_grad_norm=0.5,
        rms_prop_eps=1e-5,
        use_rms_prop=True,
        normalize_advantage=False,
        policy_kwargs={"features_extractor_class": MinAtarNet, "net_arch": []},
        seed=seed,
        device="cpu",
    )
    callback = Episodes()
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    rate = steps / (time.perf_counter() - start)
    envs.close()
    return late_mean(callback.episodes, steps), rate


def run_random(game: str, seed: int, steps: int) -> float:
    from minatar import Environment

    env = Environment(GAMES[game], sticky_action_prob=0.1)
    env.seed(seed)
    env.reset()
    rng = np.random.default_rng(seed)
    episodes, total = [], 0.0
    for step in range(1, steps + 1):
        reward, done = env.act(int(rng.integers(6)))
        total += reward
        if done:
            episodes.append((step, total))
            total = 0.0
            env.reset()
    return late_mean(episodes, steps)


def per_seed(runs: list[tuple[float, float]]) -> str:
    scores = [score for score, _ in runs]
    return f"{np.mean(scores):.2f} (" + ", ".join(f"{s:.2f}" for s in scores) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=250_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--games", nargs="+", default=list(GAMES))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, 1 torch thread, {args.steps:,} env_steps per run, "
        f"seeds {args.seeds}; score: mean return of episodes ending in the last quarter"
    )
    print("| game | ours (per seed) | SB3 A2C (per seed) | random play | ours / SB3 env_steps/s |")
    print("| --- | --- | --- | --- | --- |")
    for game in args.games:
        ours = [run_ours(game, seed, args.steps) for seed in args.seeds]
        theirs = [run_sb3(game, seed, args.steps, num_envs=128) for seed in args.seeds]
        random = np.mean([run_random(game, seed, args.steps) for seed in args.seeds])
        speed = np.mean([r for _, r in ours]) / np.mean([r for _, r in theirs])
        row = f"| {game} | {per_seed(ours)} | {per_seed(theirs)} | {random:.2f} | {speed:.1f}x |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
