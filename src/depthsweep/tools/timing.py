"""Timing the real training path: `steps` steps of what `experiments.run` trains, after a warm-up,
with the first step (graph capture, autotuning) timed apart, on training's own step clock."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import pytorch_lightning as pl
from omegaconf import DictConfig

from depthsweep.training.build import build_net, make_datamodule, make_module, make_trainer
from depthsweep.training.clocks import StepClock
from depthsweep.training.console import quiet_libraries
from depthsweep.training.group import fused_window, make_fused_datamodule, make_fused_module


@dataclass
class Timing:
    t0: float  # clock reading at the end of the last warm-up step
    t1: float  # ... and of the last timed step
    steps: int
    first_step_s: float | None = None  # the first step alone: compilation, capture, autotuning

    @property
    def ms_per_step(self) -> float:
        return (self.t1 - self.t0) * 1000 / self.steps

    @classmethod
    def of(cls, clock: StepClock, warmup: int, steps: int) -> Timing:
        """The `steps` timed after `warmup` steps by `clock`, which read the time after steps 1,
        `warmup` and `warmup + steps`."""
        return cls(clock.times[warmup], clock.times[warmup + steps], steps, clock.seconds(0, 1))


def time_harness(
    cfg: DictConfig,
    warmup: int,
    steps: int,
    barrier: threading.Barrier | None = None,
    members: int = 1,
) -> Timing:
    """`steps` steps of the real training path, after `warmup` ones; no evaluation, no files. A
    barrier, if given, lines up concurrent processes so that their timed steps overlap. With
    `members` > 1, a fused group of that many runs of `cfg` (seeds cfg.seed, cfg.seed + 1, ...)
    steps together: a step is all members' step."""
    if members > 1:
        cfgs = [cfg.copy() for _ in range(members)]
        nets = []
        for i, c in enumerate(cfgs):
            c.seed = cfg.seed + i
            pl.seed_everything(c.seed)
            nets.append(build_net(c))
        module, data = make_fused_module(cfgs, nets), make_fused_datamodule(cfgs)
        window = fused_window(cfgs)
    else:
        pl.seed_everything(cfg.seed)
        module, data = make_module(cfg, build_net(cfg)), make_datamodule(cfg)
        window = None
    clock = StepClock(at=(1, warmup, warmup + steps), barrier=barrier, barrier_at=warmup)
    # max_steps, not schedule.iterations: the module keeps the real run's LR schedule and metrics
    # window (one host sync per window), so the timed steps are a real run's steps.
    trainer = make_trainer(
        cfg,
        [clock],
        window=window,
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(module, datamodule=data)
    return Timing.of(clock, warmup, steps)


def quiet_lightning() -> None:
    """Besides the noise every run drops, Lightning's start-up banners (GPU available, ...), which
    would bury the bench's table."""
    quiet_libraries()
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
