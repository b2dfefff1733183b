"""The paper's learning-rate schedule (He et al. 2016, §4.2), per iteration.

lr = 0.1, divided by 10 at 50% and 75% of the run. With warm-up (the paper's ResNet-110 recipe),
lr is 0.01 until the running training error drops below 80%, then goes *back* to 0.1: the decay
is always computed from the base rate, never from the warm-up rate.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class PaperLR(LRScheduler):
    """Step decay over iterations with an optional error-triggered warm-up.

    Step it once per optimizer step. `end_warmup()` is called by the training loop when the
    running training error falls below the threshold; the state is saved with the scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        iterations: int,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_lr: float | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"schedule.iterations must be >= 1, got {iterations}")
        self.milestones = [round(m * iterations) for m in milestones]
        self.gamma = gamma
        self.warmup_lr = warmup_lr
        self.warming_up = warmup_lr is not None
        super().__init__(optimizer)

    def end_warmup(self) -> None:
        """Leave warm-up; the next step() sets the scheduled rate again."""
        self.warming_up = False

    def get_lr(self) -> list[float]:
        if self.warming_up:
            return [self.warmup_lr for _ in self.base_lrs]
        # last_epoch counts scheduler steps, i.e. iterations here
        decay = self.gamma ** bisect_right(self.milestones, self.last_epoch)
        return [base * decay for base in self.base_lrs]


def warmup_lr_for(depth: int, warmup_lr: float, from_depth: int | None) -> float | None:
    """The warm-up rate if warm-up applies at this depth (on from `from_depth`; None disables)."""
    return warmup_lr if from_depth is not None and depth >= from_depth else None
