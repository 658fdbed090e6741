"""A supervised sanity experiment: Leap learns an encoder initialization that makes held-out
regression tasks train faster (lower mean training loss over 100 SGD steps).

Task family: y = tanh(x W) v with W shared across tasks and v per task; the model meta-learns only
its encoder (as the Atari agent does); heads start fresh per task. Measured over seeds 0-3 with 30
meta-steps: the learned initialization's loss AUC is 0.62-0.65 of the random initialization's
(Reptile: 0.64-0.65). We assert a ratio below 0.8 for each of three seeds.
"""

import pytest
import torch
from torch import nn

from leap_ray.meta import PartialMetaGradient, make_meta_learner


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(8, 32), nn.Tanh())
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.encoder(x))


def task_sampler(family_seed):
    shared = torch.randn(8, 16, generator=torch.Generator().manual_seed(family_seed)) / 1.414

    def sample(task_seed):
        g = torch.Generator().manual_seed(task_seed)
        head = torch.randn(16, 1, generator=g)
        x = torch.randn(256, 8, generator=g)
        return x, torch.tanh(x @ shared) @ head

    return sample


def train_task(model, x, y, meta_learner=None, steps=100, lr=0.1):
    """Returns the mean training loss over the path (the AUC) and the task's partial."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for i in range(steps):
        rows = slice((i * 32) % 256, (i * 32) % 256 + 32)
        loss = ((model(x[rows]) - y[rows]) ** 2).mean()
        loss.backward()
        if meta_learner is not None:
            meta_learner.update(loss, model)
        losses.append(loss.item())
        opt.step()
        opt.zero_grad()
    partial = None
    if meta_learner is not None:
        with torch.no_grad():
            final_loss = ((model(x) - y) ** 2).mean()
        partial = meta_learner.finish_task(model, final_loss)
    return sum(losses) / steps, partial


def held_out_auc(sample, encoder_init):
    aucs = []
    for task in range(10):
        torch.manual_seed(10**6 + task)
        model = Net()
        model.encoder.load_state_dict(encoder_init)
        aucs.append(train_task(model, *sample(10**6 + task))[0])
    return sum(aucs) / len(aucs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leap_initialization_beats_random_on_held_out_tasks(seed):
    torch.manual_seed(seed)
    sample = task_sampler(seed)
    base = Net()
    random_init = {k: v.clone() for k, v in base.encoder.state_dict().items()}
    leap = make_meta_learner("leap", base.encoder, prefix="encoder.", metric="length")
    meta_opt = torch.optim.Adam(leap.parameters(), lr=0.01)
    for meta_step in range(30):
        partials = []
        for task in range(5):
            model = Net()
            leap.init_task()
            leap.to(model)
            partials.append(train_task(model, *sample(1000 * meta_step + task), leap)[1])
        leap.set_meta_gradient(PartialMetaGradient.sum(partials))
        meta_opt.step()
        meta_opt.zero_grad()
    learned = {k: v.detach().clone() for k, v in leap.init.items()}
    ratio = held_out_auc(sample, learned) / held_out_auc(sample, random_init)
    assert ratio < 0.8, f"learned/random loss AUC {ratio:.3f}"
