"""The learning-rate trace, iteration by iteration, including the ResNet-110 warm-up."""

from __future__ import annotations

import pytest
import torch

from depthsweep.training.build import make_module
from depthsweep.training.config import compose_config
from depthsweep.training.schedule import PaperLR, warmup_lr_for


def trace(iterations: int, end_warmup_after: int | None = None, **warmup) -> list[float]:
    """The lr used at each iteration, stepping the scheduler once per iteration as the training
    loop does, which ends the warm-up (if any) after iteration `end_warmup_after`."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, iterations, **warmup)
    lrs = []
    for it in range(iterations):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if it + 1 == end_warmup_after:
            sched.end_warmup("test")
    return lrs


def close(values: list[float], expected: float) -> bool:
    return all(abs(v - expected) < 1e-12 for v in values)


def test_step_decay_at_half_and_three_quarters():
    lrs = trace(100)
    assert set(lrs[:50]) == {0.1}
    assert close(lrs[50:75], 0.01) and close(lrs[75:], 0.001)


def test_paper_iterations_divide_at_32k_and_48k():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    assert PaperLR(opt, 64_000).milestones == [32_000, 48_000]


def test_warmup_returns_to_base_rate_and_decays_from_it():
    """Two known reproduction bugs: never returning to 0.1, and decaying from 0.01. The switch
    takes effect at once: the iteration after the check runs at 0.1."""
    lrs = trace(100, end_warmup_after=20, warmup_lr=0.01)
    assert set(lrs[:20]) == {0.01}
    assert set(lrs[20:50]) == {0.1}
    assert close(lrs[50:75], 0.01) and close(lrs[75:], 0.001)


def test_a_warmup_whose_error_never_drops_ends_at_the_cap():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, 100, warmup_lr=0.01, warmup_max_fraction=0.1)
    lrs = trace(100, warmup_lr=0.01, warmup_max_fraction=0.1)  # end_warmup is never called
    assert set(lrs[:10]) == {0.01} and set(lrs[10:50]) == {0.1}
    assert close(lrs[50:75], 0.01) and close(lrs[75:], 0.001)
    for _ in range(12):
        opt.step()
        sched.step()
    assert (sched.warming_up, sched.warmup_end) == (False, 10)
    assert sched.warmup_end_reason == "cap of 10 iterations"


@pytest.mark.parametrize("iterations, cap", [(64_000, 1000), (6000, 94), (1400, 22), (40, 1)])
def test_the_warmup_cap_scales_with_the_run(iterations, cap):
    """The default cap, 1/64 of the run: a 1,400-iteration run whose error never drops below 80%
    trains at 0.1 from iteration 22, not at 0.01 then 0.001 throughout (a fixed 1,000 did that);
    the decays still apply at 50% and 75%."""
    cfg = compose_config(["arch=resnet", "depth=110", f"schedule.iterations={iterations}"])
    lrs = trace(iterations, warmup_lr=0.01, warmup_max_fraction=cfg.schedule.warmup.max_fraction)
    assert set(lrs[:cap]) == {0.01} and set(lrs[cap : iterations // 2]) == {0.1}
    assert close(lrs[iterations // 2 : iterations * 3 // 4], 0.01)
    assert close(lrs[iterations * 3 // 4 :], 0.001)


def test_the_scheduled_decays_apply_during_a_warmup():
    """A warm-up that never ends (no cap, error never low enough) still decays at 50% and 75%:
    the rate is never above the schedule's."""
    lrs = trace(100, warmup_lr=0.05)
    assert set(lrs[:50]) == {0.05}
    assert close(lrs[50:75], 0.01) and close(lrs[75:], 0.001)


def test_warmup_end_is_recorded_once():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, 100, warmup_lr=0.01, warmup_max_fraction=0.5)
    for _ in range(7):
        opt.step()
        sched.step()
    sched.end_warmup("error below threshold")
    sched.end_warmup("again")  # a later check changes nothing
    assert (sched.warmup_end, sched.warmup_end_reason) == (7, "error below threshold")
    assert opt.param_groups[0]["lr"] == 0.1


def test_warmup_state_survives_a_checkpoint():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = PaperLR(opt, 100, warmup_lr=0.01)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    restored = PaperLR(opt2, 100, warmup_lr=0.01)
    restored.end_warmup("test")
    restored.load_state_dict(state)
    assert restored.warming_up and restored.last_epoch == 5
    assert restored.warmup_end is None


@pytest.mark.parametrize(
    "arch, depth, warmup_lr",
    [
        ("resnet", 110, 0.01),
        ("resnet", 1202, 0.01),
        ("resnet", 56, None),
        ("plain", 110, None),  # the paper describes no warm-up for plain nets
        ("resnet_bottleneck", 164, 0.01),
    ],
)
def test_default_config_warms_up_resnets_from_depth_110_only(arch, depth, warmup_lr):
    cfg = compose_config([f"arch={arch}", f"depth={depth}"])
    assert warmup_lr_for(depth, cfg.schedule.warmup.lr, cfg.schedule.warmup.from_depth) == (
        warmup_lr
    )
    sched = make_module(cfg, torch.nn.Linear(1, 1)).configure_optimizers()["lr_scheduler"]
    assert sched["scheduler"].warmup_lr == warmup_lr
    assert sched["scheduler"].warmup_max_iterations == 1000  # 1/64 of the 64,000 iterations
