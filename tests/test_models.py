"""The random initialization (the A2C scheme of OpenAI baselines / SB3 / CleanRL) and its
replacement by a meta-learned encoder initialization."""

import math

import pytest
import torch

from leap_ray.config import load_config
from leap_ray.learners.a2c.learning import make_learner
from leap_ray.learners.a2c.networks import ActorCritic, make_encoder

RELU, TANH = math.sqrt(2.0), 5.0 / 3.0


def assert_orthogonal(weight: torch.Tensor, gain: float, name: str) -> None:
    """Rows (or columns, for a tall matrix) of [out, in * k * k] are orthogonal with norm gain."""
    matrix = weight.detach().reshape(weight.shape[0], -1).double()
    if matrix.shape[0] > matrix.shape[1]:
        matrix = matrix.t()
    gram = matrix @ matrix.t()
    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    torch.testing.assert_close(gram, gain**2 * eye, rtol=0, atol=1e-5 * max(1.0, gain**2), msg=name)


@pytest.mark.parametrize(
    "encoder, obs_shape, gains",
    [
        ("mnih2013", (3, 84, 84), {"convs.0": RELU, "convs.2": RELU, "fc": RELU}),
        ("nature", (4, 84, 84), {"convs.0": RELU, "convs.2": RELU, "convs.4": RELU, "fc": RELU}),
        ("mlp", (4,), {"net.0": TANH, "net.2": TANH}),
    ],
)
def test_every_layer_is_orthogonal_with_its_gain_and_zero_bias(encoder, obs_shape, gains):
    torch.manual_seed(0)
    model = ActorCritic(make_encoder(encoder, obs_shape), num_actions=6)
    layers = {f"encoder.{name}": gain for name, gain in gains.items()}
    layers |= {"policy": 0.01, "value": 1.0}
    params = dict(model.named_parameters())
    assert {n.rsplit(".", 1)[0] for n in params} == set(layers), "a layer without a known gain"
    for layer, gain in layers.items():
        assert_orthogonal(params[f"{layer}.weight"], gain, layer)
        assert torch.count_nonzero(params[f"{layer}.bias"]) == 0, f"{layer}.bias"


def test_init_keeps_the_encoder_memory_layouts():
    encoder = make_encoder("nature", (4, 84, 84))
    assert encoder.fc.weight.stride() == (1, 512)  # stored transposed
    assert encoder.convs[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_a_meta_learned_initialization_replaces_the_random_encoder_exactly():
    cfg = load_config(
        None, ["env.num_envs=4", "a2c.encoder=nature", "env.grayscale=true", "env.frame_stack=4"]
    )
    learner = make_learner(cfg, "Pong", seed=1)
    heads = {
        n: p.detach().clone()
        for n, p in learner.model.named_parameters()
        if not n.startswith("encoder.")
    }
    other = ActorCritic(make_encoder("nature", (4, 84, 84)), 6)  # a different random draw
    with torch.no_grad():
        for p in other.encoder.parameters():
            p.add_(0.01)  # and off the orthogonal scheme
    values = {n: p.detach().numpy().copy() for n, p in other.encoder.named_parameters()}
    learner.meta_learner.load(values, version=7)
    learner.meta_learner.to(learner.model)
    for name, p in learner.model.encoder.named_parameters():
        assert torch.equal(p.detach(), torch.from_numpy(values[name])), name
    assert learner.model.encoder.fc.weight.stride() == (1, 512)
    for name, p in learner.model.named_parameters():
        if name in heads:  # the per-game heads keep their own fresh initialization
            assert torch.equal(p.detach(), heads[name]), name
    learner.update(None, 0)  # and the learner trains from it
    learner.envs.close()


def test_a_seed_gives_the_same_network_whatever_the_thread_count():
    """LAPACK's QR depends on the thread count; the driver's theta_0 and a re-run task's heads
    must not (a resumed or re-run task is compared bit for bit)."""
    draws = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(3)
        model = ActorCritic(make_encoder("nature", (4, 84, 84)), num_actions=6)
        assert torch.get_num_threads() == threads, "the init must restore the thread count"
        draws.append({n: p.detach().clone() for n, p in model.named_parameters()})
    torch.set_num_threads(1)
    for name, value in draws[0].items():
        assert torch.equal(value, draws[1][name]), name
