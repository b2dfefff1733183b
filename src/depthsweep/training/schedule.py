"""The paper's learning-rate schedule (He et al. 2016, §4.2), per iteration.

lr = 0.1, divided by 10 at 50% and 75% of the run. With warm-up (the paper's ResNet-110 recipe),
lr is 0.01 until the running training error drops below 80%, then goes *back* to 0.1: the decay
is always computed from the base rate, never from the warm-up rate. Two guards keep a warm-up from
swallowing a run whose error never gets there: it ends after at most a fraction
`warmup_max_fraction` of the run (like the milestones, so that a short run is capped as a full one
is: 1/64 is 1,000 of the paper's 64,000 iterations and 22 of 1,400), and the rate is never above
the scheduled one, so the decays at 50% and 75% always apply.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class PaperLR(LRScheduler):
    """Step decay over iterations with an optional error-triggered, capped warm-up.

    Step it once per optimizer step. The training loop calls `end_warmup()` when the running
    training error falls below the threshold. `warmup_end` (the first iteration at the scheduled
    rate) and `warmup_end_reason` are saved with the scheduler's state.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        iterations: int,
        milestones: Sequence[float] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_lr: float | None = None,
        warmup_max_fraction: float | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"schedule.iterations must be >= 1, got {iterations}")
        # Fractions, so one schedule fits any run's length; the paper's 32k and 48k as counts
        # would never be reached by a run of fractions' steps and silently keep lr 0.1.
        if any(not 0 < m <= 1 for m in milestones) or list(milestones) != sorted(milestones):
            raise ValueError(
                f"milestones are fractions of the run's iterations, ascending in (0, 1]: got "
                f"{list(milestones)} (the paper's 32k and 48k of 64k are [0.5, 0.75])"
            )
        self.milestones = [round(m * iterations) for m in milestones]
        self.gamma = gamma
        self.warmup_lr = warmup_lr
        self.warmup_max_iterations = (
            None if warmup_max_fraction is None else max(1, round(warmup_max_fraction * iterations))
        )
        self.warming_up = warmup_lr is not None
        self.warmup_end: int | None = None
        self.warmup_end_reason: str | None = None
        super().__init__(optimizer)

    def end_warmup(self, reason: str) -> None:
        """Leave warm-up now: the iteration after the last step() already runs at the
        scheduled rate."""
        if not self.warming_up:
            return
        self.warming_up = False
        self.warmup_end, self.warmup_end_reason = self.last_epoch, reason
        # The optimizer's rate now; get_last_lr() follows at the next step()
        for group, lr in zip(self.optimizer.param_groups, self._scheduled(), strict=True):
            group["lr"] = lr

    def _scheduled(self) -> list[float]:
        # last_epoch counts scheduler steps, i.e. iterations here
        decay = self.gamma ** bisect_right(self.milestones, self.last_epoch)
        return [base * decay for base in self.base_lrs]

    def get_lr(self) -> list[float]:
        cap = self.warmup_max_iterations
        if self.warming_up and cap is not None and self.last_epoch >= cap:
            self.end_warmup(f"cap of {cap} iterations")
        if self.warming_up:
            return [min(self.warmup_lr, lr) for lr in self._scheduled()]
        return self._scheduled()


def warmup_lr_for(depth: int, warmup_lr: float, from_depth: int | None) -> float | None:
    """The warm-up rate if warm-up applies at this depth (on from `from_depth`; None disables)."""
    return warmup_lr if from_depth is not None and depth >= from_depth else None
