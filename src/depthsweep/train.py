"""One training run from a composed config: build, skip or resume, fit, record the outcome."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from depthsweep.build import build_net, job_devices, make_module, make_trainer
from depthsweep.callbacks import GradNormLogger, ProgressPrinter
from depthsweep.metrics_log import AppendingCSVLogger
from depthsweep.models import count_macs, count_params
from depthsweep.rundir import RunRecord


def train(cfg: DictConfig, run_dir: str | Path) -> str:
    """Train one run into `run_dir`. Returns 'done', 'skipped' or 'failed'; training errors are
    recorded in run.json rather than raised, so the rest of a sweep goes on."""
    run_dir = Path(run_dir)
    pl.seed_everything(cfg.seed, workers=True)  # before the model: its init depends on it
    model = build_net(cfg)  # an invalid depth or class fails here, before anything else
    record = RunRecord(run_dir)
    record.check_config(cfg)
    label = f"{cfg.arch.name}-{cfg.depth} seed={cfg.seed}"
    if record.status == "done":
        print(f"[{label}] already finished in {run_dir}: skipped", flush=True)
        return "skipped"

    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # a missing or unreadable dataset is a setup error: raised, not
    datamodule.setup("fit")  # recorded; reading it here also says what the test set is
    info = {
        "arch": cfg.arch.name,
        "depth": cfg.depth,
        "seed": cfg.seed,
        "params": count_params(model),
        "macs": count_macs(model),
        "iterations": cfg.schedule.iterations,
        **datamodule.test_set,
    }
    module = make_module(cfg, model)
    resume = record.resume_point()
    record.start(cfg, info)
    print(f"[{label}] {'resuming from ' + str(resume) if resume else 'starting'} in {run_dir}")
    checkpoint = ModelCheckpoint(
        dirpath=record.checkpoint.parent,
        save_top_k=0,
        save_last=True,
        every_n_train_steps=cfg.checkpoint_every,
    )
    callbacks = [LearningRateMonitor(logging_interval="step"), checkpoint, ProgressPrinter(label)]
    if cfg.diagnostics.grad_norm_every:  # off by default: no callback, no cost
        callbacks.append(GradNormLogger(cfg.diagnostics.grad_norm_every))
    trainer = make_trainer(
        cfg,
        callbacks,
        logger=AppendingCSVLogger(run_dir),
        default_root_dir=str(run_dir),
        **job_devices(cfg),
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        if module.evaluated_at != trainer.global_step:  # the run ended between evaluations
            trainer.validate(module, datamodule=datamodule, verbose=False)
        trainer.save_checkpoint(record.checkpoint)
    except Exception as e:  # recorded, not swallowed: run.json and the summary show it
        traceback.print_exc()
        record.update(status="failed", error=f"{type(e).__name__}: {e}")
        print(f"[{label}] FAILED: {type(e).__name__}: {e}", flush=True)
        return "failed"
    first = module.first_step_s  # None if a resumed run had no step left to take
    sched = module.lr_schedulers()
    # warmup_end: the first iteration at the scheduled rate; null where there was no warm-up
    warmup = {"warmup_end": sched.warmup_end, "warmup_end_reason": sched.warmup_end_reason}
    if sched.warming_up:  # the run ended inside its warm-up
        warmup = {"warmup_end": trainer.global_step, "warmup_end_reason": "run ended"}
    record.update(
        status="done",
        error=None,
        wall_time_s=round(module.wall_time(), 2),
        first_step_s=None if first is None else round(first, 3),
        **warmup,
    )
    startup = "" if first is None else f" (first step incl. graph capture: {first:.1f}s)"
    print(f"[{label}] done in {module.wall_time():.0f}s{startup}", flush=True)
    return "done"
