"""The Lightning module: SGD on cross-entropy, error rates as the paper plots them.

Training error is measured on the augmented mini-batches. Per-step values stay on the device in a
ring buffer of the last `window` iterations and in epoch sums, so logging their means costs no host
sync; the host reads them once per window, for the NaN guard and the warm-up switch. `self.log` is
called only when Lightning writes: its host time (about 1 ms a call on a 2-core CPU) would
otherwise be paid every step, on the order of a whole graphed step of ResNet-20 on a GPU (2.3 ms).

With `cuda_graph=True` the module optimizes manually: forward, loss and backward go through a
GraphedStep (one CUDA graph replay on a GPU), then Lightning's optimizer step and the scheduler run
as in automatic optimization, in the same order.

A net with side heads (InceptionNet with aux_weight > 0) returns (logits, [side logits]) in
training mode: the loss adds `model.aux_weight` times each side head's cross-entropy; errors and
evaluation use the main logits only.
"""

from __future__ import annotations

import logging
import math
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from depthsweep.graphed import GraphedStep
from depthsweep.schedule import PaperLR

log = logging.getLogger(__name__)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host clock reading means something."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Classifier(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        iterations: int,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        milestones: tuple[float, ...] = (0.5, 0.75),
        gamma: float = 0.1,
        warmup_lr: float | None = None,
        warmup_until_error: float = 80.0,
        warmup_max_fraction: float | None = None,
        window: int = 50,
        channels_last: bool = False,
        cuda_graph: bool = False,
        spec: dict | None = None,
    ) -> None:
        super().__init__()
        # Kept in every checkpoint, `spec` too: the net's description (build.model_spec), which
        # depthsweep.zoo rebuilds it from.
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.window = window
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("recent", torch.zeros(2, window), persistent=False)  # loss, error %
        self.register_buffer("epoch_sum", torch.zeros(2), persistent=False)  # ... summed this epoch
        self.epoch_steps = 0
        self.seen = 0  # steps in `recent` since this process started (a resume starts empty)
        self.elapsed = 0.0  # wall time of earlier attempts, restored on resume
        self.evaluated_at = -1  # the iteration of the last test-set evaluation
        self.batches_per_epoch = 1  # set when training starts
        self._t0 = time.perf_counter()
        self.automatic_optimization = not cuda_graph
        self.graphed = GraphedStep(self._forward_backward, model) if cuda_graph else None
        self.first_step_s: float | None = None  # includes compilation or graph capture

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format))

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.SGD(
            self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
        sched = PaperLR(
            opt, hp.iterations, hp.milestones, hp.gamma, hp.warmup_lr, hp.warmup_max_fraction
        )
        lr_scheduler = {"scheduler": sched, "interval": "step", "name": "lr"}
        return {"optimizer": opt, "lr_scheduler": lr_scheduler}

    def _loss_and_error(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = self(x)
        aux: list[Tensor] = []
        if isinstance(logits, tuple):  # (main, side heads' logits): a net with side heads, training
            logits, aux = logits
        loss = F.cross_entropy(logits, y)
        for side in aux:
            loss = loss + self.model.aux_weight * F.cross_entropy(side, y)
        return loss, (logits.argmax(1) != y).float().mean() * 100  # the main head's error only

    def _forward_backward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        loss, error = self._loss_and_error((x, y))
        # Backward as automatic optimization runs it, outside autocast; not manual_backward: its
        # hooks (and an fp16 loss scaler) must not run inside a graph capture.
        with torch.autocast(x.device.type, enabled=False):
            loss.backward()
        return loss.detach(), error.detach()

    def _manual_step(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        result = ()

        def closure() -> Tensor:
            nonlocal result
            result = self.graphed(*batch)
            return result[0]

        self.optimizers().step(closure=closure)  # counts the step; on_before_optimizer_step runs
        self.lr_schedulers().step()  # where automatic optimization steps it: before batch end
        return result

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        if self.automatic_optimization:
            loss, error = self._loss_and_error(batch)
        else:
            loss, error = self._manual_step(batch)
        values = torch.stack([loss.detach(), error.detach()])
        self.recent[:, self.seen % self.window] = values
        self.epoch_sum += values
        self.seen += 1
        self.epoch_steps += 1
        if self._writes_logs():
            loss_w, error_w = self.recent[:, : min(self.seen, self.window)].mean(1)
            self.log_dict({"train_loss": loss_w, "train_error": error_w})
        return loss

    def _writes_logs(self) -> bool:
        """Whether Lightning writes step metrics after this step (every log_every_n_steps). No
        public API says so; this private one is what Lightning's own LearningRateMonitor asks."""
        return self._trainer is None or self.trainer._logger_connector.should_update_logs

    def on_train_epoch_end(self) -> None:
        if self.epoch_steps:  # every batch has the same size: the mean of the batch means
            loss, error = self.epoch_sum / self.epoch_steps
            self.log_dict({"train_loss_epoch": loss, "train_error_epoch": error})
        self.epoch_sum.zero_()
        self.epoch_steps = 0

    def on_fit_end(self) -> None:
        if self.graphed is not None:
            self.graphed.release()

    def on_validation_model_zero_grad(self) -> None:
        # Lightning frees the gradients before validating; a captured graph owns them.
        if self.automatic_optimization:
            super().on_validation_model_zero_grad()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.first_step_s is None:
            synchronize(self.device)
            self._first_step_start = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.first_step_s is None:  # this process's first step: compilation, capture, autotuning
            synchronize(self.device)
            self.first_step_s = time.perf_counter() - self._first_step_start
        step = self.global_step  # optimizer steps taken so far
        if step % self.window:
            return
        loss, error = self.recent[:, : min(self.seen, self.window)].mean(1).tolist()  # 1 sync
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at iteration {step}")
        sched = self.lr_schedulers()
        threshold = self.hparams.warmup_until_error
        if sched.warming_up and error < threshold:
            sched.end_warmup(f"training error {error:.1f}% < {threshold}%")
        if sched.warmup_end is not None and step - self.window < sched.warmup_end <= step:
            log.info(  # once: the window in which it ended
                f"warm-up over at iteration {sched.warmup_end} ({sched.warmup_end_reason}), "
                f"lr back to the schedule's {sched.get_last_lr()[0]:g}"
            )

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx=0):
        loss, error = self._loss_and_error(batch)
        split = "test" if dataloader_idx == 0 else "val"
        self.log_dict(
            {f"{split}_loss": loss, f"{split}_error": error},
            on_epoch=True,
            batch_size=len(batch[1]),
            add_dataloader_idx=False,
        )

    def on_validation_epoch_end(self) -> None:
        # Lightning hands the logger the 0-based index of the last iteration for in-fit
        # evaluations but one more for a validate() after fit: pin Lightning's own in-fit value,
        # so that metrics_log turns both into iterations done alike.
        last = self.global_step - 1
        epoch = last // self.batches_per_epoch  # that iteration's epoch, also after fit ends
        self.log_dict({"wall_time": self.wall_time(), "step": float(last), "epoch": float(epoch)})
        self.evaluated_at = self.global_step

    def on_train_start(self) -> None:
        self.batches_per_epoch = self.trainer.num_training_batches

    def wall_time(self) -> float:
        return self.elapsed + time.perf_counter() - self._t0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["wall_time"] = self.wall_time()
        data = self.trainer.datamodule
        if data is not None:  # the inputs' normalisation as applied: (x - shift) / scale
            checkpoint["normalization"] = {"shift": data.shift.cpu(), "scale": data.scale.cpu()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.elapsed, self._t0 = checkpoint.get("wall_time", 0.0), time.perf_counter()
