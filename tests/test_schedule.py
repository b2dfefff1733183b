"""The learning-rate trace, iteration by iteration, including the ResNet-110 warm-up."""

from __future__ import annotations

import torch

from depthsweep.schedule import PaperLR, warmup_lr_for


def trace(iterations: int) -> list[float]:
    """The lr used at each iteration, stepping the scheduler once per iteration."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, iterations)
    lrs = []
    for _ in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_step_decay_at_half_and_three_quarters():
    lrs = trace(100)
    assert set(lrs[:50]) == {0.1}
    assert all(abs(v - 0.01) < 1e-12 for v in lrs[50:75])
    assert all(abs(v - 0.001) < 1e-12 for v in lrs[75:])


def test_paper_iterations_divide_at_32k_and_48k():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert PaperLR(opt, 64_000).milestones == [32_000, 48_000]


def test_warmup_returns_to_base_rate_and_decays_from_it():
    """Two known reproduction bugs: never returning to 0.1, and decaying from 0.01."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, 100, warmup_lr=0.01)
    lrs = []
    for it in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if it == 19:  # the training loop sees error < 80% after iteration 20
            sched.end_warmup()
        sched.step()
    assert set(lrs[:20]) == {0.01}
    assert set(lrs[20:50]) == {0.1}
    assert all(abs(v - 0.01) < 1e-12 for v in lrs[50:75])
    assert all(abs(v - 0.001) < 1e-12 for v in lrs[75:])


def test_warmup_state_survives_a_checkpoint():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, 100, warmup_lr=0.01)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    restored = PaperLR(opt2, 100, warmup_lr=0.01)
    restored.end_warmup()
    restored.load_state_dict(state)
    assert restored.warming_up and restored.last_epoch == 5


def test_warmup_is_on_by_default_from_depth_110():
    assert warmup_lr_for(110, 0.01, 110) == 0.01
    assert warmup_lr_for(1202, 0.01, 110) == 0.01
    assert warmup_lr_for(56, 0.01, 110) is None
    assert warmup_lr_for(110, 0.01, None) is None
