"""The training metrics: each step's loss and error over the last logging window, kept on the
device, and what the host decides from them once a window.

The paper plots the training error of the augmented mini-batches. Each step's values (the
module's `training_step` returns them) go into a ring buffer of the last `log_every_n_steps`
steps and into epoch sums on the device, so that logging their means costs no host sync. The
host reads the window's means once a window: a loss that is no longer finite stops the run, and
an error below the warm-up's threshold ends the warm-up.

`self.log` is called only on the steps Lightning writes: its host time (about 1 ms a call on a
2-core CPU) would otherwise be paid every step, on the order of a whole graphed step of ResNet-20
on a GPU (2.3 ms). Which steps those are, Lightning says through a private property
(`_logger_connector.should_update_logs`); `writes_step_metrics` states its rule with public
attributes instead.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from depthsweep.training.metrics_log import AppendingCSVLogger
from depthsweep.training.schedule import PaperLR

log = logging.getLogger(__name__)


def writes_step_metrics(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes the step metrics logged in this step's on_train_batch_end: every
    log_every_n_steps optimizer steps, and on the step a callback's stop was asked at
    (trainer.should_stop: EarlyStopping, say, added through conf/callbacks; Ctrl-C raises)."""
    return trainer.global_step % trainer.log_every_n_steps == 0 or trainer.should_stop


class TrainingWindow(pl.Callback):
    """Logs `train_loss` and `train_error` (the window's means) and their epoch means
    (`*_epoch`); stops a run whose loss is no longer finite; ends the warm-up (the scheduler's
    `end_warmup`) once the window's error is below `until_train_error` (%).

    The values may have any shape: a run's are scalars; a group of runs trained as one gives one
    value per member (`values`) and decides per member (`check`). The window and the epoch's sums
    are kept in checkpoints, so that a resumed run logs what the uninterrupted one would have.
    """

    def __init__(self, until_train_error: float = 80.0, label: str | None = None) -> None:
        self.until_train_error = until_train_error
        self.label = label  # the run's, which its console lines start with (runs share a console)
        self.recent: Tensor | None = None  # (loss and error %, window, *shape) on the device
        self.epoch_sum: Tensor | None = None  # (loss and error %, *shape), summed this epoch
        self.seen = self.epoch_steps = 0  # steps in `recent` so far, and this epoch
        self.restored: dict[str, int] | None = None  # the checkpoint's step and epoch, if any

    def on_load_checkpoint(self, trainer: pl.Trainer, module, checkpoint: dict[str, Any]) -> None:
        self.restored = {"step": checkpoint["global_step"], "epoch": checkpoint["epoch"]}

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # Here, not in on_train_start, which fit skips when the checkpoint is the last step's.
        self.window = trainer.log_every_n_steps
        if self.restored is None or not self.seen:  # not resumed, or before the first step
            return
        # Every checkpoint is written in on_train_batch_end (ModelCheckpoint's), before Lightning
        # writes the step's row and, where the step ends an epoch, before on_train_epoch_end: a
        # process killed in between resumes from a checkpoint whose rows are lost. The window
        # and the epoch's sums in the checkpoint are what those rows held the means of.
        step = self.restored["step"]
        logs = [lg for lg in trainer.loggers if isinstance(lg, AppendingCSVLogger)]
        if step % self.window == 0:
            missing = [lg for lg in logs if not lg.has_value(step, "train_error")]
            loss, error = self._means()
            self._log_again(module, missing, step, {"train_loss": loss, "train_error": error})
        if not self.epoch_steps:
            return
        # The epoch's row: where a log has it, the epoch ended here (a group's members' rows are
        # written one after another); at the last step, fit will not reach the epoch's end again.
        missing = [lg for lg in logs if not lg.has_value(step, "train_error_epoch")]
        if len(missing) < len(logs) or step >= trainer.max_steps:
            loss, error = self.epoch_sum / self.epoch_steps
            means = {"train_loss_epoch": loss, "train_error_epoch": error}
            self._log_again(module, missing, step, means)
            # Closed as on_train_epoch_end closes it, so that Lightning's restart, which ends the
            # finished epoch again, logs nothing twice.
            self.epoch_sum.zero_()
            self.epoch_steps = 0

    def on_save_checkpoint(self, trainer: pl.Trainer, module, checkpoint: dict[str, Any]) -> None:
        # Rows logged straight to the loggers (the lr, gradient norms) wait in their buffers
        # until the step's own row is written, after this checkpoint: written first, so that a
        # kill after the checkpoint loses only the rows on_fit_start writes back.
        for logger in trainer.loggers:
            logger.save()

    def _log_again(
        self,
        module: pl.LightningModule,
        missing: list[AppendingCSVLogger],
        step: int,
        means: dict[str, Tensor],
    ) -> None:
        """`means` logged at `step` to the logs `missing` them, each with a warning."""
        named = {k: float(v) for k, v in self.named(module, means).items()}
        column = list(means)[-1]
        for logger in missing:
            log.warning(
                f"{logger.log_dir}: iteration {step}'s {column}, lost (killed after its "
                "checkpoint), written again from the checkpoint"
            )
            logger.log_metrics(named | {"epoch": self.restored["epoch"]}, step - 1)
            logger.save()

    def values(self, outputs: Any) -> Tensor:
        """A step's (loss, error %) from what `training_step` returned."""
        return torch.stack([outputs["loss"].detach(), outputs["error"]])

    def named(self, module: pl.LightningModule, values: dict[str, Tensor]) -> dict[str, Tensor]:
        """Means under their names in the logs: here as in metrics.csv (`train_loss`...)."""
        return values

    def log_means(self, module: pl.LightningModule, values: dict[str, Tensor]) -> None:
        module.log_dict(self.named(module, values))

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch, batch_idx: int
    ) -> None:
        values = self.values(outputs)
        if self.recent is None:
            self.recent = values.new_zeros((2, self.window, *values.shape[1:]))
            self.epoch_sum = torch.zeros_like(values)
        elif self.recent.device != values.device:  # restored from a checkpoint, on the CPU
            self.recent, self.epoch_sum = self.recent.to(values), self.epoch_sum.to(values)
        self.recent[:, self.seen % self.window] = values
        self.epoch_sum += values
        self.seen += 1
        self.epoch_steps += 1
        if writes_step_metrics(trainer):
            loss, error = self._means()
            self.log_means(module, {"train_loss": loss, "train_error": error})
        if trainer.global_step % self.window == 0:
            loss, error = self._means().tolist()  # the one host sync of the window
            self.check(trainer, module, loss, error)

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": self.recent,
            "epoch_sum": self.epoch_sum,
            "seen": self.seen,
            "epoch_steps": self.epoch_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent, self.epoch_sum = state["recent"], state["epoch_sum"]
        self.seen, self.epoch_steps = state["seen"], state["epoch_steps"]

    def _means(self) -> Tensor:
        return self.recent[:, : min(self.seen, self.window)].mean(1)

    def check(
        self, trainer: pl.Trainer, module: pl.LightningModule, loss: float, error: float
    ) -> None:
        """What the window's means decide: the NaN guard, then the warm-up switch."""
        fault = self.decide(
            module.lr_schedulers(),
            loss,
            error,
            self.until_train_error,
            trainer.global_step,
            self.label,
        )
        if fault:
            raise FloatingPointError(fault)

    def decide(
        self,
        sched: PaperLR,
        loss: float,
        error: float,
        threshold: float,
        step: int,
        label: str | None,
    ) -> str | None:
        """One run's decision at `step` from its window's means: why it must stop (a loss no
        longer finite), or None, after ending its warm-up if `error` (%) is below `threshold`.
        The warm-up's end is said once, in the window it ended in, whether here or at the
        scheduler's cap."""
        if not math.isfinite(loss):
            return f"training loss became {loss} at iteration {step}"
        if sched.warming_up and error < threshold:
            sched.end_warmup(f"training error {error:.1f}% < {threshold}%")
        if sched.warmup_end is not None and step - self.window < sched.warmup_end <= step:
            log.info(
                f"{f'[{label}] ' if label else ''}"
                f"warm-up over at iteration {sched.warmup_end} ({sched.warmup_end_reason}), "
                f"lr back to the schedule's {sched.optimizer.param_groups[0]['lr']:g}"
            )
        return None

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.epoch_steps:  # every batch has the same size: the mean of the batch means
            loss, error = self.epoch_sum / self.epoch_steps
            self.log_means(module, {"train_loss_epoch": loss, "train_error_epoch": error})
            self.epoch_sum.zero_()
        self.epoch_steps = 0
