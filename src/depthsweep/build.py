"""The objects of one run, built from its config: the net, the Lightning module, the trainer."""

from __future__ import annotations

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

from depthsweep.checkpoints import SafeCheckpointIO
from depthsweep.config import log_window, resolve_cuda_graph, resolve_precision
from depthsweep.data import CLASSES, class_indices
from depthsweep.errors import OptionError, UserError
from depthsweep.module import Classifier
from depthsweep.schedule import warmup_lr_for

# Keys of an arch config that are not constructor options: its label, and its training recipe.
ARCH_RECIPE_KEYS = ("name", "warmup_from_depth")


def build_model(arch: DictConfig, depth: int, num_classes: int = 10) -> nn.Module:
    """Construct `arch._target_` with the arch's constructor options. Called directly, not
    through `instantiate`, so that an invalid depth raises InvalidDepthError itself."""
    options = OmegaConf.to_container(arch)
    for key in ARCH_RECIPE_KEYS:
        options.pop(key, None)
    return get_class(options.pop("_target_"))(depth=depth, num_classes=num_classes, **options)


def build_net(cfg: DictConfig) -> nn.Module:
    """The run's net: one output per class of `data.classes` (an unknown class fails here)."""
    return build_model(cfg.arch, cfg.depth, len(class_indices(cfg.data.get("classes"))))


def model_spec(cfg: DictConfig) -> dict:
    """What a checkpoint says about its net, enough to rebuild it and feed it (depthsweep.zoo):
    the arch config, depth, the class names in label order, and the data config (normalisation,
    limit, root)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return {
        "arch": OmegaConf.to_container(cfg.arch, resolve=True),
        "depth": int(cfg.depth),
        "classes": [CLASSES[i] for i in class_indices(data.get("classes"))],
        "data": data,
    }


def schedule_options(sched: DictConfig) -> dict:
    """The Classifier's options that `conf/schedule/` sets: SGD and the step decay."""
    return {
        "iterations": sched.iterations,
        "lr": sched.lr,
        "momentum": sched.momentum,
        "weight_decay": sched.weight_decay,
        "milestones": tuple(sched.milestones),
        "gamma": sched.gamma,
    }


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
        **schedule_options(sched),
        warmup_lr=warmup_lr_for(cfg.depth, sched.warmup.lr, sched.warmup.from_depth),
        warmup_until_error=sched.warmup.until_train_error,
        warmup_max_fraction=sched.warmup.max_fraction,
        window=log_window(cfg),
        channels_last=precision != "32-true" if auto_cl else bool(cfg.channels_last),
        cuda_graph=graphed,
        spec=model_spec(cfg),
    )


def job_devices(cfg: DictConfig) -> dict:
    """In a Hydra multirun on several GPUs, job n trains on GPU n % count, so that jobs run at
    once (hydra/launcher=joblib) spread over the GPUs instead of all landing on GPU 0."""
    count = torch.cuda.device_count()
    gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    if count < 2 or not gpu or cfg.trainer.devices != 1 or not HydraConfig.initialized():
        return {}
    return {"devices": [HydraConfig.get().job.num % count]}


def build(node: DictConfig, what: str, **kwargs) -> object:
    """`instantiate(node)`, with a bad option reported as the user's error, named by `what`
    (Hydra wraps whatever a constructor raises in its own InstantiationException)."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, ValueError | TypeError | MisconfigurationException):
            raise OptionError(f"{what}: {cause}") from None
        raise


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


def make_trainer(cfg: DictConfig, callbacks: list[Callback], **overrides) -> pl.Trainer:
    """`cfg.trainer` with the run length, precision and logging window filled in. Loggers and
    callbacks come from the harness and the config's own groups, never from `trainer.*`."""
    for key in ("logger", "callbacks"):
        if key in cfg.trainer:
            raise OptionError(
                f"trainer.{key} would replace the harness's own {key}: add yours with "
                f"{key}=NAME or +{key}.NAME._target_=... instead"
            )
    kwargs = {
        "plugins": [SafeCheckpointIO()],  # atomic writes, weights-only reads
        "precision": resolve_precision(cfg.trainer),
        "max_steps": cfg.schedule.iterations,
        "max_epochs": -1,
        "log_every_n_steps": log_window(cfg),
        "callbacks": callbacks,
    }
    return build(cfg.trainer, "trainer", **(kwargs | overrides))
