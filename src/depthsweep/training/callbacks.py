"""Lightning callbacks of a run: progress lines with the time left (and log lines kept off
Lightning's bar where it is on), a checkpoint on Ctrl-C or SIGTERM, the inputs' normalisation in
every checkpoint, gradient norms per conv layer."""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn

from depthsweep.nets.models import conv_layers
from depthsweep.runs.rundir import GRAD_PREFIX

log = logging.getLogger(__name__)
ERRORS = ("train_error", "test_error", "val_error")


def duration(seconds: float) -> str:
    """A duration as people read it: 45s, 12m05s, 3h20m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class ProgressPrinter(pl.Callback):
    """Where the run is, how it is doing and about how long it has left: a line at each
    evaluation and, while training, one every `every` seconds (0: at evaluations only). The time
    left is the iterations left at the rate measured since this process started training, so it
    counts evaluations and checkpoints as they come. These lines are the progress display:
    Lightning's bar is off by default (conf/trainer/default.yaml), and with it on, every log line
    goes through it (BarSafeLogging), so the two never share a line."""

    def __init__(
        self, label: str, every: float = 0, clock: Callable[[], float] | None = None
    ) -> None:
        self.label, self.every = label, every
        self.clock = clock  # seconds of training so far (RunClock's, over resumes), if given
        self._start: tuple[float, int] | None = None  # (clock, iteration) when training started
        self._last_line = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.monotonic(), trainer.global_step
        self._last_line = time.monotonic()

    def left(self, step: int, total: int) -> str | None:
        """'about 3h20m left' at the rate measured so far; None before a step was timed."""
        if self._start is None or step <= self._start[1] or step >= total:
            return None
        t0, s0 = self._start
        rate = (step - s0) / (time.monotonic() - t0)  # iterations per second
        return f"about {duration((total - step) / rate)} left"

    def line(self, trainer: pl.Trainer, what: str) -> None:
        step, total = trainer.global_step, trainer.max_steps
        elapsed = None if self.clock is None else self.clock()
        times = [duration(elapsed) if elapsed is not None else None, self.left(step, total)]
        when = "; ".join(t for t in times if t)
        log.info(
            f"[{self.label}] iter {step:,}/{total:,} ({100 * step / total:.0f}%) {what}"
            + (f" ({when})" if when else "")
        )
        self._last_line = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.is_last_batch:  # the epoch's evaluation, if any, says it in a moment
            return
        if self.every and time.monotonic() - self._last_line >= self.every:
            m = trainer.callback_metrics
            train = f": train err {float(m['train_error']):.2f}%" if "train_error" in m else ""
            self.line(trainer, f"epoch {trainer.current_epoch}{train}")

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        errors = [f"{k.replace('_error', '')} err {float(m[k]):.2f}%" for k in ERRORS if k in m]
        self.line(trainer, f"epoch {int(m['epoch'])}: {', '.join(errors)}")


class BarSafeLogging(pl.Callback):
    """With Lightning's progress bar on (trainer.enable_progress_bar=true), the console's log
    lines are printed through the bar (its public `print`) while it is drawn, so that a line is
    never glued onto the bar. The handlers that write to a terminal stream are redirected for the
    fit and put back after it; files (run.log) are written as always."""

    def __init__(self) -> None:
        self._redirected: list[tuple[logging.StreamHandler, object]] = []

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        bar = trainer.progress_bar_callback
        if bar is None:
            return
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:  # the console (a FileHandler subclasses it)
                self._redirected.append((handler, handler.setStream(_ThroughBar(bar))))

    def _restore(self) -> None:
        for handler, stream in self._redirected:
            handler.setStream(stream)
        self._redirected = []

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, module, exception: BaseException) -> None:
        self._restore()


class _ThroughBar:
    """A text stream whose complete lines go to a Lightning progress bar's `print`."""

    def __init__(self, bar) -> None:
        self.bar, self.pending = bar, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.bar.print(line)
        return len(text)

    def flush(self) -> None:
        pass


class Interrupted(Exception):
    """The run was stopped by a signal; its checkpoint and run.json say where."""

    def __init__(self, signal: str) -> None:
        super().__init__(signal)
        self.signal = signal


class Terminated(BaseException):
    """SIGTERM outside training, taken by CheckpointOnInterrupt.guard. A BaseException, as
    KeyboardInterrupt is, so that no `except Exception` mistakes it for a failure."""


class TrainedThisFit(pl.Callback):
    """Whether this fit trained a step, for the callbacks that checkpoint when it ends: a
    checkpoint written at the end of a fit that trained none (Ctrl-C before its first step) lies
    outside any step and resumes an iteration off (Lightning's restart counts one more step:
    measured at iteration 0), and the checkpoint the fit resumed from, if any, holds that step
    already. So none is written there."""

    started_at = 0  # the iteration this fit started from

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        super().on_train_start(trainer, module)
        self.started_at = trainer.global_step

    def trained(self, trainer: pl.Trainer) -> bool:
        return trainer.global_step > self.started_at


class CheckpointOnInterrupt(TrainedThisFit):
    """Ctrl-C (SIGINT) or SIGTERM (what SLURM sends on preemption or at its time limit) stops the
    run at a step boundary with a checkpoint of that step, so that the next invocation resumes
    there with every logged step logged once. Lightning turns SIGTERM into a SIGTERMException at
    the next boundary (saved here); Ctrl-C, which Python raises wherever the code is, is caught
    while training, saved at the end of the step it came in (of the next step where it came
    during an evaluation; after the last step, after fit returns: `save_if_trained`), and raised
    as Interrupted when the next step starts, before any callback logs for it; a second
    Ctrl-C stops at once. `signal` says which one stopped the run, `saved` whether a checkpoint
    was written for it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saved = False
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
        super().on_train_start(trainer, module)
        self._guarding = False  # Lightning's handler is installed now (it calls ours too)

        def stop_after_this_step(signum, frame) -> None:
            if self.signal:  # asked twice: now
                raise KeyboardInterrupt
            self.signal = "SIGINT"  # the step's end saves, the next one's start stops

        self._previous = signal.signal(signal.SIGINT, stop_after_this_step)

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        # Saved here, where the periodic checkpoints are, mid-epoch: the state that Lightning's
        # restart and TrainingWindow resume from (one saved once a stopped fit had ended its
        # epoch resumed an epoch ahead of its step, every evaluation after it two iterations
        # early: measured 18, 38, 58 instead of 20, 40, 60 at two batches an epoch).
        if self.signal and not self.saved:
            self.save_if_trained(trainer)

    def on_train_batch_start(self, trainer: pl.Trainer, module, batch, batch_idx) -> None:
        # Stopped here, once the saved step has written its rows (and ended its epoch, where it
        # was the last), not by should_stop: Lightning ends the epoch of a stopped fit, logging
        # rows an unbroken run has not (a test evaluation, a partial window, the epoch's mean
        # so far) and leaving the resumed epoch's mean to the steps after the resume. Before
        # the first step there is nothing to save.
        if self.signal and (self.saved or not self.trained(trainer)):
            raise Interrupted(self.signal)

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
            self.save_if_trained(trainer)

    def save_if_trained(self, trainer: pl.Trainer) -> None:
        """The checkpoint of the step training stopped after, where this fit trained one and it
        was not saved at that step already."""
        if self.trained(trainer) and not self.saved:
            trainer.save_checkpoint(self.path)
            self.saved = True


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint writing only checkpoints/last.ckpt, every `every_n_train_steps`
    iterations, and not when training ends: a run's last checkpoint is end_fit's (train.py), after
    its final evaluation, and an interrupted one's CheckpointOnInterrupt's, at its step. At the
    end of a fit cut short, ModelCheckpoint's own would overwrite that with a state Lightning
    counts an epoch ahead, and at the end of one that trained no step it would lie outside any
    step (TrainedThisFit)."""

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        pass


def last_checkpoint(path: Path, every: int) -> LastCheckpoint:
    """A LastCheckpoint writing `path` (checkpoints/last.ckpt) every `every` iterations."""
    return LastCheckpoint(
        dirpath=path.parent, save_top_k=0, save_last=True, every_n_train_steps=every
    )


class RecordData(pl.Callback):
    """Every checkpoint records what its net was trained and tested on: the inputs' normalisation
    as training applied it, x -> (x - shift) / scale with the data module's tensors (the mean
    image under per_pixel_mean), so that depthsweep.apps.zoo can feed the net from the checkpoint
    alone; and the test set (`test_images`, `test_md5`), so that a resume compares it even where
    run.json has lost it (train.check_test_set)."""

    def on_save_checkpoint(self, trainer: pl.Trainer, module, checkpoint: dict) -> None:
        data = trainer.datamodule
        if data is not None:
            checkpoint["normalization"] = {"shift": data.shift.cpu(), "scale": data.scale.cpu()}
            checkpoint["test_set"] = {k: data.test_set.get(k) for k in ("test_images", "test_md5")}


def grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of each conv weight's gradient, input to output; convs without a gradient are left
    out. One host transfer for all layers."""
    named = [(n, m.weight.grad) for n, m in conv_layers(model) if m.weight.grad is not None]
    if not named:
        return {}
    norms = torch.stack([torch.linalg.vector_norm(g) for _, g in named]).tolist()
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
