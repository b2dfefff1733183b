"""One training run from a composed config: check, build, claim, skip or resume, fit, record.

Setup errors (bad data, options or directory: `errors.UserError`) are raised before anything is
written. Once run.json says `running`, every outcome is recorded there: `done`, `failed` (with the
reason) or `interrupted` (Ctrl-C or SIGTERM, with a checkpoint at the current step).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor
from torch import nn

from depthsweep.errors import (
    OptionError,
    UserError,
    check_count,
    check_flag,
    check_number,
    full_error,
)
from depthsweep.nets.models import conv_layers, count_macs, count_params
from depthsweep.runs.provenance import provenance
from depthsweep.runs.rundir import ERROR_COLUMNS, RunRecord
from depthsweep.training.build import (
    build_net,
    input_shape,
    job_devices,
    make_datamodule,
    make_extras,
    make_module,
    make_trainer,
    option_hint,
)
from depthsweep.training.callbacks import (
    BarSafeLogging,
    CheckpointOnInterrupt,
    GradNormLogger,
    Interrupted,
    ProgressPrinter,
    Terminated,
    last_checkpoint,
)
from depthsweep.training.checkpoints import CheckpointWriteError
from depthsweep.training.clocks import RunClock, StepClock
from depthsweep.training.config import (
    FUSE_WHERE_AVX512,
    check_precision,
    job_overrides,
    pin_data_root,
    resolve_channels_last,
    resolve_cuda_graph,
    resolve_fuse,
    resolve_precision,
    run_label,
    trains_on_gpu,
    use_threads,
)
from depthsweep.training.console import quiet_libraries
from depthsweep.training.metrics_log import AppendingCSVLogger
from depthsweep.training.overrides import check_added_keys
from depthsweep.training.schedule import PaperLR

log = logging.getLogger(__name__)


class TestSetChangedError(UserError):
    """A run would resume on another test set than the one it was tested on so far."""


# The yes/no options (true or false, not text: Hydra passes `no` as a string, which reads as true)
FLAGS = ("data.download", "schedule.lr_scales_with_batch", "arch.zero_init_residual", "arch.reduce")
# ... and Lightning's, where null is its own default
TRAINER_FLAGS = ("trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.benchmark")
ABSENT = object()  # an arch may lack its neighbour's options


def check_options(cfg: DictConfig) -> None:
    """The top-level options a run needs, before anything is built."""
    check_count("seed", cfg.seed, 0, 2**32 - 1)  # what numpy's generator, seeded with it, accepts
    check_count("checkpoint_every", cfg.checkpoint_every, 1)
    check_count("schedule.iterations", cfg.schedule.iterations, 1)
    check_count("trainer.log_every_n_steps", cfg.trainer.log_every_n_steps, 1)
    check_count("threads", cfg.get("threads"), 1, none="null for torch's default")
    if isinstance(cfg.fuse, str) and not FUSE_WHERE_AVX512.fullmatch(cfg.fuse):
        raise OptionError(f"fuse={cfg.fuse!r}: must be an integer >= 1, or K-where-avx512")
    check_count("fuse", resolve_fuse(cfg), 1)
    check_count("diagnostics.grad_norm_every", cfg.diagnostics.grad_norm_every, 0)
    every = cfg.progress_every
    if isinstance(every, bool) or not isinstance(every, int | float) or not 0 <= every < math.inf:
        raise OptionError(f"progress_every={every!r}: seconds >= 0 (0: at evaluations only)")
    metric = cfg.optimized_metric
    if metric is not None and metric not in ERROR_COLUMNS:
        raise OptionError(f"optimized_metric={metric!r}: null or one of {', '.join(ERROR_COLUMNS)}")
    if cfg.cuda_graph not in ("auto", True, False):
        raise OptionError(f"cuda_graph={cfg.cuda_graph!r}: must be auto, true or false")
    if cfg.channels_last not in ("auto", True, False):
        raise OptionError(f"channels_last={cfg.channels_last!r}: must be auto, true or false")
    precision = resolve_precision(cfg.trainer)
    check_precision(precision, f"trainer.precision={precision}")
    for key in (*FLAGS, *TRAINER_FLAGS):
        value = OmegaConf.select(cfg, key, default=ABSENT)
        if value is not ABSENT and not (value is None and key in TRAINER_FLAGS):
            check_flag(key, value)
    check_schedule_numbers(cfg.schedule)


def check_schedule_numbers(schedule: DictConfig) -> None:
    """The schedule's numbers, every run's: the warm-up's are read only where it applies (from
    its depth on), so a bad one would otherwise fail the deep runs of a sweep mid-training."""
    optimizer = schedule.optimizer
    for key in ("lr", "momentum", "weight_decay"):  # SGD's, Adam's ...; an optimizer may lack them
        if key in optimizer:
            check_number(f"schedule.optimizer.{key}", optimizer[key], 0, above_low=key == "lr")
    warmup = schedule.warmup
    check_count("schedule.warmup.from_depth", warmup.from_depth, 0, none="null: never")
    check_number("schedule.warmup.lr", warmup.lr, 0, above_low=True)
    # above 100 (or any error) it ends at the first window, below 0 only at max_fraction
    check_number("schedule.warmup.until_train_error", warmup.until_train_error, -math.inf)
    check_number("schedule.warmup.max_fraction", warmup.max_fraction, 0, 1)


def preflight(
    cfg: DictConfig, overrides: Sequence[str] = (), config_name: str | None = None
) -> nn.Module:
    """What can be checked of a run's options without its data (a UserError where one is
    invalid): the top-level options, keys added with + or ++ that nothing reads (`overrides`,
    the job's command line; `config_name`, its config's, where Hydra sets no HydraConfig: the
    sweeper), the data module's, the trainer's (Lightning's own checks: a precision,
    an accelerator), the net (depth, classes), which is returned, its optimizer and lr schedule
    (partial nodes, called only once training starts) and the Lightning module's. A sweep runs
    this on every job before the first one trains."""
    check_options(cfg)
    check_added_keys(cfg, overrides, config_name)
    make_datamodule(cfg)  # its options; nothing is read yet
    quiet_libraries()  # a Trainer says which devices it sees
    make_trainer(cfg, [], logger=False, enable_checkpointing=False)  # nothing written yet
    try:
        net = build_net(cfg)
    except TypeError as e:  # an option the arch's constructor does not take (+arch.foo=1)
        raise OptionError(f"arch: {e}{option_hint(cfg.arch, 'arch', e)}") from None
    module = make_module(cfg, net)  # +module.foo=1; cuda_graph with fp16
    try:  # partial nodes, called only once training starts: +schedule.optimizer.foo=1, lr=abc
        module.scheduler(module.optimizer(net.parameters()))
    except (TypeError, ValueError) as e:
        hints = (
            option_hint(cfg.schedule[n], f"schedule.{n}", e) for n in ("optimizer", "scheduler")
        )
        raise OptionError(f"schedule: {e}{next((h for h in hints if h), '')}") from None
    return net


def train(cfg: DictConfig, run_dir: str | Path) -> str:
    """Train one run into `run_dir`. Returns 'done', 'skipped' (finished before), 'busy' (another
    process holds it) or 'failed' (recorded in run.json, so the rest of a sweep goes on); raises
    UserError for a setup error and Interrupted after a signal."""
    quiet_libraries()
    run_dir = Path(run_dir)
    check_options(cfg)
    use_threads(cfg)
    pin_data_root(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # before the model: its init uses it
    model = preflight(cfg, job_overrides())  # a bad option fails here, before anything else
    label = run_label(cfg)
    record = RunRecord(run_dir)
    with record.claimed(cfg, label) as not_ours:  # 'busy' or 'skipped', said
        if not_ours:
            return not_ours
        return fit_claimed(cfg, model, record, label)


def fit_claimed(cfg: DictConfig, model: nn.Module, record: RunRecord, label: str) -> str:
    """Train the claimed run `record` to its end: its outcome recorded in run.json and returned
    ('done', 'failed'); a setup error (UserError) and a signal (Interrupted) raised. A fault no
    check foresaw, before or after training, fails the run as one during training does: said at
    once, in one line, and recorded, so that a sweep goes on and its end counts it."""
    try:
        return _train_and_record(cfg, model, record, label)
    except (UserError, Interrupted):
        raise
    except Exception as e:
        return record_failure(record, label, e, identity=run_identity(cfg))


def run_identity(cfg: DictConfig) -> dict:
    """What a run.json needs for the summary to list the run, failed or not."""
    return {"arch": cfg.arch_name, "depth": cfg.depth, "seed": cfg.seed}


def run_setting(cfg: DictConfig, data: pl.LightningDataModule) -> dict:
    """What a run trains on and how, for its run.json (the same for every member of a fused
    group): its length, the data (set up), the precision, CUDA graph and memory format as
    resolved here from "auto", where and with what it runs."""
    return {
        "iterations": cfg.schedule.iterations,
        "train_images": data.train_images,
        "classes": data.class_count,
        **data.test_set,
        "precision": resolve_precision(cfg.trainer),
        "cuda_graph": resolve_cuda_graph(cfg),
        "channels_last": resolve_channels_last(cfg),
        **provenance(trains_on_gpu(cfg.trainer)),
    }


def start_info(cfg: DictConfig, net: nn.Module, setting: dict) -> dict:
    """A run's run.json at its start: its identity and size, its `run_setting`, and the order of
    the grad_norm/* columns' layers, which metrics.csv sorts by name."""
    return {
        **run_identity(cfg),
        "params": count_params(net),
        "macs": count_macs(net, input_shape(cfg)),
        **setting,
        "conv_layers": [name for name, _ in conv_layers(net)],
    }


def how(setting: dict) -> str:
    """The device, precision and CUDA graph of a `run_setting`, for a start line."""
    graph = ", CUDA graph" if setting["cuda_graph"] else ""
    return f"{setting['device']}, {setting['precision']}{graph}"


def record_failure(
    record: RunRecord, label: str, e: Exception, identity: dict | None = None
) -> str:
    """Say now, in one line, why the run failed (with the traceback under HYDRA_FULL_ERROR=1),
    and record it in run.json; 'failed'."""
    message = f"[{label}] FAILED: {type(e).__name__}: {e}"
    if isinstance(e, CheckpointWriteError):  # says what happened and what is kept
        message = f"[{label}] FAILED: {e}"
    log.error(message, exc_info=full_error())
    try:
        earlier = {} if record.json.is_file() else (identity or {})
        record.update(**earlier, status="failed", error=f"{type(e).__name__}: {e}")
    except (OSError, UserError) as w:  # a full disk, a run.json that is no record
        log.error(f"[{label}] could not record the failure in {record.json}: {w}")
    return "failed"


def check_test_set(record: RunRecord, test_set: dict) -> None:
    """A run resumed from its checkpoint keeps its test set: its test errors so far were measured
    on the one its run.json records (or, where run.json has lost it, its checkpoint: RecordData),
    and a series from two test sets is no series."""
    if not record.checkpoint.is_file():
        return  # starting over: metrics.csv starts afresh
    keys = ("test_images", "test_md5")
    earlier = record.read()
    if not earlier.get("test_md5"):
        earlier = record.saved().get("test_set") or {}
    if not earlier.get("test_md5"):
        return  # a checkpoint from before test sets were recorded: nothing to compare
    before = {k: earlier.get(k) for k in keys}
    now = {k: test_set[k] for k in keys}
    if before != now:
        raise TestSetChangedError(
            f"{record.dir} was tested on {before['test_images']} images (test_batch MD5 "
            f"{before['test_md5']}), but data.root's test_batch now gives {now['test_images']} "
            f"(MD5 {now['test_md5']}): resuming would mix two test sets in one run. Point "
            "data.root at the data the run started on, or delete its checkpoints/ to train it "
            "from the start on this test set."
        )


def _train_and_record(cfg: DictConfig, model, record: RunRecord, label: str) -> str:
    datamodule = make_datamodule(cfg)
    datamodule.prepare_data()  # a missing or malformed dataset is a setup error; reading it
    datamodule.setup("fit")  # here also says what the test set is
    info = start_info(cfg, model, run_setting(cfg, datamodule))
    module = make_module(cfg, model)
    check_test_set(record, datamodule.test_set)
    resume = record.resume_point()
    interrupt = CheckpointOnInterrupt(record.checkpoint)
    clock, first_step = RunClock(), StepClock()
    if resume is not None and record.evaluated_at == record.resumed_at:
        # metrics.csv holds the evaluation of the checkpoint's step (a run that trained to its
        # end, its record lost or left at `running`): not evaluated and logged a second time.
        clock.evaluated_at = record.resumed_at
    callbacks = [
        interrupt,  # first: it stops a step before the lr monitor logs that step's rate
        LearningRateMonitor(logging_interval="step"),
        last_checkpoint(record.checkpoint, cfg.checkpoint_every),
        clock,
        first_step,
        ProgressPrinter(label, cfg.progress_every, clock.time_elapsed),
        BarSafeLogging(),
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
    where = f"resuming from {resume} (iteration {record.resumed_at})" if resume else "starting"
    # From `running` on, SIGTERM leaves a record of itself, never a stale `running`: the guard
    # takes it while Lightning's own handler (fit's, to a step boundary) is not installed.
    with interrupt.guard():
        try:
            record.start(cfg, info)
            log.info(
                f"[{label}] {where} in {record.dir} ({how(info)}; {cfg.schedule.iterations:,} "
                "iterations)"
            )
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
            end_fit(trainer, module, datamodule, interrupt, clock, record.checkpoint)
            record_done(record, label, module.lr_schedulers(), trainer, clock, first_step.seconds())
            return "done"
        except (KeyboardInterrupt, SystemExit, Interrupted, Terminated):
            if record.is_finished():  # the signal came after the record said done: it is
                raise Interrupted(interrupt.signal or "SIGINT") from None
            signal = interrupt.signal or "SIGINT"
            step = trainer.global_step
            record.update(status="interrupted", error=f"{signal} at iteration {step}")
            kept = kept_on_interrupt(interrupt, record.checkpoint)
            log.warning(f"[{label}] interrupted by {signal} at iteration {step}: {kept}")
            raise Interrupted(signal) from None
        except Exception as e:  # recorded, not swallowed: run.json and the summary show it
            return record_failure(record, label, e)


def end_fit(
    trainer: pl.Trainer,
    module: pl.LightningModule,
    data: pl.LightningDataModule,
    interrupt: CheckpointOnInterrupt,
    clock: RunClock,
    checkpoint: Path,
) -> None:
    """What follows a fit that returned (a run's or a fused group's): after Ctrl-C, the
    checkpoint of the step fit stopped after and Interrupted; else the evaluation of the last
    step if the run ended between evaluations, and the last checkpoint."""
    if interrupt.signal:
        interrupt.save_if_trained(trainer)
        raise Interrupted(interrupt.signal)
    if clock.evaluated_at != trainer.global_step:
        trainer.validate(module, datamodule=data, verbose=False)
    trainer.save_checkpoint(checkpoint)


def kept_on_interrupt(interrupt: CheckpointOnInterrupt, checkpoint: Path, runs: int = 1) -> str:
    """What an interrupted run (or a group of `runs`) leaves to resume from, for its line."""
    s, it = ("s", "them") if runs > 1 else ("", "it")
    if interrupt.saved:
        return f"checkpoint{s} saved"
    if checkpoint.is_file():
        return f"{'its ' if runs == 1 else ''}last checkpoint{s} kept"
    return f"no checkpoint{s} yet: the next start trains {it} from the beginning"


def record_done(
    record: RunRecord,
    label: str,
    sched: PaperLR,
    trainer: pl.Trainer,
    clock: RunClock,
    first: float | None,
) -> None:
    """run.json says done, with the run's wall time, first step (None if a resumed run had no
    step left to take) and where its warm-up ended (its scheduler `sched`)."""
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
