"""The objects of one run, built from its config: the net, the optimizer and its lr schedule, the
Lightning module, the trainer."""

from __future__ import annotations

import difflib
import inspect
import re

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import nn

from depthsweep.errors import OptionError, UserError
from depthsweep.paper import PAPER_BATCH
from depthsweep.training.callbacks import RecordData
from depthsweep.training.checkpoints import SafeCheckpointIO
from depthsweep.training.config import (
    log_window,
    resolve_channels_last,
    resolve_cuda_graph,
    resolve_precision,
    run_label,
    trains_on_gpu,
)
from depthsweep.training.data import CLASSES, class_indices
from depthsweep.training.module import Classifier, OptimizerFactory, SchedulerFactory
from depthsweep.training.schedule import warmup_lr_for
from depthsweep.training.window import TrainingWindow

# cuda_graph: the module's steps replayed as CUDA graphs (on a CPU, the same code run eagerly).
GRAPHED = "depthsweep.training.graphed.GraphedClassifier"
# The Trainer's options that the run's length sets (make_trainer): a value given for one would be
# overwritten, the run as long as schedule.iterations all the same.
RUN_LENGTH = ("max_steps", "max_epochs", "min_steps", "min_epochs")
# The options the harness passes to an object's constructor itself (make_schedule, make_module,
# make_datamodule), never read from its node: a value given there (+schedule.scheduler.
# warmup_lr=0.01, +data.seed=7) would be overwritten. Each with the key that sets it.
HARNESS_SETS = {
    "schedule.scheduler": {
        "iterations": "schedule.iterations",
        "warmup_lr": "schedule.warmup.lr",
        "warmup_max_fraction": "schedule.warmup.max_fraction",
    },
    "module": {
        "model": "arch and depth",
        "optimizer": "schedule.optimizer",
        "scheduler": "schedule.scheduler",
        "channels_last": "channels_last",
        "spec": "arch, depth and data",
    },
    "data": {"seed": "seed", "seeds": "seed"},
}


def harness_sets(key: str) -> str | None:
    """The key that sets `key`, an option the harness passes its object itself; None if not one."""
    parent, _, name = key.rpartition(".")
    return HARNESS_SETS.get(parent, {}).get(name)


def build_model(arch: DictConfig, depth: int, num_classes: int = 10) -> nn.Module:
    """Construct `arch._target_` with the arch's constructor options. Called directly, not
    through `instantiate`, so that an invalid depth raises InvalidDepthError itself."""
    options = OmegaConf.to_container(arch)
    return get_class(options.pop("_target_"))(depth=depth, num_classes=num_classes, **options)


def build_net(cfg: DictConfig) -> nn.Module:
    """The run's net: one output per class of `data.classes` (an unknown class fails here)."""
    return build_model(cfg.arch, cfg.depth, len(class_indices(cfg.data.get("classes"))))


def input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(C, H, W) of the images the run's net sees: RGB at data.resolution (32 unless set)."""
    size = int(cfg.data.get("resolution", 32))
    return (3, size, size)


def model_spec(cfg: DictConfig) -> dict:
    """What a checkpoint says about its net, enough to rebuild it and feed it (depthsweep.apps.zoo):
    the arch's name and node (its class and constructor options), depth, the class names in label
    order, and the data config (normalisation, limit, root)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {
        "arch_name": cfg.arch_name,
        "arch": OmegaConf.to_container(cfg.arch, resolve=True),
        "depth": int(cfg.depth),
        "classes": [CLASSES[i] for i in class_indices(data.get("classes"))],
        "data": data,
    }


def make_schedule(
    schedule: DictConfig, warmup_lr: float | None = None, batch: int = PAPER_BATCH
) -> tuple[OptimizerFactory, SchedulerFactory]:
    """The optimizer and the lr scheduler of `schedule` (conf/schedule/), as factories:
    optimizer(parameters), scheduler(optimizer). The scheduler gets the run's length and, with
    `warmup_lr`, a warm-up capped at the fraction schedule.warmup.max_fraction of the run. With
    schedule.lr_scales_with_batch, the lr and warm-up lr are for a batch of PAPER_BATCH and
    scale linearly with `batch` (Goyal et al. 2017)."""
    scale = batch / PAPER_BATCH if schedule.get("lr_scales_with_batch") else 1.0
    lr = {"lr": schedule.optimizer.lr * scale} if scale != 1.0 else {}
    optimizer = build(schedule.optimizer, "schedule.optimizer", **lr)
    scheduler = build(
        schedule.scheduler,
        "schedule.scheduler",
        iterations=schedule.iterations,
        warmup_lr=None if warmup_lr is None else warmup_lr * scale,
        warmup_max_fraction=schedule.warmup.max_fraction,
    )
    return optimizer, scheduler


def make_module(cfg: DictConfig, model: nn.Module) -> Classifier:
    """`cfg.module` for `model` (its graphed subclass where cuda_graph resolves on), with the
    optimizer and schedule of `cfg.schedule`, warmed up if the run's depth asks for it."""
    precision = resolve_precision(cfg.trainer)
    graphed = resolve_cuda_graph(cfg)
    if graphed:
        if precision.startswith("16"):  # fp16's loss scaling is not graphed
            raise OptionError(
                f"cuda_graph=true trains in fp32 or bf16, not trainer.precision={precision}"
            )
        # The graphed step optimizes by hand, where Lightning refuses both (once fit starts)
        clip = cfg.trainer.get("gradient_clip_val")
        if clip not in (None, 0):
            raise OptionError(f"cuda_graph=true cannot take trainer.gradient_clip_val={clip}")
        accumulate = cfg.trainer.get("accumulate_grad_batches", 1)
        if accumulate != 1:
            raise OptionError(
                f"cuda_graph=true cannot take trainer.accumulate_grad_batches={accumulate}"
            )
    warmup = cfg.schedule.warmup
    optimizer, scheduler = make_schedule(
        cfg.schedule, warmup_lr_for(cfg.depth, warmup.lr, warmup.from_depth), cfg.data.batch_size
    )
    return build(
        cfg.module,
        "module",
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        channels_last=resolve_channels_last(cfg),
        spec=model_spec(cfg),
        **({"_target_": GRAPHED} if graphed else {}),
        _recursive_=False,  # spec's arch node is the net's description, not an object to build
        _convert_="all",  # ... and a plain dict, which checkpoints load without running code
    )


def check_one_device(trainer: DictConfig) -> None:
    """A run trains on one device: 1, or one device named ([2]). Lightning would start a process
    per device, each running the whole command again; those find the run directory held and
    leave, and the first then waited for them for good, deaf to Ctrl-C."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if not (devices in (1, "1") or OmegaConf.is_list(devices) and len(devices) == 1):
        what = f"trainer.devices={devices}"
    elif nodes != 1:
        what = f"trainer.num_nodes={nodes}"
    else:
        return
    raise OptionError(
        f"{what}: a run trains on one device (1, or one named: [N]); to train runs side by side, "
        "hydra/launcher=joblib hydra.launcher.n_jobs=N (on several GPUs each job takes its own)"
    )


def job_devices(cfg: DictConfig) -> dict:
    """In a Hydra multirun on several GPUs, job n trains on GPU n % count, so that jobs run at
    once (hydra/launcher=joblib) spread over the GPUs instead of all landing on GPU 0."""
    count = torch.cuda.device_count()
    if count < 2 or not trains_on_gpu(cfg.trainer) or cfg.trainer.devices != 1:
        return {}
    if not HydraConfig.initialized():
        return {}
    return {"devices": [HydraConfig.get().job.num % count]}


def build(node: DictConfig, what: str, **kwargs) -> object:
    """`instantiate(node)`, with a bad option reported as the user's error, named by `what`
    (Hydra wraps whatever a constructor raises in its own InstantiationException). An option
    the harness sets itself (HARNESS_SETS), given in the node too, is refused, not overwritten."""
    for name in node:
        meant = harness_sets(f"{what}.{name}")
        if meant:
            raise OptionError(
                f"{what}.{name}={node[name]}: the harness sets {name} itself, so this value would "
                f"be ignored: set {meant} instead"
            )
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        # ImportError: a setting whose package is missing (trainer.accelerator=tpu: torch_xla)
        if isinstance(cause, ValueError | TypeError | MisconfigurationException | ImportError):
            raise OptionError(f"{what}: {cause}{option_hint(node, what, cause)}") from None
        raise


def option_hint(node: DictConfig, what: str, cause: Exception) -> str:
    """For an option the constructor does not take (+data.limt=10), the one it does that is
    spelled closest, as a hint ("" if none): the key Hydra's `+` added is no typo Hydra sees."""
    typo = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if typo is None or typo.group(1) not in node:  # not an option of this node's
        return ""
    try:
        takes = inspect.signature(get_class(node._target_)).parameters
    except (AttributeError, ImportError, TypeError, ValueError):  # no class, no signature
        return ""
    close = difflib.get_close_matches(typo.group(1), list(takes), n=1)
    if not close:
        return ""
    if what == "trainer" and close[0] in RUN_LENGTH:
        return f". Did you mean trainer.{close[0]}? {run_length_is_schedule(close[0])}"
    return f". Did you mean {what}.{close[0]}={node[typo.group(1)]}?"


def run_length_is_schedule(key: str) -> str:
    """Why trainer.KEY (max_steps, max_epochs, ...) is refused, and what to set instead."""
    return (
        f"A run's length is schedule.iterations (its learning-rate decays are placed by it), "
        f"which sets the Trainer's {key}: set schedule.iterations=N instead"
    )


def make_datamodule(cfg: DictConfig) -> pl.LightningDataModule:
    """The run's data, its order and augmentation drawn from streams seeded with the run's seed
    (passed here, not a data option of its own: seeds are the runs' identity, not a setting)."""
    return build(cfg.data, "data", _convert_="all", seed=cfg.seed)


def make_extras(cfg: DictConfig, run_dir: str) -> tuple[list[Logger], list[Callback]]:
    """The loggers and callbacks the config adds (its `logger` and `callbacks` groups); a
    logger's `save_dir: null` is the run's directory."""
    loggers = []
    for name, node in cfg.logger.items():
        place = {"save_dir": run_dir} if "save_dir" in node and node.save_dir is None else {}
        loggers.append(build(node, f"logger.{name}", **place))
    callbacks = [build(node, f"callbacks.{name}") for name, node in cfg.callbacks.items()]
    return loggers, callbacks


def make_trainer(
    cfg: DictConfig,
    callbacks: list[Callback],
    window: TrainingWindow | None = None,
    **overrides,
) -> pl.Trainer:
    """`cfg.trainer` with the run length, precision and logging window filled in, and the
    callbacks every Classifier trains with (its training metrics `window`, by default a
    TrainingWindow of `cfg`'s warm-up threshold; the normalisation in its checkpoints) before
    `callbacks`. Loggers and callbacks come from the harness and the
    config's own groups, never from `trainer.*`."""
    for key in ("logger", "callbacks"):
        if key in cfg.trainer:
            raise OptionError(
                f"trainer.{key} would replace the harness's own {key}: add yours with "
                f"{key}=NAME or +{key}.NAME._target_=... instead"
            )
    for key in RUN_LENGTH:
        if key in cfg.trainer:
            raise OptionError(f"trainer.{key}={cfg.trainer[key]}: {run_length_is_schedule(key)}")
    check_one_device(cfg.trainer)
    kwargs = {
        "plugins": [SafeCheckpointIO()],  # atomic writes, weights-only reads
        "precision": resolve_precision(cfg.trainer),
        "max_steps": cfg.schedule.iterations,
        "max_epochs": -1,
        "log_every_n_steps": log_window(cfg),
        "callbacks": [
            window or TrainingWindow(cfg.schedule.warmup.until_train_error, run_label(cfg)),
            RecordData(),
            *callbacks,
        ],
    }
    return build(cfg.trainer, "trainer", **(kwargs | overrides))
