"""Env steps/s of the A2C learner on Pong with the Nature CNN, 16 envs x 5 steps, one torch
thread (issue 3): ours with Leap on and off (and off without the PathTracker diagnostic),
stable-baselines3's A2C, and the compute limit (forward+backward of the [80] batch plus 6
inferences of [16] for acting and bootstrapping), in float32 and under bfloat16 autocast; also
the paper's network in RGB.

Every variant is measured in `--rounds` interleaved windows and reports its best window, so a
slow spell of the machine does not fall on one variant only; Leap's cost is also given as the
median over rounds of the ratio of the on and off windows run back to back.

    pip install stable-baselines3==2.9.2   # in requirements.txt (the export recipe test) now
    python -m benchmarks.learner_throughput [--updates 60] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.timing import median_seconds
from leap_ray.config import load_config
from leap_ray.learners.a2c.learning import make_learner
from leap_ray.learners.a2c.networks import ActorCritic, make_encoder

ENVS, UNROLL = 16, 5
BATCH = ENVS * UNROLL
NATURE = ["a2c.encoder=nature", "env.grayscale=true", "env.frame_stack=4"]
BF16 = ["a2c.precision=bfloat16"]

Window = Callable[[int], float]  # env_steps -> env_steps/s over a window of that many


def ours(overrides: list[str], meta: bool = True, measure_path: bool = True) -> Window:
    cfg = load_config(None, [f"env.num_envs={ENVS}", f"a2c.unroll={UNROLL}", *overrides])
    learner = make_learner(cfg, "Pong", seed=0, meta=meta)
    learner.train(BATCH * 20)  # warm-up
    return lambda steps: learner.train(steps, measure_path=measure_path).env_steps_per_second


def compute_limit(encoder: str, in_channels: int, bfloat16: bool = False) -> Window:
    model = ActorCritic(make_encoder(encoder, (in_channels, 84, 84)), num_actions=6)
    batch = torch.randint(0, 256, (BATCH, in_channels, 84, 84), dtype=torch.uint8)
    acting = batch[:ENVS]

    def one_update():
        cast = torch.autocast("cpu", dtype=torch.bfloat16) if bfloat16 else contextlib.nullcontext()
        with cast:
            with torch.no_grad():
                for _ in range(UNROLL + 1):  # 5 acting steps + the bootstrap value
                    model(acting)
            logits, value = model(batch)
        (logits.logsumexp(-1).mean() + value.pow(2).mean()).backward()

    one_update()
    return lambda steps: BATCH / median_seconds(one_update, max(10, steps // BATCH // 4))


def sb3() -> Window | None:
    try:
        from stable_baselines3 import A2C
        from stable_baselines3.common.env_util import make_atari_env
        from stable_baselines3.common.vec_env import VecFrameStack
    except ImportError:
        return None
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=ENVS, seed=0), n_stack=4)
    model = A2C("CnnPolicy", env, n_steps=UNROLL, device="cpu", seed=0)
    model.learn(BATCH * 20)  # warm-up

    def window(steps: int) -> float:
        start = time.perf_counter()
        model.learn(steps, reset_num_timesteps=False)
        return steps / (time.perf_counter() - start)

    return window


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=60, help="updates per window")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread, Pong, "
        f"{ENVS} envs x {UNROLL} steps, {args.rounds} rounds of {args.updates}-update windows"
    )
    variants: dict[str, Window | None] = {
        "ours, Nature CNN, Leap on (energy)": ours(NATURE),
        "ours, Nature CNN, Leap off": ours(NATURE, meta=False),
        "ours, Nature CNN, Leap off, no PathTracker": ours(NATURE, meta=False, measure_path=False),
        "stable-baselines3 A2C, Nature CNN": sb3(),
        "compute limit, Nature CNN": compute_limit("nature", 4),
        "ours, Nature CNN, Leap on, bfloat16": ours(NATURE + BF16),
        "compute limit, Nature CNN, bfloat16": compute_limit("nature", 4, bfloat16=True),
        "ours, paper's network (RGB), Leap on": ours([]),
        "compute limit, paper's network (RGB)": compute_limit("mnih2013", 3),
        "ours, paper's network (RGB), bfloat16": ours(BF16),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, window in variants.items():
            rates[name].append(float("nan") if window is None else window(BATCH * args.updates))
    best = {name: max(values) for name, values in rates.items()}
    for name, rate in best.items():
        print(f"{name:<40} {rate:8.0f} env_steps/s (best window)")
    on, off, bare, sb3_rate, limit, bf16, bf16_limit, paper, paper_limit, _ = best.values()
    # Leap's cost from the windows run back to back: robust to the machine's slow spells
    on_off = [a / b for a, b in zip(*list(rates.values())[:2], strict=True)]
    path_cost = [1 - a / b for a, b in zip(*list(rates.values())[1:3], strict=True)]
    print(
        f"float32: ours / SB3 {on / sb3_rate:.2f}x; Leap cost {100 * (1 - on / off):.1f}% "
        f"(best windows), {100 * (1 - statistics.median(on_off)):.1f}% (median of paired "
        f"windows); ours / compute limit {100 * on / limit:.0f}%\n"
        f"PathTracker cost {100 * (1 - off / bare):.1f}% (best windows), "
        f"{100 * statistics.median(path_cost):.1f}% (median of paired windows)\n"
        f"bfloat16: ours / SB3 {bf16 / sb3_rate:.2f}x; ours / its compute limit "
        f"{100 * bf16 / bf16_limit:.0f}%\n"
        f"paper's network: {100 * paper / paper_limit:.0f}% of its compute limit"
    )


if __name__ == "__main__":
    main()
