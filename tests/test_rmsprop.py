"""The learner's RMSProp follows torch.optim.RMSprop's update, including on gradients full of
zeros (the case it exists for) and on channels-last parameters.

The reference runs in float64: on the dev VM two float32 torch.optim.RMSprop instances fed the
same gradients occasionally disagree by ~3e-4 of an update (the same process, the same ops), so
float32 results are compared with a tolerance that still tells any change of formula apart."""

import pytest
import torch

from leap_ray.learners.a2c.rmsprop import RMSProp


@pytest.mark.parametrize("eps", [1e-4, 1e-8])
def test_rmsprop_matches_torch(eps):
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in [(64, 300), (32, 4, 8, 8), (6,)]]
    start[1] = start[1].contiguous(memory_format=torch.channels_last)
    ours = [p.clone().requires_grad_() for p in start]
    reference = [p.double().requires_grad_() for p in start]
    opt = RMSProp(ours, lr=1e-3, alpha=0.99, eps=eps)
    ref_opt = torch.optim.RMSprop(reference, lr=1e-3, alpha=0.99, eps=eps)
    for step in range(30):
        for p, q in zip(ours, reference, strict=True):
            grad = torch.randn(p.shape, generator=gen) * 10.0 ** -(step % 7)
            grad[: p.shape[0] // 2] = 0.0  # rows that never get a gradient (dead features)
            p.grad, q.grad = grad.clone(), grad.double()
        opt.step()
        ref_opt.step()
    for p, q, p0 in zip(ours, reference, start, strict=True):
        moved = (q.detach() - p0.double()).abs().max()
        assert moved > 1e-2
        error = (p.detach().double() - q.detach()).abs().max()
        assert error <= 1e-3 * moved, f"{error:.2e} vs {moved:.2e} moved"
        assert torch.equal(p[: p.shape[0] // 2], p0[: p.shape[0] // 2]), "zero gradient moved"
    assert ours[1].is_contiguous(memory_format=torch.channels_last)


def test_rmsprop_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="eps > 0"):
        RMSProp([torch.zeros(2, requires_grad=True)], lr=1e-3, eps=0.0)
