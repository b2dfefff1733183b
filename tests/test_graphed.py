"""The CUDA-graph step on a GPU (skipped without one; experiments/gpu_check.sh runs it there):
replaying the captured forward+backward must train exactly like eager PyTorch."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from depthsweep.nets.models import ResNet
from depthsweep.training.config import compose_config
from depthsweep.training.graphed import GraphedStep
from depthsweep.training.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def forward_backward(model):
    def fn(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return (loss.detach(),)

    return fn


def train_steps(graphed: bool, batches, steps: int = 6) -> tuple[list[float], dict]:
    torch.manual_seed(0)
    model = ResNet(8).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    step = GraphedStep(forward_backward(model), model) if graphed else None
    losses = []
    for x, y in batches[:steps]:
        if graphed:
            (loss,) = step(x, y)
        else:
            opt.zero_grad(set_to_none=True)
            (loss,) = forward_backward(model)(x, y)
        opt.step()
        losses.append(loss.item())  # read before the next replay overwrites it
    return losses, model.state_dict()


def test_replayed_steps_train_like_eager_ones(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # same kernels both ways
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    gen = torch.Generator(device="cuda").manual_seed(1)
    batches = [
        (torch.randn(32, 3, 32, 32, device="cuda", generator=gen), torch.arange(32).cuda() % 10)
        for _ in range(6)
    ]
    eager_losses, eager_state = train_steps(False, batches)
    graph_losses, graph_state = train_steps(True, batches)
    assert len(set(graph_losses)) == 6  # every replay saw its own batch and updated the weights
    assert graph_losses == pytest.approx(eager_losses, rel=1e-5)
    for name, value in eager_state.items():  # weights and BatchNorm statistics (warm-up undone)
        torch.testing.assert_close(graph_state[name], value, rtol=1e-4, atol=1e-5, msg=name)


def test_a_batch_of_another_shape_is_refused():
    model = ResNet(8).cuda()
    step = GraphedStep(forward_backward(model), model)
    step(torch.randn(8, 3, 32, 32, device="cuda"), torch.zeros(8, dtype=torch.long, device="cuda"))
    with pytest.raises(ValueError, match="captured for batches"):
        step(torch.randn(4, 3, 32, 32, device="cuda"), torch.zeros(4, dtype=torch.long).cuda())


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_graphed_run_trains_like_an_eager_run(precision, fake_cifar, tmp_path, monkeypatch):
    """The whole training path on the GPU (Lightning, bf16 autocast, warm-up switch, an evaluation
    mid-run): cuda_graph=true must give the eager run's training curve on the same seed."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # same kernels both ways
    common = [
        *["depth=8", f"data.root={fake_cifar}", "data.batch_size=20", "schedule.iterations=20"],
        *["schedule.warmup.from_depth=8", "schedule.warmup.until_train_error=100"],
        "schedule.warmup.max_fraction=0.5",  # ends at the first check, not at the cap
        *["trainer.log_every_n_steps=2", "trainer.check_val_every_n_epoch=2"],
        *[f"trainer.precision={precision}", "trainer.benchmark=false"],
        "trainer.enable_progress_bar=false",
    ]
    curves = {}
    for graph in (False, True):
        run_dir = tmp_path / str(graph)
        assert train(compose_config([*common, f"cuda_graph={graph}"]), run_dir) == "done"
        metrics = pd.read_csv(run_dir / "metrics.csv")
        curves[graph] = metrics.dropna(subset=["train_loss"]).set_index("step")
        assert metrics["test_error"].notna().sum() >= 2  # evaluated mid-run and at the end
    eager, graphed = curves[False], curves[True]
    assert len(eager) == 10 and eager["train_loss"].nunique() > 5
    for column in ("train_loss", "train_error"):
        pd.testing.assert_series_equal(eager[column], graphed[column], rtol=1e-4)
