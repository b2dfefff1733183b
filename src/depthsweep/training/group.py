"""A fused group's runs (`fuse=K`, grouped by the sweeper): claimed, skipped or resumed one by one
as `train.train` does, then the unfinished ones trained together as one FusedNet, each writing
its own run directory as if it had trained alone (depthsweep.training.fused_module).

Members resume together only from checkpoints of one iteration: runs at different points (one
already resumed alone, one stopped earlier) train apart, each as `train.train` would.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from torch import nn

from depthsweep.errors import UserError
from depthsweep.runs.rundir import RunRecord
from depthsweep.training.build import build, job_devices, make_module, make_trainer
from depthsweep.training.callbacks import (
    BarSafeLogging,
    CheckpointOnInterrupt,
    ProgressPrinter,
    Terminated,
    last_checkpoint,
)
from depthsweep.training.clocks import RunClock, StepClock
from depthsweep.training.config import pin_data_root, run_label, use_threads
from depthsweep.training.console import quiet_libraries
from depthsweep.training.fused import FusedNet
from depthsweep.training.fused_data import FusedData
from depthsweep.training.fused_module import (
    FusedClassifier,
    FusedGraphedClassifier,
    FusedTrainingWindow,
    GroupCheckpointIO,
    MemberLogger,
    MemberLRMonitor,
    member_key,
)
from depthsweep.training.graphed import GraphedClassifier
from depthsweep.training.train import (
    Interrupted,
    check_options,
    check_test_set,
    end_fit,
    fit_claimed,
    how,
    kept_on_interrupt,
    preflight,
    record_done,
    record_failure,
    run_identity,
    run_setting,
    start_info,
)

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One run of a group: its config, record, net (initialised with its seed) and label."""

    cfg: DictConfig
    record: RunRecord
    net: nn.Module
    label: str
    failed: str | None = None


def train_group(runs: list[tuple[DictConfig, Path]]) -> str:
    """Train a fused group's runs (config, run directory). Returns 'failed' if any failed, else
    'done'; raises UserError (setup) and Interrupted (a signal) as `train.train` does."""
    quiet_libraries()
    for cfg, _ in runs:
        check_options(cfg)  # every member's options, before anything else reads them
    use_threads(runs[0][0])
    statuses = []
    with contextlib.ExitStack() as held:
        members = []
        for cfg, run_dir in runs:
            pin_data_root(cfg)
            pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the member's own init
            net = preflight(cfg)
            label = run_label(cfg)
            record = RunRecord(run_dir)
            not_ours = held.enter_context(record.claimed(cfg, label))
            if not_ours:
                statuses.append(not_ours)
            else:
                members.append(Member(cfg, record, net, label))
        by_step: dict[int, list[Member]] = {}
        for m in members:
            by_step.setdefault(_checkpoint_step(m.record), []).append(m)
        for group in by_step.values():
            if len(group) == 1:
                m = group[0]
                statuses.append(fit_claimed(m.cfg, m.net, m.record, m.label))
            else:
                statuses += _fit_fused(group)
    return "failed" if "failed" in statuses else "done"


def _checkpoint_step(record: RunRecord) -> int:
    saved = record.saved()
    return 0 if saved is None else int(saved["global_step"])


def make_fused_datamodule(cfgs: list[DictConfig]) -> FusedData:
    """The group's data: `cfgs[0]`'s data config, each member's own seed."""
    return build(
        cfgs[0].data,
        "data",
        _target_="depthsweep.training.fused_data.FusedData",
        seeds=[c.seed for c in cfgs],
        _convert_="all",
    )


def make_fused_module(cfgs: list[DictConfig], nets: list[nn.Module]) -> FusedClassifier:
    """The group's module from its members' configs and nets (each initialised with its seed):
    graphed where an unfused member's would be."""
    modules = [make_module(c, n) for c, n in zip(cfgs, nets, strict=True)]
    graphed = isinstance(modules[0], GraphedClassifier)
    cls = FusedGraphedClassifier if graphed else FusedClassifier
    return cls(FusedNet(nets), modules)  # the members' modules: factories, hyperparameters


def fused_window(cfgs: list[DictConfig]) -> FusedTrainingWindow:
    thresholds = [c.schedule.warmup.until_train_error for c in cfgs]
    return FusedTrainingWindow(thresholds, [run_label(c) for c in cfgs])


def _fit_fused(members: list[Member]) -> list[str]:
    """Train the claimed, unfinished `members` as one FusedNet, each recorded as
    `train.fit_claimed` records a run: its outcome in its run.json, a failure said at once in one
    line."""
    try:
        return _train_fused(members)
    except (UserError, Interrupted):
        raise
    except Exception as e:  # a fault no check foresaw: every member still training fails
        for m in members:
            if not m.failed:
                record_failure(m.record, m.label, e, run_identity(m.cfg))
        return ["failed"] * len(members)


def _train_fused(members: list[Member]) -> list[str]:
    cfg = members[0].cfg
    cfgs = [m.cfg for m in members]
    data = make_fused_datamodule(cfgs)
    data.prepare_data()
    data.setup("fit")
    module = make_fused_module(cfgs, [m.net for m in members])
    loggers = [
        MemberLogger(m.record.dir, k, module.member_hparams[k]) for k, m in enumerate(members)
    ]

    def on_fail(k: int, error: str) -> None:  # the others go on
        m = members[k]
        m.failed = error
        loggers[k].active = False
        m.record.update(status="failed", error=error)
        rest = "goes on" if any(o.failed is None for o in members) else "has stopped: all failed"
        log.error(f"[{m.label}] FAILED: {error}; the rest of its fused group {rest}")

    module.on_fail = on_fail
    for m in members:
        check_test_set(m.record, data.test_set)
    paths = [m.record.checkpoint for m in members]
    # Each member's metrics.csv cut back to its checkpoint (one iteration for all: train_group).
    resume = [m.record.resume_point() for m in members][0]
    interrupt = CheckpointOnInterrupt(paths[0])
    clock, first_step = RunClock(), StepClock()
    if resume is not None and all(m.record.evaluated_at == m.record.resumed_at for m in members):
        clock.evaluated_at = members[0].record.resumed_at  # its evaluation is logged already
    labels = [m.label for m in members]
    callbacks = [
        interrupt,  # first: it stops a step before the lr monitor logs that step's rate
        MemberLRMonitor(),
        last_checkpoint(paths[0], cfg.checkpoint_every),  # every member's, through the IO
        clock,
        first_step,
        FusedProgressPrinter(labels, cfg.progress_every, clock.time_elapsed),
        BarSafeLogging(),
    ]
    trainer = make_trainer(
        cfg,
        callbacks,
        window=fused_window(cfgs),
        logger=loggers,
        plugins=[GroupCheckpointIO(module, paths, data)],
        default_root_dir=str(members[0].record.dir),
        **job_devices(cfg),
    )
    shared = run_setting(cfg, data)
    group = f"[fused: {', '.join(labels)}]"
    where = f"resuming at iteration {members[0].record.resumed_at}" if resume else "starting"
    # From `running` on, SIGTERM leaves a record of itself (train.fit_claimed's guard).
    with interrupt.guard():
        try:
            for m in members:
                others = [str(o.record.dir) for o in members if o is not m]
                m.record.start(m.cfg, start_info(m.cfg, m.net, shared) | {"fused_with": others})
            iterations = f"{cfg.schedule.iterations:,} iterations"
            log.info(f"{group} {where} as one network ({how(shared)}; {iterations})")
            trainer.fit(module, datamodule=data, ckpt_path=resume)
            end_fit(trainer, module, data, interrupt, clock, paths[0])  # every member's (the IO)
        except (KeyboardInterrupt, SystemExit, Interrupted, Terminated):
            signal = interrupt.signal or "SIGINT"
            step = trainer.global_step
            for m in members:
                if m.failed is None and not m.record.is_finished():
                    m.record.update(status="interrupted", error=f"{signal} at iteration {step}")
            kept = kept_on_interrupt(interrupt, paths[0], len(members))
            log.warning(f"{group} interrupted by {signal} at iteration {step}: {kept}")
            raise Interrupted(signal) from None
        except Exception as e:  # every member still training fails with it, said in one line
            for m in members:  # (after the last member's own failure: FusedClassifier.fail)
                if not m.failed:
                    record_failure(m.record, m.label, e)
            return ["failed"] * len(members)
        schedules = module.lr_schedulers().schedulers
        for m, sched in zip(members, schedules, strict=True):
            if m.failed is None:
                record_done(m.record, m.label, sched, trainer, clock, first_step.seconds())
    return ["failed" if m.failed else "done" for m in members]


class FusedProgressPrinter(ProgressPrinter):
    """ProgressPrinter's lines, one per member still training, from its `name@k` metrics."""

    def __init__(self, labels: list[str], every: float = 0, clock=None) -> None:
        super().__init__(labels[0], every, clock)
        self.labels = labels

    def _each(self, trainer: pl.Trainer, module, what) -> None:
        m = trainer.callback_metrics
        for k, label in enumerate(self.labels):
            if module.active[k]:
                self.label = label
                errors = [
                    f"{name} err {float(m[member_key(f'{name}_error', k)]):.2f}%"
                    for name in what
                    if member_key(f"{name}_error", k) in m
                ]
                epoch = int(m["epoch"]) if "epoch" in m else trainer.current_epoch
                self.line(trainer, f"epoch {epoch}" + (f": {', '.join(errors)}" if errors else ""))

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.is_last_batch:  # the epoch's evaluation, if any, says it in a moment
            return
        if self.every and time.monotonic() - self._last_line >= self.every:
            self._each(trainer, module, ("train",))

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._each(trainer, module, ("train", "test", "val"))
