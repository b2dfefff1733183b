"""The Lightning module's training-error window: the mean of the last N mini-batches."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from depthsweep.models import PlainNet
from depthsweep.module import Classifier


def loss_and_error(module: Classifier, batch) -> list[float]:
    with torch.no_grad():
        logits = module(batch[0])
    error = (logits.argmax(1) != batch[1]).float().mean() * 100
    return [F.cross_entropy(logits, batch[1]).item(), error.item()]


def window_mean(module: Classifier) -> list[float]:
    return module.recent[:, : min(module.seen, module.window)].mean(1).tolist()


def train_on(module: Classifier, batches) -> None:
    with warnings.catch_warnings():  # self.log without a trainer attached only warns
        warnings.simplefilter("ignore")
        for b in batches:
            module.training_step(b, 0)


def test_window_holds_the_last_n_steps_and_restarts_empty_on_resume():
    torch.manual_seed(0)
    module = Classifier(PlainNet(8).eval(), iterations=100, window=3)  # eval: BN stays put
    batches = [(torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))) for _ in range(7)]
    expected = [loss_and_error(module, b) for b in batches]
    train_on(module, batches)
    assert window_mean(module) == pytest.approx(torch.tensor(expected[-3:]).mean(0).tolist())

    resumed = Classifier(module.model, iterations=100, window=3)  # as after loading a checkpoint
    train_on(resumed, batches[:1])
    assert window_mean(resumed) == pytest.approx(expected[0])  # no zeros from an empty buffer


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_gradients_survive_validation_only_when_a_graph_owns_them(cuda_graph):
    """Lightning frees the gradients before each validation. With cuda_graph=true they are the
    captured graph's output buffers: freeing them would leave SGD nothing to step, silently."""
    module = Classifier(PlainNet(8), iterations=10, cuda_graph=cuda_graph)
    assert module.automatic_optimization is not cuda_graph
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, _ = module.graphed(x, y) if cuda_graph else module._errors((x, y))
    if not cuda_graph:
        loss.backward()
    module.on_validation_model_zero_grad()
    kept = [p.grad is not None for p in module.parameters()]
    assert all(kept) if cuda_graph else not any(kept)
