"""Env steps/s of the A2C learner on Pong with the Nature CNN, 16 envs x 5 steps, one torch
thread (issue 3): ours with Leap on and off, stable-baselines3's A2C, and the compute limit
(forward+backward of the [80] batch plus 6 inferences of [16] for acting and bootstrapping).

    pip install stable-baselines3==2.9.2   # for this benchmark only; not in requirements.txt
    python -m benchmarks.learner_throughput [--updates 300]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from benchmarks.timing import median_seconds
from leap_ray.a2c import make_learner
from leap_ray.config import load_config
from leap_ray.models import ActorCritic, make_encoder

ENVS, UNROLL = 16, 5


def learner_rate(overrides: list[str], meta: bool, updates: int) -> float:
    cfg = load_config(None, [f"env.num_envs={ENVS}", f"a2c.unroll={UNROLL}", *overrides])
    learner = make_learner(cfg, "Pong", seed=0, meta=meta)
    learner.train(ENVS * UNROLL * 20)  # warm-up
    best = 0.0
    for _ in range(3):
        summary = learner.train(ENVS * UNROLL * updates // 3)
        best = max(best, summary.env_steps_per_second)
    learner.task.close()
    return best


def compute_limit(encoder: str, in_channels: int, repeats: int = 40) -> float:
    model = ActorCritic(make_encoder(encoder, (in_channels, 84, 84)), num_actions=6)
    batch = torch.randint(0, 256, (ENVS * UNROLL, in_channels, 84, 84), dtype=torch.uint8)
    acting = batch[:ENVS]

    def one_update():
        with torch.no_grad():
            for _ in range(UNROLL + 1):  # 5 acting steps + the bootstrap value
                model(acting)
        logits, value = model(batch)
        (logits.logsumexp(-1).mean() + value.pow(2).mean()).backward()

    return ENVS * UNROLL / median_seconds(one_update, repeats)


def sb3_rate(steps: int) -> float:
    try:
        from stable_baselines3 import A2C
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        return float("nan")
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=ENVS, seed=0), n_stack=4)
    model = A2C("CnnPolicy", env, n_steps=UNROLL, device="cpu", seed=0)
    model.learn(ENVS * UNROLL * 20)  # warm-up
    start = time.perf_counter()
    model.learn(steps)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    nature = ["a2c.encoder=nature", "env.grayscale=true", "env.frame_stack=4"]
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread, "
        f"Pong, {ENVS} envs x {UNROLL} steps"
    )
    rows = [
        ("ours, Nature CNN, Leap on (energy)", learner_rate(nature, True, args.updates)),
        ("ours, Nature CNN, Leap off", learner_rate(nature, False, args.updates)),
        ("stable-baselines3 A2C, Nature CNN", sb3_rate(ENVS * UNROLL * args.updates // 2)),
        ("compute limit, Nature CNN", compute_limit("nature", 4)),
        ("ours, paper's network (RGB), Leap on", learner_rate([], True, args.updates)),
        ("compute limit, paper's network (RGB)", compute_limit("mnih2013", 3)),
    ]
    for name, rate in rows:
        print(f"{name:<40} {rate:8.0f} env_steps/s")
    ours_on, ours_off, sb3, limit = (r for _, r in rows[:4])
    print(
        f"ours / SB3: {ours_on / sb3:.2f}x; Leap cost: {100 * (1 - ours_on / ours_off):.1f}%; "
        f"ours / compute limit: {100 * ours_on / limit:.0f}%; paper's network: "
        f"{100 * rows[4][1] / rows[5][1]:.0f}% of its limit"
    )


if __name__ == "__main__":
    main()
