"""One training run from a composed config: build, skip or resume, fit, record the outcome."""

from __future__ import annotations

import csv
import traceback
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from torch import nn

from depthsweep.diagnostics import GradNormLogger
from depthsweep.models import count_macs, count_params
from depthsweep.module import Classifier
from depthsweep.schedule import warmup_lr_for
from depthsweep.sweep import RunRecord

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """The config `python -m experiments.run <overrides>` would train (with its `hydra` node if
    asked), composed outside a Hydra app: for the bench, the tests and notebooks."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


# Keys of an arch config that are not constructor options: its label, and its training recipe.
ARCH_RECIPE_KEYS = ("name", "warmup_from_depth")


def build_model(arch: DictConfig, depth: int) -> nn.Module:
    """Construct `arch._target_` with the arch's constructor options. Called directly, not
    through `instantiate`, so that an invalid depth raises InvalidDepthError itself."""
    options = OmegaConf.to_container(arch)
    for key in ARCH_RECIPE_KEYS:
        options.pop(key, None)
    return get_class(options.pop("_target_"))(depth=depth, **options)


def _trains_on_gpu(trainer_cfg: DictConfig) -> bool:
    return torch.cuda.is_available() and trainer_cfg.accelerator in ("auto", "gpu", "cuda")


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """'auto': bf16-mixed where a GPU trains (with the CUDA graph, the fastest measured), fp32 on
    a CPU."""
    if trainer_cfg.precision != "auto":
        return str(trainer_cfg.precision)
    return "bf16-mixed" if _trains_on_gpu(trainer_cfg) else "32-true"


def resolve_cuda_graph(cfg: DictConfig) -> bool:
    """'auto': on where a GPU trains in fp32 or bf16 (the measured winner, tested against eager
    training); a CPU, or fp16 (whose loss scaler cannot be graphed), trains eagerly."""
    if cfg.cuda_graph != "auto":
        return bool(cfg.cuda_graph)
    return _trains_on_gpu(cfg.trainer) and not resolve_precision(cfg.trainer).startswith("16")


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; a resumed run must append to it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing `<run_dir>/metrics.csv`, continued across resumes."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # Lightning passes the 0-based index of the current batch; `step` in our CSV counts the
        # iterations done, like the paper's x axis and the checkpoint's global_step.
        super().log_metrics(metrics, None if step is None else step + 1)


ERRORS = ("train_error", "test_error", "val_error")


class ProgressPrinter(Callback):
    """One line per evaluation: where the run is and how it is doing."""

    def __init__(self, label: str) -> None:
        self.label = label

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        errors = [f"{k.replace('_error', '')} err {float(m[k]):.2f}%" for k in ERRORS if k in m]
        print(
            f"[{self.label}] iter {trainer.global_step}/{trainer.max_steps} "
            f"epoch {int(m['epoch'])}: {', '.join(errors)} ({float(m['wall_time']):.0f}s)",
            flush=True,
        )


def make_module(cfg: DictConfig, model: nn.Module) -> Classifier:
    """The Lightning module for `model` under `cfg.schedule`, its steps graphed if asked."""
    precision = resolve_precision(cfg.trainer)
    graphed = resolve_cuda_graph(cfg)
    if graphed and precision.startswith("16"):  # fp16's loss scaling is not graphed
        raise ValueError(
            f"cuda_graph=true trains in fp32 or bf16, not trainer.precision={precision}"
        )
    sched = cfg.schedule
    auto_cl = cfg.channels_last == "auto"
    return Classifier(
        model,
        iterations=sched.iterations,
        lr=sched.lr,
        momentum=sched.momentum,
        weight_decay=sched.weight_decay,
        milestones=tuple(sched.milestones),
        gamma=sched.gamma,
        warmup_lr=warmup_lr_for(cfg.depth, sched.warmup.lr, sched.warmup.from_depth),
        warmup_until_error=sched.warmup.until_train_error,
        warmup_max_iterations=sched.warmup.max_iterations,
        window=log_window(cfg),
        channels_last=precision != "32-true" if auto_cl else bool(cfg.channels_last),
        cuda_graph=graphed,
    )


def log_window(cfg: DictConfig) -> int:
    """Iterations per logged training-metrics row: at most log_every_n_steps, >= 10 rows a run."""
    return max(1, min(cfg.trainer.log_every_n_steps, cfg.schedule.iterations // 10))


def job_devices(cfg: DictConfig) -> dict:
    """In a Hydra multirun on several GPUs, job n trains on GPU n % count, so that jobs run at
    once (hydra/launcher=joblib) spread over the GPUs instead of all landing on GPU 0."""
    count = torch.cuda.device_count()
    gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    if count < 2 or not gpu or cfg.trainer.devices != 1 or not HydraConfig.initialized():
        return {}
    return {"devices": [HydraConfig.get().job.num % count]}


def make_trainer(cfg: DictConfig, callbacks: list[Callback], **overrides) -> pl.Trainer:
    """`cfg.trainer` with the run length, precision and logging window filled in."""
    kwargs = {
        "precision": resolve_precision(cfg.trainer),
        "max_steps": cfg.schedule.iterations,
        "max_epochs": -1,
        "log_every_n_steps": log_window(cfg),
        "callbacks": callbacks,
    }
    return instantiate(cfg.trainer, **(kwargs | overrides))


def train(cfg: DictConfig, run_dir: str | Path) -> str:
    """Train one run into `run_dir`. Returns 'done', 'skipped' or 'failed'; training errors are
    recorded in run.json rather than raised, so the rest of a sweep goes on."""
    run_dir = Path(run_dir)
    pl.seed_everything(cfg.seed, workers=True)  # before the model: its init depends on it
    model = build_model(cfg.arch, cfg.depth)  # an invalid depth fails here, before anything else
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
