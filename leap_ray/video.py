"""Agent videos (`evaluate --video`): frames [T, H, W, 3] uint8 to an animated GIF that any
browser or image viewer plays, and the same GIF as a TensorBoard image (TensorBoard's image
dashboard animates GIFs; it is what `SummaryWriter.add_video` writes, without its moviepy)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

MAX_EPISODE_STEPS = 1_000  # agent steps recorded at most (a long game is cut): GIFs stay small
SCALE = 2  # 84x84 frames shown at 168x168
FRAME_MS = 67  # 15 agent steps per second: real time at frame skip 4


def gif_bytes(frames: np.ndarray) -> bytes:
    """frames [T, H, W, 3] uint8 -> an animated GIF, each frame scaled up SCALE times."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected frames [T, H, W, 3], got shape {frames.shape}")
    big = frames.repeat(SCALE, axis=1).repeat(SCALE, axis=2)
    images = [Image.fromarray(frame) for frame in big]
    buffer = io.BytesIO()
    images[0].save(
        buffer, format="GIF", save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0
    )
    return buffer.getvalue()


def gif_summary(tag: str, gif: bytes) -> Summary:
    """A TensorBoard image summary holding the GIF as it is."""
    with Image.open(io.BytesIO(gif)) as image:
        width, height = image.size
    encoded = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
    return Summary(value=[Summary.Value(tag=tag, image=encoded)])
