"""The Lightning module's training-error window: the mean of the last N mini-batches."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from depthsweep.config import compose_config
from depthsweep.models import PlainNet
from depthsweep.module import Classifier
from depthsweep.train import train


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
    loss, _ = module.graphed(x, y) if cuda_graph else module._loss_and_error((x, y))
    if not cuda_graph:
        loss.backward()
    module.on_validation_model_zero_grad()
    kept = [p.grad is not None for p in module.parameters()]
    assert all(kept) if cuda_graph else not any(kept)


def test_logged_rows_hold_each_step_and_the_epoch_means(fake_cifar, tmp_path):
    """Logging happens only on Lightning's writing steps: with a window of one step, every row
    holds that step's error, and each epoch row the mean of its steps."""
    cfg = compose_config(
        [
            "depth=8",
            f"data.root={fake_cifar}",  # 100 images: 5 batches of 20 an epoch
            "data.batch_size=20",
            "schedule.iterations=10",
            "trainer=cpu",
            "trainer.log_every_n_steps=1",
            "trainer.enable_progress_bar=false",
        ]
    )
    assert train(cfg, tmp_path) == "done"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    steps = metrics.dropna(subset=["train_error"]).set_index("step")
    assert list(steps.index) == list(range(1, 11))
    epochs = metrics.dropna(subset=["train_error_epoch"]).set_index("epoch")
    for epoch, first in ((0, 1), (1, 6)):
        mean = steps.loc[first : first + 4, "train_error"].mean()
        assert epochs.loc[epoch, "train_error_epoch"] == pytest.approx(mean)
