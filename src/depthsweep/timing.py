"""Timing the real training path: `steps` steps of what `experiments.run` trains, after a warm-up,
with the first step (graph capture, autotuning) timed apart."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import Callback

from depthsweep.build import build_model, make_datamodule, make_module, make_trainer
from depthsweep.console import quiet_libraries
from depthsweep.module import synchronize


@dataclass
class Timing:
    t0: float  # perf_counter at the end of the last warm-up step
    t1: float  # ... and of the last timed step
    steps: int
    first_step_s: float | None = None  # the first step alone: compilation, capture, autotuning

    @property
    def ms_per_step(self) -> float:
        return (self.t1 - self.t0) * 1000 / self.steps


class StepTimer(Callback):
    """Clock readings at the end of warm-up and of the last timed step. A barrier, if given, lines
    up concurrent processes so their timed windows overlap."""

    def __init__(self, warmup: int, steps: int, barrier: threading.Barrier | None = None) -> None:
        self.warmup, self.steps, self.barrier = warmup, steps, barrier
        self.done, self.t0, self.t1 = 0, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        self.done += 1
        if self.done == self.warmup:
            synchronize(module.device)
            if self.barrier is not None:
                self.barrier.wait(timeout=600)
            self.t0 = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            synchronize(module.device)
            self.t1 = time.perf_counter()


def time_harness(
    cfg: DictConfig, warmup: int, steps: int, barrier: threading.Barrier | None = None
) -> Timing:
    """`steps` steps of the real training path, after `warmup` ones; no evaluation, no files."""
    pl.seed_everything(cfg.seed)
    module = make_module(cfg, build_model(cfg.arch, cfg.depth))
    timer = StepTimer(warmup, steps, barrier)
    # max_steps, not schedule.iterations: the module keeps the real run's LR schedule and metrics
    # window (one host sync per window), so the timed steps are a real run's steps.
    trainer = make_trainer(
        cfg,
        [timer],
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=make_datamodule(cfg))
    return Timing(timer.t0, timer.t1, steps, module.first_step_s)


def quiet_lightning() -> None:
    """Besides the noise every run drops, Lightning's start-up banners (GPU available, ...), which
    would bury the bench's table."""
    quiet_libraries()
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
