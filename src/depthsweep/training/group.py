"""A fused group's runs (`fuse=K`, grouped by the sweeper): claimed, skipped or resumed one by one
as `train.train` does, then the unfinished ones trained together as one FusedNet, each writing
its own run directory as if it had trained alone (depthsweep.training.fused_module).

Members resume together only from checkpoints of one iteration: runs at different points (one
already resumed alone, one stopped earlier) train apart, each as `train.train` would.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from depthsweep.nets.models import conv_layers, count_macs, count_params
from depthsweep.runs.provenance import provenance
from depthsweep.runs.rundir import RunRecord
from depthsweep.training.build import build, job_devices, make_module, make_trainer
from depthsweep.training.callbacks import CheckpointOnInterrupt
from depthsweep.training.clocks import RunClock, StepClock
from depthsweep.training.config import resolve_cuda_graph, resolve_precision, trains_on_gpu
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
from depthsweep.training.train import Interrupted, _fit, check_options, preflight

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
    statuses = []
    with contextlib.ExitStack() as held:
        members = []
        for cfg, run_dir in runs:
            check_options(cfg)
            pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the member's own init
            net = preflight(cfg)
            label = f"{cfg.arch_name}-{cfg.depth} seed={cfg.seed}"
            record = RunRecord(run_dir)
            if not held.enter_context(record.claim()):
                log.warning(f"[{label}] running elsewhere (another process holds {run_dir})")
                statuses.append("busy")
                continue
            record.check_config(cfg)
            if record.is_finished():
                log.info(f"[{label}] already finished in {run_dir}: skipped")
                statuses.append("skipped")
                continue
            members.append(Member(cfg, record, net, label))
        by_step: dict[int, list[Member]] = {}
        for m in members:
            by_step.setdefault(_checkpoint_step(m.record), []).append(m)
        for group in by_step.values():
            if len(group) == 1:
                m = group[0]
                statuses.append(_fit(m.cfg, m.net, m.record, m.label))
            else:
                statuses += _fit_fused(group)
    return "failed" if "failed" in statuses else "done"


def _checkpoint_step(record: RunRecord) -> int:
    if not record.checkpoint.is_file():
        return 0
    return int(torch.load(record.checkpoint, map_location="cpu", weights_only=True)["global_step"])


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
    return FusedTrainingWindow([c.schedule.warmup.until_train_error for c in cfgs])


def _fit_fused(members: list[Member]) -> list[str]:
    cfg = members[0].cfg
    cfgs = [m.cfg for m in members]
    data = make_fused_datamodule(cfgs)
    data.prepare_data()
    data.setup("fit")
    module = make_fused_module(cfgs, [m.net for m in members])
    loggers = [MemberLogger(m.record.dir, k) for k, m in enumerate(members)]

    def on_fail(k: int, error: str) -> None:  # the others go on
        m = members[k]
        m.failed = error
        loggers[k].active = False
        m.record.update(status="failed", error=error)
        log.error(f"[{m.label}] FAILED: {error}; the rest of its fused group goes on")

    module.on_fail = on_fail
    paths = [m.record.checkpoint for m in members]
    # Each member's metrics.csv cut back to its checkpoint (one iteration for all: train_group).
    resume = [m.record.resume_point() for m in members][0]
    interrupt = CheckpointOnInterrupt(paths[0])
    clock, first_step = RunClock(), StepClock()
    callbacks = [
        MemberLRMonitor(),
        ModelCheckpoint(
            dirpath=paths[0].parent,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=cfg.checkpoint_every,
        ),
        clock,
        first_step,
        interrupt,
        FusedProgressPrinter([m.label for m in members]),
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
    on_gpu = trains_on_gpu(cfg.trainer)
    shared = {
        "iterations": cfg.schedule.iterations,
        "train_images": data.train_images,
        **data.test_set,
        "precision": resolve_precision(cfg.trainer),
        "cuda_graph": resolve_cuda_graph(cfg),
        **provenance(on_gpu),
    }
    for m in members:
        others = [str(o.record.dir) for o in members if o is not m]
        m.record.start(
            m.cfg,
            {
                "arch": m.cfg.arch_name,
                "depth": m.cfg.depth,
                "seed": m.cfg.seed,
                "params": count_params(m.net),
                "macs": count_macs(m.net),
                **shared,
                "conv_layers": [name for name, _ in conv_layers(m.net)],
                "fused_with": others,  # trained as one network with these runs
            },
        )
    labels = ", ".join(m.label for m in members)
    log.info(
        f"[fused: {labels}] {'resuming' if resume else 'starting'} as one network "
        f"({shared['device']}, {shared['precision']}"
        f"{', CUDA graph' if shared['cuda_graph'] else ''}; {cfg.schedule.iterations:,} iterations)"
    )
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
        if interrupt.signal:
            trainer.save_checkpoint(paths[0])
            raise Interrupted(interrupt.signal)
        if clock.evaluated_at != trainer.global_step:
            trainer.validate(module, datamodule=data, verbose=False)
        trainer.save_checkpoint(paths[0])
    except (KeyboardInterrupt, SystemExit, Interrupted):
        signal = interrupt.signal or "SIGINT"
        step = trainer.global_step
        for m in members:
            if m.failed is None:
                m.record.update(status="interrupted", error=f"{signal} at iteration {step}")
        log.warning(f"[fused: {labels}] interrupted by {signal} at iteration {step}: saved")
        raise Interrupted(signal) from None
    except Exception as e:  # every member still training fails with it
        log.exception(f"[fused: {labels}] FAILED: {type(e).__name__}: {e}")
        for m in members:
            if m.failed is None:
                m.record.update(status="failed", error=f"{type(e).__name__}: {e}")
                m.failed = str(e)
        return ["failed"] * len(members)
    schedules = module.lr_schedulers().schedulers
    first = first_step.seconds()
    for m, sched in zip(members, schedules, strict=True):
        if m.failed is not None:
            continue
        warmup = {"warmup_end": sched.warmup_end, "warmup_end_reason": sched.warmup_end_reason}
        if sched.warming_up:
            warmup = {"warmup_end": trainer.global_step, "warmup_end_reason": "run ended"}
        m.record.update(
            status="done",
            error=None,
            wall_time_s=round(clock.time_elapsed(), 2),
            first_step_s=None if first is None else round(first, 3),
            **warmup,
        )
    log.info(f"[fused: {labels}] done in {clock.time_elapsed():.0f}s")
    return ["failed" if m.failed else "done" for m in members]


class FusedProgressPrinter(pl.Callback):
    """One line per member and evaluation, as an unfused run prints its own."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        for k, label in enumerate(self.labels):
            if not module.active[k]:
                continue
            errors = [
                f"{name} err {float(m[member_key(f'{name}_error', k)]):.2f}%"
                for name in ("train", "test", "val")
                if member_key(f"{name}_error", k) in m
            ]
            log.info(
                f"[{label}] iter {trainer.global_step}/{trainer.max_steps} "
                f"epoch {int(m['epoch'])}: {', '.join(errors)} ({float(m['wall_time']):.0f}s)"
            )
