"""Lightning callbacks of a run: a progress line per evaluation, a checkpoint on Ctrl-C or SIGTERM,
the inputs' normalisation in every checkpoint, gradient norms per conv layer."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from depthsweep.nets.models import conv_layers
from depthsweep.runs.rundir import GRAD_PREFIX

log = logging.getLogger(__name__)
ERRORS = ("train_error", "test_error", "val_error")


class ProgressPrinter(pl.Callback):
    """One line per evaluation: where the run is and how it is doing."""

    def __init__(self, label: str) -> None:
        self.label = label

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        errors = [f"{k.replace('_error', '')} err {float(m[k]):.2f}%" for k in ERRORS if k in m]
        log.info(
            f"[{self.label}] iter {trainer.global_step}/{trainer.max_steps} "
            f"epoch {int(m['epoch'])}: {', '.join(errors)} ({float(m['wall_time']):.0f}s)"
        )


class Terminated(BaseException):
    """SIGTERM outside training, taken by CheckpointOnInterrupt.guard. A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` mistakes it for a failure."""


class CheckpointOnInterrupt(pl.Callback):
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM sends on preemption or at its time limit) stops the
    run at a step boundary with a checkpoint of that step, so that the next invocation resumes
    there with every logged step logged once. Lightning turns SIGTERM into a SIGTERMException at
    the next boundary (saved here); Ctrl-C, which Python raises wherever the code is, is caught
    while training and turned into `trainer.should_stop` (train.py saves after fit returns); a
    second Ctrl-C stops at once. `signal` says which one stopped the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.signal: str | None = None
        self._previous = None
        self._guarding = False  # guard(): SIGTERM is ours to take, not Lightning's

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """SIGTERM, while the run is recorded as running but Lightning's handler (installed by
        fit just before training starts, removed after it) is not there to take it to a step
        boundary, raises Terminated where the code is, so that the run is recorded as
        interrupted rather than left `running` by a process that is gone. Without the guard, a
        SIGTERM there would end the process at once. The resume starts from the last
        checkpoint."""

        def terminate(signum, frame) -> None:
            if self._guarding and self.signal is None:  # once: the record is being written
                self.signal = "SIGTERM"
                raise Terminated("SIGTERM")

        try:
            previous = signal.signal(signal.SIGTERM, terminate)
        except ValueError:  # not the main thread: no signals here
            yield
            return
        self._guarding = True
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def on_train_start(self, trainer: pl.Trainer, module) -> None:
        self._guarding = False  # Lightning's handler is installed now (it calls ours too)

        def stop_after_this_step(signum, frame) -> None:
            if self.signal:  # asked twice: now
                raise KeyboardInterrupt
            self.signal = "SIGINT"
            trainer.should_stop = True

        self._previous = signal.signal(signal.SIGINT, stop_after_this_step)

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer: pl.Trainer, module) -> None:
        self._restore()
        self._guarding = True  # no more step boundaries for Lightning's handler to stop at

    def on_exception(self, trainer: pl.Trainer, module, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, KeyboardInterrupt | SIGTERMException):
            self.signal = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
            trainer.save_checkpoint(self.path)


class RecordNormalization(pl.Callback):
    """Every checkpoint records the inputs' normalisation as training applied it, x -> (x - shift)
    / scale with the data module's tensors (the mean image under per_pixel_mean), so that
    depthsweep.apps.zoo can feed the net from the checkpoint alone."""

    def on_save_checkpoint(self, trainer: pl.Trainer, module, checkpoint: dict) -> None:
        data = trainer.datamodule
        if data is not None:
            checkpoint["normalization"] = {"shift": data.shift.cpu(), "scale": data.scale.cpu()}


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each conv weight's gradient, input to output; convs without a gradient are left
    out. One host transfer for all layers."""
    named = [(n, m.weight.grad) for n, m in conv_layers(model) if m.weight.grad is not None]
    if not named:
        return {}
    norms = torch.stack(torch._foreach_norm([g for _, g in named])).tolist()
    return {n: v for (n, _), v in zip(named, norms, strict=True)}


class GradNormLogger(pl.Callback):
    """Logs `grad_norm/<conv name>` every `every` iterations, starting with the first (the
    gradients at initialisation). Other iterations cost one modulo."""

    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError(f"GradNormLogger needs every >= 1, got {every}")
        self.every = every

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if trainer.global_step % self.every or trainer.logger is None:
            return
        norms = grad_norms(getattr(pl_module, "model", pl_module))  # names without "model."
        metrics = {f"{GRAD_PREFIX}{n}": v for n, v in norms.items()}
        trainer.logger.log_metrics(metrics, step=trainer.global_step)
