"""The actor-critic network: a meta-learned encoder and per-game policy/value heads.

Encoders: the paper's (Mnih et al. 2013: conv 16 8x8/4, conv 32 4x4/2, fc 256), the Nature-DQN
one (Mnih et al. 2015), and an MLP for vector observations. Only `encoder.*` is meta-learned;
heads are sized to each game's minimal action set and start fresh per task.

Random initialization is the A2C/A3C scheme of OpenAI baselines, SB3 and CleanRL: orthogonal
weights with the gain of the layer's nonlinearity (sqrt(2) for ReLU, 5/3 for tanh), 0.01 for the
policy logits (a near-uniform first policy whose logits are not saturated), 1.0 for the value
head, zero biases. PyTorch's default (Kaiming-uniform with a=sqrt(5)) leaves the Nature CNN's ReLU
units mostly dead and its policy flat: on Breakout A2C then stays at random play.
"""

from __future__ import annotations

import math

import torch
from torch import nn

RELU_GAIN = math.sqrt(2.0)
TANH_GAIN = 5.0 / 3.0
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


def orthogonal_init(layer: nn.Linear | nn.Conv2d, gain: float) -> None:
    """Orthogonal weight (rows of the [out, in * k * k] matrix, scaled by `gain`), zero bias.
    Drawn on a fresh contiguous tensor and copied, so a layer's memory layout (channels-last
    convolutions, the transposed fc weight) is kept. The QR decomposition runs on one thread:
    LAPACK's result depends on the thread count, and a seed must give the same network in every
    process (the driver's theta_0, a resumed run's, a re-run task's)."""
    fresh = torch.empty(layer.weight.shape)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nn.init.orthogonal_(fresh, gain)
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        layer.weight.copy_(fresh)
        layer.bias.zero_()


def _conv_out(encoder: nn.Module, in_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(encoder(torch.zeros(1, *in_shape)).shape[1])


class ConvEncoder(nn.Module):
    """uint8 frames [B, C, 84, 84] -> features [B, F]; scaling to [0, 1] happens here. Weights
    and activations are channels-last: oneDNN's convolutions run ~30% faster on CPU that way.
    The fc weight [out, in] is stored transposed (strides (1, out)): one CPU thread multiplies
    an acting batch of 8 by it ~2x faster that way (0.41 vs 0.80 ms for the Nature fc), and a
    batch of 80 ~15% faster; its gradient takes the same layout.

    Split in two for the learner: `trunk` (the convolutions: most of the compute, few parameters)
    runs per acting step and keeps its graph; `dense` (the fc layer: most of the parameters) runs
    once per update over the whole batch, so its large weight gradient is formed once, not once
    per acting step."""

    def __init__(
        self,
        layers: list[tuple[int, int, int]],
        hidden: int,
        obs_shape: tuple[int, ...],
        input_divisor: float = 255.0,  # Atari's bytes to [0, 1]; MinAtar's are 0 or 1 (1.0)
    ):
        super().__init__()
        self.input_divisor = input_divisor
        convs: list[nn.Module] = []
        channels = obs_shape[0]
        for out_channels, kernel, stride in layers:
            conv = nn.Conv2d(channels, out_channels, kernel, stride)
            orthogonal_init(conv, RELU_GAIN)
            convs += [conv, nn.ReLU()]
            channels = out_channels
        self.convs = nn.Sequential(*convs, nn.Flatten())
        self.fc = nn.Linear(_conv_out(self.convs, obs_shape), hidden)
        self.fc.weight = nn.Parameter(self.fc.weight.detach().t().contiguous().t())
        orthogonal_init(self.fc, RELU_GAIN)
        self.out_features = hidden
        self.convs.to(memory_format=torch.channels_last)

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        frames = obs.float()
        if self.input_divisor != 1.0:
            frames = frames.div_(self.input_divisor)
        frames = frames.contiguous(memory_format=torch.channels_last)
        return self.convs(frames)

    def dense(self, trunk_out: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(trunk_out))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.dense(self.trunk(obs))


class MLPEncoder(nn.Module):
    def __init__(self, obs_shape: tuple[int, ...], hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_shape[0], hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        for layer in self.net[::2]:
            orthogonal_init(layer, TANH_GAIN)
        self.out_features = hidden

    def trunk(self, obs: torch.Tensor) -> torch.Tensor:
        # a copy: autograd saves the input, and the learner's rollout storage changes in place
        return obs.to(torch.float32, copy=True)

    def dense(self, trunk_out: torch.Tensor) -> torch.Tensor:
        return self.net(trunk_out)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.dense(self.trunk(obs))


ENCODER_BUILDERS = {  # a2c.encoder -> the network for an observation shape
    "mnih2013": lambda shape: ConvEncoder([(16, 8, 4), (32, 4, 2)], 256, shape),
    "nature": lambda shape: ConvEncoder([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512, shape),
    "mlp": MLPEncoder,
    # Young & Tian 2019: one 3x3 convolution of 16 channels, fc 128, on 0/1 observations
    "minatar": lambda shape: ConvEncoder([(16, 3, 1)], 128, shape, input_divisor=1.0),
}


def make_encoder(name: str, obs_shape: tuple[int, ...]) -> nn.Module:
    if name not in ENCODER_BUILDERS:
        raise ValueError(f"encoder must be one of {tuple(ENCODER_BUILDERS)}, got {name!r}")
    return ENCODER_BUILDERS[name](obs_shape)


class ActorCritic(nn.Module):
    """Shared encoder, linear policy and value heads (the paper's actor-critic)."""

    def __init__(self, encoder: nn.Module, num_actions: int):
        super().__init__()
        self.encoder = encoder
        self.policy = nn.Linear(encoder.out_features, num_actions)
        self.value = nn.Linear(encoder.out_features, 1)
        orthogonal_init(self.policy, POLICY_GAIN)
        orthogonal_init(self.value, VALUE_GAIN)

    def heads(self, trunk_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's trunk output [B, ...] -> (logits [B, A], value [B]). The heads run in
        float32 even under autocast: advantages are small differences of values, and bfloat16
        values would bias the value gradient by tens of percent."""
        features = self.encoder.dense(trunk_out).float()
        with torch.autocast(features.device.type, enabled=False):
            return self.policy(features), self.value(features).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [B, ...] -> (logits [B, A], value [B])."""
        return self.heads(self.encoder.trunk(obs))


def encoder_state(model: ActorCritic) -> dict[str, torch.Tensor]:
    """The meta-learned part, named as the initialization names it (without the prefix)."""
    return {name: p.detach().cpu().clone() for name, p in model.encoder.named_parameters()}
