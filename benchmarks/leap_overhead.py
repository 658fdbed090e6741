"""Per-step cost of `update` on the 1.7M-parameter Nature encoder, relative to one forward +
backward of a batch of 80 84x84x4 frames, on one CPU thread (issue 2; target <= 3%).

    python -m benchmarks.leap_overhead [--repeats 60]
"""

from __future__ import annotations

import argparse
import itertools
import platform

import torch

from benchmarks.timing import median_seconds
from leap_ray.learners.a2c.networks import ActorCritic, make_encoder
from leap_ray.learners.a2c.rmsprop import RMSProp
from leap_ray.meta import make_meta_learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--batch", type=int, default=80)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ActorCritic(make_encoder("nature", (4, 84, 84)), num_actions=6)
    opt = RMSProp(model.parameters(), lr=1e-4, alpha=0.99, eps=1e-4)
    frames = torch.randint(0, 256, (args.batch, 4, 84, 84), dtype=torch.uint8)
    n_params = sum(p.numel() for p in model.encoder.parameters())

    def forward_backward():
        logits, value = model(frames)
        loss = logits.logsumexp(-1).mean() + value.pow(2).mean()
        loss.backward()
        return loss

    compute = median_seconds(forward_backward, args.repeats)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"1 thread; encoder parameters: {n_params:,}"
    )
    print(f"forward+backward, batch {args.batch}: {compute * 1e3:.2f} ms")
    variants = [("leap", m, lt, False) for m in ("energy", "length") for lt in (True, False)]
    variants += [("leap", "energy", True, True), ("reptile", "energy", False, False)]
    params = list(model.parameters())
    for algorithm, metric, loss_term, borrow_grads in variants:
        learner = make_meta_learner(
            algorithm,
            model.encoder,
            metric=metric,
            loss_term=loss_term,
            prefix="encoder.",
            borrow_grads=borrow_grads,
        )
        learner.init_task()
        opt.zero_grad()
        # a loss that changes every update, as in training (a flat loss skips the loss term)
        first = float(forward_backward().detach())
        losses = (first + 1e-3 * i for i in itertools.count())
        # two gradient sets in turn: like a training loop, each update sees new .grad tensors
        grad_sets = [[p.grad.clone() for p in params] for _ in range(2)]
        turn = itertools.count()

        def new_grads(grad_sets=grad_sets, turn=turn):
            for p, grad in zip(params, grad_sets[next(turn) % 2], strict=True):
                p.grad = grad

        def step_only(new_grads=new_grads):
            new_grads()
            opt.step()

        def update_and_step(learner=learner, losses=losses, new_grads=new_grads):
            new_grads()
            learner.update(next(losses), model)
            opt.step()  # the path must move, or a zero step is cheaper than a real one

        cost = median_seconds(update_and_step, args.repeats) - median_seconds(
            step_only, args.repeats
        )
        name = algorithm if algorithm == "reptile" else f"leap {metric} loss_term={loss_term}"
        name += ", borrowed grads" if borrow_grads else ""
        print(
            f"{name:<50} update: {cost * 1e3:6.3f} ms = {100 * cost / compute:5.2f}% "
            f"of forward+backward"
        )


if __name__ == "__main__":
    main()
