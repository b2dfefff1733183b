"""The clocks of a run: its wall time (Lightning's Timer), which stamps each evaluation, and a
step clock for the first step's cost and for benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Timer


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock reading means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RunClock(Timer):
    """Lightning's Timer, which keeps its elapsed time in checkpoints (a resumed run's wall time
    continues), logging with each evaluation the iteration it measured and the seconds of
    training so far. `evaluated_at` is the iteration of the last evaluation."""

    def __init__(self) -> None:
        super().__init__()
        self.evaluated_at = -1

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Lightning hands the logger the 0-based index of the last iteration for in-fit
        # evaluations but one more for a validate() after fit: pin Lightning's own in-fit value,
        # so that metrics_log turns both into iterations done alike.
        last = trainer.global_step - 1
        # That iteration's epoch, also after fit ends and where fit trained nothing (resumed from
        # the last step's checkpoint): fit sets the batch count before it decides to skip.
        epoch = last // trainer.num_training_batches
        wall_time = self.time_elapsed()
        module.log_dict({"wall_time": wall_time, "step": float(last), "epoch": float(epoch)})
        self.evaluated_at = trainer.global_step


class StepClock(pl.Callback):
    """The host clock before the first step (`times[0]`) and after each step in `at` (`times[k]`,
    after k steps), read once the device has finished: a run's first step (compilation, graph
    capture, autotuning), a bench's timed steps, epochs. As a callback it clocks the training
    steps of a fit; a plain loop calls `start` and `tick` itself. With a `barrier`, concurrent
    processes meet after `barrier_at` steps before reading the clock, so that the steps timed
    after it overlap."""

    def __init__(
        self,
        at: Iterable[int] = (1,),
        barrier: threading.Barrier | None = None,
        barrier_at: int | None = None,
    ) -> None:
        self.at, self.barrier, self.barrier_at = set(at), barrier, barrier_at
        self.times: dict[int, float] = {}
        self.steps = 0

    def seconds(self, start: int = 0, end: int = 1) -> float | None:
        """Seconds from the clock reading after `start` steps to the one after `end`; None if
        the clock did not get there (a resumed run with no step left)."""
        if start not in self.times or end not in self.times:
            return None
        return self.times[end] - self.times[start]

    def start(self, device: torch.device) -> None:
        synchronize(device)
        self.times[0] = time.perf_counter()

    def tick(self, device: torch.device) -> None:
        """A step is over."""
        self.steps += 1
        if self.steps in self.at:
            synchronize(device)
            if self.barrier is not None and self.steps == self.barrier_at:
                self.barrier.wait(timeout=600)
            self.times[self.steps] = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, module, batch, batch_idx: int) -> None:
        if self.steps == 0 and 0 not in self.times:
            self.start(module.device)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        self.tick(module.device)
