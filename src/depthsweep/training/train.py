"""One training run from a composed config: check, build, claim, skip or resume, fit, record.

Setup errors (bad data, options or directory: `errors.UserError`) are raised before anything is
written. Once run.json says `running`, every outcome is recorded there: `done`, `failed` (with the
reason) or `interrupted` (Ctrl-C or SIGTERM, with a checkpoint at the current step).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from torch import nn

from depthsweep.errors import OptionError
from depthsweep.nets.models import conv_layers, count_macs, count_params
from depthsweep.runs.provenance import provenance
from depthsweep.runs.rundir import RunRecord
from depthsweep.training.build import (
    build_net,
    job_devices,
    make_datamodule,
    make_extras,
    make_module,
    make_trainer,
)
from depthsweep.training.callbacks import CheckpointOnInterrupt, GradNormLogger, ProgressPrinter
from depthsweep.training.checkpoints import CheckpointWriteError
from depthsweep.training.clocks import RunClock, StepClock
from depthsweep.training.config import resolve_cuda_graph, resolve_precision, trains_on_gpu
from depthsweep.training.console import quiet_libraries
from depthsweep.training.metrics_log import AppendingCSVLogger

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """The run was stopped by a signal; its checkpoint and run.json say where."""

    def __init__(self, signal: str) -> None:
        super().__init__(signal)
        self.signal = signal


def check_options(cfg: DictConfig) -> None:
    """The top-level options a run needs, before anything is built."""
    for name, value, minimum, maximum in [
        ("seed", cfg.seed, 0, 2**32 - 1),  # what numpy's generator, seeded with it, accepts
        ("checkpoint_every", cfg.checkpoint_every, 1, None),
        ("schedule.iterations", cfg.schedule.iterations, 1, None),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise OptionError(f"{name}={value!r}: must be an integer >= {minimum}")
        if maximum is not None and value > maximum:
            raise OptionError(f"{name}={value!r}: must be at most {maximum:,}")


def preflight(cfg: DictConfig) -> nn.Module:
    """What can be checked of a run's options without its data (a UserError where one is
    invalid): the top-level options, the data module's, and the net (depth, classes), which is
    returned. A sweep runs this on every job before the first one trains."""
    check_options(cfg)
    make_datamodule(cfg)  # its options; nothing is read yet
    return build_net(cfg)


def train(cfg: DictConfig, run_dir: str | Path) -> str:
    """Train one run into `run_dir`. Returns 'done', 'skipped' (finished before), 'busy' (another
    process holds it) or 'failed' (recorded in run.json, so the rest of a sweep goes on); raises
    UserError for a setup error and Interrupted after a signal."""
    quiet_libraries()
    run_dir = Path(run_dir)
    check_options(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model: its init uses it
    model = preflight(cfg)  # an invalid depth or class fails here, before anything else
    label = f"{cfg.arch_name}-{cfg.depth} seed={cfg.seed}"
    record = RunRecord(run_dir)
    with record.claim() as held:
        if not held:
            log.warning(f"[{label}] running elsewhere (another process holds {run_dir}): skipped")
            return "busy"
        record.check_config(cfg)
        if record.is_finished():
            log.info(f"[{label}] already finished in {run_dir}: skipped")
            return "skipped"
        return _fit(cfg, model, record, label)


def _fit(cfg: DictConfig, model, record: RunRecord, label: str) -> str:
    datamodule = make_datamodule(cfg)
    datamodule.prepare_data()  # a missing or malformed dataset is a setup error; reading it
    datamodule.setup("fit")  # here also says what the test set is
    on_gpu = trains_on_gpu(cfg.trainer)
    info = {
        "arch": cfg.arch_name,
        "depth": cfg.depth,
        "seed": cfg.seed,
        "params": count_params(model),
        "macs": count_macs(model),
        "iterations": cfg.schedule.iterations,
        "train_images": datamodule.train_images,
        **datamodule.test_set,
        "precision": resolve_precision(cfg.trainer),  # as resolved here from "auto"
        "cuda_graph": resolve_cuda_graph(cfg),
        **provenance(on_gpu),
        # The order of the grad_norm/* columns' layers, which metrics.csv sorts by name.
        "conv_layers": [name for name, _ in conv_layers(model)],
    }
    module = make_module(cfg, model)
    resume = record.resume_point()
    interrupt = CheckpointOnInterrupt(record.checkpoint)
    clock, first_step = RunClock(), StepClock()
    callbacks = [
        LearningRateMonitor(logging_interval="step"),
        ModelCheckpoint(
            dirpath=record.checkpoint.parent,
            save_top_k=0,
            save_last=True,
            every_n_train_steps=cfg.checkpoint_every,
        ),
        clock,
        first_step,
        interrupt,
        ProgressPrinter(label),
    ]
    if cfg.diagnostics.grad_norm_every:  # off by default: no callback, no cost
        callbacks.append(GradNormLogger(cfg.diagnostics.grad_norm_every))
    loggers, extra_callbacks = make_extras(cfg, str(record.dir))
    trainer = make_trainer(
        cfg,
        callbacks + extra_callbacks,
        logger=[AppendingCSVLogger(record.dir), *loggers],  # the CSV first: analysis reads it
        default_root_dir=str(record.dir),
        **job_devices(cfg),
    )
    record.start(cfg, info)
    how = f"{info['device']}, {info['precision']}{', CUDA graph' if info['cuda_graph'] else ''}"
    log.info(
        f"[{label}] {'resuming from ' + str(resume) if resume else 'starting'} in {record.dir} "
        f"({how}; {cfg.schedule.iterations:,} iterations)"
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        if interrupt.signal:  # Ctrl-C: fit stopped after the step it was in
            trainer.save_checkpoint(record.checkpoint)
            raise Interrupted(interrupt.signal)
        if clock.evaluated_at != trainer.global_step:  # the run ended between evaluations
            trainer.validate(module, datamodule=datamodule, verbose=False)
        trainer.save_checkpoint(record.checkpoint)
    except (KeyboardInterrupt, SystemExit, Interrupted):
        signal = interrupt.signal or "SIGINT"
        step = trainer.global_step
        record.update(status="interrupted", error=f"{signal} at iteration {step}")
        log.warning(f"[{label}] interrupted by {signal} at iteration {step}: checkpoint saved")
        raise Interrupted(signal) from None
    except Exception as e:  # recorded, not swallowed: run.json and the summary show it
        if isinstance(e, CheckpointWriteError):  # says what happened and what is kept
            log.error(f"[{label}] FAILED: {e}")
        else:
            log.exception(f"[{label}] FAILED: {type(e).__name__}: {e}")
        try:
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
        except OSError as w:  # a full disk: the log line above is all there is
            log.error(f"[{label}] could not record the failure in {record.json}: {w}")
        return "failed"
    first = first_step.seconds()  # None if a resumed run had no step left to take
    sched = module.lr_schedulers()
    # warmup_end: the first iteration at the scheduled rate; null where there was no warm-up
    warmup = {"warmup_end": sched.warmup_end, "warmup_end_reason": sched.warmup_end_reason}
    if sched.warming_up:  # the run ended inside its warm-up
        warmup = {"warmup_end": trainer.global_step, "warmup_end_reason": "run ended"}
    record.update(
        status="done",
        error=None,
        wall_time_s=round(clock.time_elapsed(), 2),
        first_step_s=None if first is None else round(first, 3),
        **warmup,
    )
    startup = "" if first is None else f" (first step, with any graph capture: {first:.1f}s)"
    log.info(f"[{label}] done in {clock.time_elapsed():.0f}s{startup}")
    return "done"
