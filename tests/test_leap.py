"""Leap's accumulated meta-gradient against autograd of the frozen pull-forward objective.

With the path translated with the initialization, theta_i(phi) = phi + (theta_i - theta_0), the
Jacobian is exactly the identity and the paper's formula is the exact gradient of
    F(phi) = sum_i D(theta_{i+1} - theta_i(phi), l~_{i+1} - f_i(theta_i(phi)))
with frozen targets (theta_{i+1}, l~_{i+1} = l_i + d_l, d_l stabilized), D the Euclidean length
or half the squared length (energy), and f_i the loss of minibatch i.
"""

import copy
import itertools

import pytest
import torch
from torch import nn
from torch.func import functional_call

from leap_ray.meta import Leap, PartialMetaGradient, Reptile, make_meta_learner


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def batch(i):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(6, 3, generator=g), torch.randn(6, 2, generator=g)


def loss_at(model, params, i):
    dtype = next(iter(params.values())).dtype
    x, y = (t.to(dtype) for t in batch(i))
    return ((functional_call(model, params, (x,)) - y) ** 2).mean()


def record_path(
    metric,
    loss_term,
    stabilizer,
    steps=7,
    take_every=3,
    borrow_grads=False,
    loss_scale=1.0,
    loss_smoothing=0.0,
    leap_out=None,
):
    """Train with Adam (so losses rise and fall), streaming partials every `take_every` steps."""
    torch.manual_seed(0)
    model = Net()
    leap = Leap(
        model.encoder,
        metric=metric,
        loss_term=loss_term,
        stabilizer=stabilizer,
        prefix="encoder.",
        borrow_grads=borrow_grads,
        loss_scale=loss_scale,
        loss_smoothing=loss_smoothing,
    )
    if leap_out is not None:
        leap_out.append(leap)
    opt = torch.optim.Adam(model.parameters(), lr=0.3)
    path, partials = [], []
    leap.init_task()
    leap.to(model)
    for i in range(steps):
        path.append({k: v.detach().clone() for k, v in model.named_parameters()})
        loss = loss_at(model, dict(model.named_parameters()), i)
        loss.backward()
        leap.update(loss, model)
        opt.step()
        opt.zero_grad()
        if (i + 1) % take_every == 0:
            partials.append(leap.take_partial(model))
    path.append({k: v.detach().clone() for k, v in model.named_parameters()})
    final_loss = loss_at(model, dict(model.named_parameters()), steps)
    partials.append(leap.finish_task(model, final_loss))
    return model, path, PartialMetaGradient.sum(partials)


def reference_gradient(
    model, path, metric, loss_term, stabilizer, loss_scale=1.0, loss_smoothing=0.0
):
    """Autograd of the frozen objective on the manifold (theta, lambda * l~): l~ the moving
    average of the batch losses (l~_0 = l_0), whose gradient at theta_i is taken as g_i (its
    coordinate there is l~_i + f_i(theta) - f_i(theta_i))."""
    tracked = [n for n in path[0] if n.startswith("encoder.")]
    phi = {n: path[0][n].double().clone().requires_grad_(True) for n in tracked}
    model = model.double()
    with torch.no_grad():
        batch_losses = [
            loss_at(model, {n: v.double() for n, v in p.items()}, i) for i, p in enumerate(path)
        ]
    smoothed = [batch_losses[0]]
    for value in batch_losses[1:]:
        smoothed.append(loss_smoothing * smoothed[-1] + (1 - loss_smoothing) * value)
    objective = 0.0
    for i in range(len(path) - 1):
        params = {n: v.double() for n, v in path[i].items()}
        params.update({n: phi[n] + (path[i][n] - path[0][n]).double() for n in tracked})
        coordinate = smoothed[i] + loss_at(model, params, i) - batch_losses[i]
        next_params = {n: v.double() for n, v in path[i + 1].items()}
        d_loss = smoothed[i + 1] - smoothed[i]
        target = smoothed[i] + (-d_loss.abs() if stabilizer else d_loss)
        sq = sum(((next_params[n] - params[n]) ** 2).sum() for n in tracked)
        if loss_term:
            sq = sq + (loss_scale * (target - coordinate)) ** 2
        objective = objective + (sq.sqrt() if metric == "length" else 0.5 * sq)
    objective.backward()
    return {n[len("encoder.") :]: phi[n].grad for n in tracked}


@pytest.mark.parametrize("metric", ["length", "energy"])
@pytest.mark.parametrize("loss_scale, loss_smoothing", [(0.1, 0.0), (3.0, 0.0), (1.0, 0.9)])
def test_loss_scale_and_smoothing_equal_autograd_of_their_manifold(
    metric, loss_scale, loss_smoothing
):
    """meta.loss_scale (the manifold (theta, lambda * l)) and meta.loss_smoothing (its loss
    coordinate a moving average of batch losses) against the slow reference."""
    options = {"loss_scale": loss_scale, "loss_smoothing": loss_smoothing}
    model, path, total = record_path(metric, True, True, **options)
    expected = reference_gradient(model, path, metric, True, True, **options)
    plain = reference_gradient(model, path, metric, True, True)
    assert any(not torch.allclose(expected[n], plain[n]) for n in expected), "option is a no-op"
    for name, grad in expected.items():
        torch.testing.assert_close(total.grads[name].double(), grad, rtol=1e-4, atol=1e-5)


def test_terms_split_the_meta_gradient_into_path_and_loss():
    """Energy metric: the path term is theta_0 - theta_K, the loss term the rest."""
    learners = []
    model, path, total = record_path("energy", True, True, leap_out=learners)
    terms = learners[0].terms
    path_term = {n: path[0][n] - path[-1][n] for n in path[0] if n.startswith("encoder.")}
    loss_term = {n: total.grads[n[len("encoder.") :]] - v for n, v in path_term.items()}
    norm = lambda d: float(torch.sqrt(sum((v.double() ** 2).sum() for v in d.values())))  # noqa: E731
    dot = float(sum((path_term[n].double() * loss_term[n].double()).sum() for n in path_term))
    assert terms["meta/path_term_norm"] == pytest.approx(norm(path_term), rel=1e-5)
    assert terms["meta/loss_term_norm"] == pytest.approx(norm(loss_term), rel=1e-4)
    expected_cosine = dot / (norm(path_term) * norm(loss_term))
    assert terms["meta/term_cosine"] == pytest.approx(expected_cosine, rel=1e-3, abs=1e-5)
    reptile = Reptile(model.encoder, prefix="encoder.")
    reptile.update(0.0, model)
    reptile.finish_task(model)
    assert set(reptile.terms) == {"meta/path_term_norm"}


@pytest.mark.parametrize(
    "metric,loss_term,stabilizer,borrow_grads",
    [
        *itertools.product(["length", "energy"], [True, False], [True, False], [False]),
        ("length", True, True, True),
        ("energy", True, True, True),
    ],
)
def test_meta_gradient_equals_autograd_of_frozen_objective(
    metric, loss_term, stabilizer, borrow_grads
):
    model, path, total = record_path(metric, loss_term, stabilizer, borrow_grads=borrow_grads)
    expected = reference_gradient(model, path, metric, loss_term, stabilizer)
    losses = [loss_at(model, {n: v.double() for n, v in p.items()}, i) for i, p in enumerate(path)]
    d_losses = [b - a for a, b in zip(losses, losses[1:], strict=False)]
    assert min(d_losses) < 0 < max(d_losses), "the path must both raise and lower the loss"
    assert total.num_segments == len(path) - 1
    assert total.num_tasks == 1
    assert set(total.grads) == set(expected) and len(expected) == 4
    for name, grad in expected.items():
        assert grad.abs().max() > 1e-3, "reference gradient is trivially zero"
        torch.testing.assert_close(total.grads[name].double(), grad, rtol=1e-4, atol=1e-5)


def single_segment(loss_values, step, metric="length", loss_term=True, stabilizer=True):
    """A one-parameter path theta_0 = 1 -> theta_1 = 1 + step with scripted losses and g_0 = 2."""
    module = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(1.0)
    leap = Leap(module, metric=metric, loss_term=loss_term, stabilizer=stabilizer)
    leap.init_task()
    module.weight.grad = torch.full((1, 1), 2.0)
    leap.update(torch.tensor(loss_values[0]), module)
    with torch.no_grad():
        module.weight.add_(step)
    return leap.finish_task(module, loss_values[1]).grads["weight"].item()


def test_borrowed_gradients_kept_by_the_loop_are_refused():
    model = Net()
    leap = Leap(model.encoder, metric="energy", prefix="encoder.", borrow_grads=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(2):
        loss = loss_at(model, dict(model.named_parameters()), i)
        loss.backward()
        if i == 0:
            leap.update(loss, model)
            opt.step()
            opt.zero_grad(set_to_none=False)  # backward will add into the borrowed tensors
        else:
            with pytest.raises(RuntimeError, match="set_to_none=True"):
                leap.update(loss, model)


def test_stabilizer_flips_a_rising_loss():
    # d_theta = 0.3, d_l = +0.4 -> stabilized -0.4: -(0.3 - 0.4 * 2) / 0.5 = 1.0
    assert single_segment((1.0, 1.4), 0.3) == pytest.approx(1.0)
    # without the stabilizer the rising loss pushes the other way: -(0.3 + 0.8) / 0.5
    assert single_segment((1.0, 1.4), 0.3, stabilizer=False) == pytest.approx(-2.2)
    # a falling loss is untouched by the stabilizer
    assert single_segment((1.4, 1.0), 0.3) == single_segment((1.4, 1.0), 0.3, stabilizer=False)


def test_energy_metric_and_loss_term_off():
    assert single_segment((1.0, 1.4), 0.3, metric="energy") == pytest.approx(0.5)
    assert single_segment((1.0, 1.4), 0.3, loss_term=False) == pytest.approx(-1.0)


def test_zero_step_with_flat_loss_adds_nothing_and_stays_finite():
    assert single_segment((1.0, 1.0), 0.0) == 0.0
    assert single_segment((1.0, 1.0), 0.0, loss_term=False) == 0.0
    # a zero parameter step with a changing loss still pulls along the gradient
    assert single_segment((1.0, 0.5), 0.0) == pytest.approx(-(0 - 0.5 * 2) / 0.5)


def test_parameter_without_gradient_counts_as_zero_gradient():
    torch.manual_seed(1)
    model = nn.ModuleDict({"used": nn.Linear(2, 1), "unused": nn.Linear(2, 1)})
    leap = Leap(model, metric="energy")
    leap.init_task()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(3):
        loss = model["used"](batch(i)[0][:, :2]).pow(2).mean()
        loss.backward()
        assert model["unused"].weight.grad is None
        leap.update(loss, model)
        opt.step()
        opt.zero_grad()
    partial = leap.finish_task(model, None)
    assert partial.is_finite()
    assert torch.count_nonzero(partial.grads["unused.weight"]) == 0
    assert torch.count_nonzero(partial.grads["used.weight"]) > 0


def test_energy_without_loss_term_is_reptile():
    _, _, leap_total = record_path("energy", False, False)
    torch.manual_seed(0)
    model = Net()
    reptile = Reptile(model.encoder, prefix="encoder.")
    opt = torch.optim.Adam(model.parameters(), lr=0.3)
    reptile.init_task()
    for i in range(7):
        loss = loss_at(model, dict(model.named_parameters()), i)
        loss.backward()
        reptile.update(loss, model)
        opt.step()
        opt.zero_grad()
    reptile_total = reptile.finish_task(model)
    assert reptile_total.num_segments == leap_total.num_segments == 7
    for name, grad in reptile_total.grads.items():
        torch.testing.assert_close(grad, leap_total.grads[name], rtol=1e-5, atol=1e-6)


def random_partial(seed, version=3):
    g = torch.Generator().manual_seed(seed)
    grads = {"a": torch.randn(4, 3, generator=g), "b": torch.randn(5, generator=g)}
    return PartialMetaGradient(grads, seed + 1, seed % 2, version)


def test_merge_is_order_and_grouping_free():
    parts = [random_partial(s) for s in range(6)]
    one_shot = PartialMetaGradient.sum(parts)
    for order in (list(reversed(parts)), parts[3:] + parts[:3]):
        torch.testing.assert_close(PartialMetaGradient.sum(order).grads, one_shot.grads)
    grouped = PartialMetaGradient.sum(parts[:2]).merge(
        PartialMetaGradient.sum(parts[2:5]).merge(parts[5])
    )
    torch.testing.assert_close(grouped.grads, one_shot.grads)
    assert grouped.num_segments == one_shot.num_segments == sum(range(1, 7))
    assert grouped.num_tasks == one_shot.num_tasks == 3
    torch.testing.assert_close(one_shot.mean()["a"], one_shot.grads["a"] / 3)


def test_merge_refuses_mixed_versions_and_empty_mean():
    with pytest.raises(ValueError, match="init versions 3 and 4"):
        random_partial(0).merge(random_partial(1, version=4))
    with pytest.raises(ValueError, match="at least one finished task"):
        random_partial(0).mean()
    with pytest.raises(ValueError, match="zero partial"):
        PartialMetaGradient.sum([])


def test_numpy_round_trip_is_exact():
    partial = random_partial(5)
    back = PartialMetaGradient.from_numpy(partial.to_numpy())
    assert back.num_segments == partial.num_segments and back.num_tasks == partial.num_tasks
    assert back.init_version == partial.init_version
    for name, grad in partial.grads.items():
        assert torch.equal(back.grads[name], grad)


def test_meta_optimizer_steps_the_initialization():
    model = Net()
    leap = make_meta_learner("leap", model.encoder, prefix="encoder.")
    meta_opt = torch.optim.SGD(leap.parameters(), lr=1.0)
    partial = PartialMetaGradient(
        {n: torch.ones(s) for n, s in leap.shapes().items()}, 1, 2, leap.version
    )
    before = {n: p.detach().clone() for n, p in leap.init.items()}
    leap.set_meta_gradient(partial)
    meta_opt.step()
    for name, p in leap.init.items():
        torch.testing.assert_close(p.detach(), before[name] - 0.5)
    leap.to(model)
    torch.testing.assert_close(model.encoder[0].weight.detach(), leap.init["0.weight"].detach())


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="metric must be one of"):
        Leap(Net(), metric="area")
    with pytest.raises(ValueError, match="meta algorithm must be one of"):
        make_meta_learner("maml", Net())
    leap = Leap(Net().encoder, prefix="enc.")
    with pytest.raises(KeyError, match="module lacks tracked parameters"):
        leap.to(Net())


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_meta_step_ignores_the_gradient_memory_layout(optimizer):
    """Fused optimizers read raw memory: a channels-last gradient (as conv encoders produce)
    must step the initialization exactly as its contiguous copy does."""
    from leap_ray.meta import MetaInitialization

    init = {"conv": torch.randn(8, 3, 4, 4), "bias": torch.randn(8)}
    grad = {"conv": torch.randn(8, 3, 4, 4), "bias": torch.randn(8)}
    channels_last = {
        "conv": grad["conv"].contiguous(memory_format=torch.channels_last),
        "bias": grad["bias"],
    }
    results = []
    for grads in (grad, channels_last):
        meta_init = MetaInitialization(init, optimizer, lr=0.5)
        meta_init.step(PartialMetaGradient(grads, 1, 1, 0))
        results.append(meta_init.params["conv"].detach().clone())
    assert torch.equal(results[0], results[1])


def train_steps(model, meta_learner, steps, first_batch=0):
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    for i in range(first_batch, first_batch + steps):
        loss = loss_at(model, dict(model.named_parameters()), i)
        loss.backward()
        meta_learner.update(loss, model)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss_at(model, dict(model.named_parameters()), first_batch + steps)


@pytest.mark.parametrize("algorithm", ["leap", "reptile"])
def test_a_second_task_after_finish_task_starts_its_own_path(algorithm):
    """No init_task between two tasks: the second partial equals a fresh learner's on the same
    path (Reptile's anchor used to stay at the first task's theta_K)."""
    torch.manual_seed(0)
    model = Net()
    init = {k: v.detach().clone() for k, v in model.encoder.named_parameters()}
    meta_learner = make_meta_learner(algorithm, init, metric="energy", prefix="encoder.")
    meta_learner.to(model)
    meta_learner.finish_task(model, train_steps(model, meta_learner, 4))
    meta_learner.to(model)  # the second task starts from the initialization again
    head = copy.deepcopy(model.head.state_dict())
    second = meta_learner.finish_task(model, train_steps(model, meta_learner, 3, first_batch=10))

    replay = Net()
    replay.head.load_state_dict(head)
    fresh = make_meta_learner(algorithm, init, metric="energy", prefix="encoder.")
    fresh.to(replay)
    expected = fresh.finish_task(replay, train_steps(replay, fresh, 3, first_batch=10))
    assert second.num_tasks == expected.num_tasks == 1
    assert second.num_segments == expected.num_segments == 3
    for name, grad in expected.grads.items():
        torch.testing.assert_close(second.grads[name], grad, rtol=0, atol=0)
    if algorithm == "reptile":  # theta_0 - theta_K of the second task alone
        end = dict(model.encoder.named_parameters())
        for name, grad in second.grads.items():
            torch.testing.assert_close(grad, init[name] - end[name].detach())


@pytest.mark.parametrize("algorithm", ["leap", "reptile"])
def test_finish_task_without_an_open_path_is_refused(algorithm):
    torch.manual_seed(0)
    model = Net()
    meta_learner = make_meta_learner(algorithm, model.encoder, prefix="encoder.")
    meta_learner.init_task()
    with pytest.raises(RuntimeError, match="no open path"):
        meta_learner.finish_task(model, 1.0)
    partial = meta_learner.finish_task(model, train_steps(model, meta_learner, 2))
    assert partial.num_tasks == 1
    with pytest.raises(RuntimeError, match="no open path"):  # the same task finished twice
        meta_learner.finish_task(model, 1.0)


def test_length_metric_normalizes_by_the_tracked_parameters_only():
    """Same encoder path, gradients and losses; one head stays, one moves far: same partial,
    and each increment is -(d_theta + d_l g) / sqrt(|d_theta_encoder|^2 + d_l^2)."""
    thetas = [torch.tensor([0.0, 0.0]), torch.tensor([0.3, -0.4]), torch.tensor([0.5, 0.1])]
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([-0.5, 0.25]), torch.tensor([0.0, 1.0])]
    losses = [2.0, 1.5, 1.75]
    partials = []
    for head_speed in (0.0, 100.0):
        module = nn.ParameterDict(
            {"enc": nn.Parameter(thetas[0].clone()), "head": nn.Parameter(torch.zeros(3))}
        )
        leap = Leap({"enc": thetas[0]}, metric="length", prefix="")
        for i, (theta, grad, loss) in enumerate(zip(thetas, grads, losses, strict=True)):
            with torch.no_grad():
                module["enc"].copy_(theta)
                module["head"].fill_(head_speed * i)
            module["enc"].grad = grad.clone()
            module["head"].grad = torch.ones(3)
            leap.update(loss, module)
        partials.append(leap.finish_task(module, losses[-1]))
    expected = torch.zeros(2)
    for i in range(2):
        d_theta = thetas[i + 1] - thetas[i]
        d_loss = -abs(losses[i + 1] - losses[i])
        norm = (d_theta.pow(2).sum() + d_loss**2).sqrt()
        expected -= (d_theta + d_loss * grads[i]) / norm
    for partial in partials:
        torch.testing.assert_close(partial.grads["enc"], expected)
