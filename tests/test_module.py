"""The Lightning module and its training-metrics window: the window's mean is the mean of the last
N mini-batches, each logged row holds one, the epoch rows hold the epoch's mean, the graphed
subclass keeps its gradients, the clocks stamp evaluations; gradient norms per conv layer."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from depthsweep.nets.models import PlainNet
from depthsweep.training.callbacks import GradNormLogger, grad_norms
from depthsweep.training.config import compose_config
from depthsweep.training.graphed import GraphedClassifier
from depthsweep.training.module import Classifier
from depthsweep.training.schedule import PaperLR
from depthsweep.training.train import train
from depthsweep.training.window import TrainingWindow

SGD = functools.partial(torch.optim.SGD, lr=0.05, momentum=0.9)


def module(cls: type[Classifier] = Classifier, iterations: int = 100) -> Classifier:
    torch.manual_seed(0)
    return cls(PlainNet(8), SGD, functools.partial(PaperLR, iterations=iterations))


class StepOutputs(pl.Callback):
    """Each step's loss and error as the module returned them."""

    def __init__(self) -> None:
        self.values: dict[int, list[float]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.values[trainer.global_step] = [outputs["loss"].item(), outputs["error"].item()]


def fit(net: Classifier, tmp_path, steps: int, ckpt=None) -> tuple[StepOutputs, pd.DataFrame]:
    g = torch.Generator().manual_seed(1)
    data = torch.utils.data.TensorDataset(
        torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    )
    outputs = StepOutputs()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        log_every_n_steps=3,
        logger=CSVLogger(tmp_path, name="", version=f"{steps}"),
        callbacks=[TrainingWindow(), outputs],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(net, torch.utils.data.DataLoader(data, batch_size=8), ckpt_path=ckpt)
    if ckpt is None:
        trainer.save_checkpoint(tmp_path / "mid.ckpt")
    logged = pd.read_csv(f"{trainer.logger.log_dir}/metrics.csv").dropna(subset=["train_loss"])
    return outputs, logged.set_index("step")


def test_the_window_is_the_mean_of_the_last_n_steps_also_across_a_resume(tmp_path):
    outputs, logged = fit(module(), tmp_path, 7)
    # Lightning's step column is the 0-based index of the last iteration: 2 is after 3 steps.
    assert list(logged.index) == [2, 5]
    for row, last in ((2, 3), (5, 6)):
        window = torch.tensor([outputs.values[s] for s in range(last - 2, last + 1)]).mean(0)
        assert logged.loc[row, ["train_loss", "train_error"]].tolist() == pytest.approx(
            window.tolist()
        )
    # Resumed at iteration 7, mid-window: the next row means the last three steps, as in an
    # uninterrupted run: the 7th (in the checkpoint's window) and the two taken since.
    resumed, logged = fit(module(), tmp_path, 9, ckpt=tmp_path / "mid.ckpt")
    assert sorted(resumed.values) == [8, 9] and list(logged.index) == [8]
    window = torch.tensor([outputs.values[7], resumed.values[8], resumed.values[9]]).mean(0)
    assert logged.loc[8, ["train_loss", "train_error"]].tolist() == pytest.approx(window.tolist())


@pytest.mark.parametrize("cls", [Classifier, GraphedClassifier])
def test_gradients_survive_validation_only_when_a_graph_owns_them(cls):
    """Lightning frees the gradients before each validation. With cuda_graph=true they are the
    captured graph's output buffers: freeing them would leave SGD nothing to step, silently."""
    net = module(cls)
    graphed = cls is GraphedClassifier
    assert net.automatic_optimization is not graphed
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss, _ = net.graphed(x, y) if graphed else net.loss_and_error((x, y))
    if not graphed:
        loss.backward()
    net.on_validation_model_zero_grad()
    kept = [p.grad is not None for p in net.parameters()]
    assert all(kept) if graphed else not any(kept)


def test_a_module_built_to_evaluate_needs_no_optimizer():
    net = Classifier(PlainNet(8)).eval()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        loss, error = net.loss_and_error((x, y))
        logits = net.model(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, y).item())
    assert error.item() == 100 * (logits.argmax(1) != y).sum().item() / 4


def test_logged_rows_hold_each_step_and_the_epoch_means(fake_cifar, tmp_path):
    """Logging happens only on Lightning's writing steps: with a window of one step, every row
    holds that step's error, and each epoch row the mean of its steps; each evaluation row says
    the iteration and epoch it was measured at."""
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
    evaluations = metrics.dropna(subset=["test_error"])
    assert evaluations[["step", "epoch"]].values.tolist() == [[5, 0], [10, 1]]
    assert evaluations["wall_time"].is_monotonic_increasing


def one_layer_net() -> nn.Module:
    net = nn.Module()
    net.conv = nn.Conv2d(3, 2, 3, bias=False)  # 2*3*3*3 = 54 weights
    net.unused = nn.Conv2d(2, 2, 1, bias=False)  # never run: no gradient, not reported
    return net


def test_grad_norms_of_a_one_layer_net_by_hand():
    net = one_layer_net()
    loss = 3 * net.conv(torch.ones(2, 3, 4, 4)).sum()
    loss.backward()
    # dL/dW[o,c,i,j] = 3 * sum over 2 images and the 2x2 output positions of x = 1: 3 * 8 = 24.
    assert grad_norms(net) == pytest.approx({"conv": 24 * math.sqrt(54)})


def test_grad_norm_logger_logs_at_init_and_every_n_iterations():
    net = one_layer_net()
    net.conv(torch.ones(1, 3, 3, 3)).sum().backward()
    logged = []
    logger = SimpleNamespace(log_metrics=lambda m, step: logged.append((step, m)))
    callback = GradNormLogger(every=3)
    for step in range(8):
        trainer = SimpleNamespace(global_step=step, logger=logger)
        callback.on_before_optimizer_step(trainer, SimpleNamespace(model=net), None)
    assert [s for s, _ in logged] == [0, 3, 6]
    assert logged[0][1] == {"grad_norm/conv": pytest.approx(math.sqrt(54))}
    with pytest.raises(ValueError):
        GradNormLogger(every=0)
