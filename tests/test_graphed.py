"""The CUDA-graph step on a GPU (skipped without one; experiments/gpu_check.sh runs it there):
replaying the captured forward+backward must train exactly like eager PyTorch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from depthsweep.graphed import GraphedStep
from depthsweep.models import ResNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def forward_backward(model):
    def fn(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return (loss.detach(),)

    return fn


def train(graphed: bool, batches, steps: int = 6) -> tuple[list[float], dict]:
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
    eager_losses, eager_state = train(False, batches)
    graph_losses, graph_state = train(True, batches)
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
