"""Does our Atari frame pipeline see what SB3's does? (issue 13: a suspect for the parity gap)

    .venv/bin/python -m benchmarks.frame_pipeline [--game breakout] [--steps 300]

Ours: ALE's C++ `AtariVectorEnv` (frame skip 4, max-pool of the last two frames, ALE's grayscale
palette, INTER_AREA resize to 84x84, all in C++). SB3's `AtariWrapper`: `MaxAndSkipEnv` (max of
the last two RGB frames), then `WarpFrame` (cv2 RGB2GRAY and INTER_AREA resize). The same ROM,
seed and random action sequence, no sticky actions and no no-op starts, so the emulators stay in
step; prints the mean absolute difference per pixel (0-255) of the two 84x84 frames.
Needs opencv (`pip install opencv-python`, installed with SB3: the benchmark extras).
"""

from __future__ import annotations

import argparse

import ale_py
import cv2
import gymnasium as gym
import numpy as np
from ale_py.vector_env import AtariVectorEnv


def sb3_frame(frames: list[np.ndarray]) -> np.ndarray:
    pooled = np.maximum(frames[-2], frames[-1]) if len(frames) > 1 else frames[-1]
    gray = cv2.cvtColor(pooled, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (84, 84), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="breakout", help="ROM id, e.g. breakout, ms_pacman")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    gym.register_envs(ale_py)
    ours = AtariVectorEnv(
        args.game,
        1,
        grayscale=True,
        stack_num=1,
        frameskip=4,
        noop_max=0,
        repeat_action_probability=0.0,
        use_fire_reset=False,
        autoreset_mode="SameStep",
    )
    name = "".join(part.title() for part in args.game.split("_")) + "NoFrameskip-v4"
    theirs = gym.make(name, repeat_action_probability=0.0, full_action_space=False)
    obs, _ = ours.reset(seed=0)
    raw, _ = theirs.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, theirs.action_space.n, args.steps)
    diffs = [np.abs(obs[0, 0].astype(int) - sb3_frame([raw]).astype(int)).mean()]
    for action in actions:
        obs, *_ = ours.step(np.array([action]))
        frames, ended = [], False
        for _ in range(4):
            raw, _, terminated, truncated, _ = theirs.step(int(action))
            frames.append(raw)
            ended = terminated or truncated
            if ended:
                break
        if ended:
            break
        diffs.append(np.abs(obs[0, 0].astype(int) - sb3_frame(frames).astype(int)).mean())
    d = np.array(diffs)
    print(
        f"{args.game}: {len(d)} frames compared; mean |ours - SB3| per pixel {d.mean():.3f} "
        f"(max over frames {d.max():.2f}) on 0-255"
    )


if __name__ == "__main__":
    main()
