"""The composed config and what it leaves to be decided where a run trains: the device, precision,
the CUDA graph, the logging window."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from depthsweep import CONF_DIR


def compose_config(overrides: Sequence[str] = (), hydra: bool = False) -> DictConfig:
    """The config `python -m experiments.run <overrides>` would train (with its `hydra` node if
    asked), composed outside a Hydra app: for the bench, the tests and notebooks."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


# KEY=~/path, a value that begins with a home directory (no list, no quotes).
_HOME_VALUE = re.compile(r"^(\+{0,2}[A-Za-z_][\w.\-/@]*)=(~[^,'\"\s]*)$")


def home_expanded(argv: Sequence[str]) -> list[str]:
    """The command line with `KEY=~/x` written `KEY='/home/me/x'`: what a shell does for an
    assignment but not for an argument, and what Hydra's override grammar, which refuses a bare
    `~`, then gets quoted. Anything else (a `~KEY` deletion, a list, a quoted value) is left to
    Hydra as typed."""
    out = list(argv[:1])
    for arg in argv[1:]:
        match = _HOME_VALUE.match(arg)
        home = os.path.expanduser(match[2]) if match else None
        out.append(f"{match[1]}='{home}'" if match and "'" not in home else arg)
    return out


def device_for(accelerator: str = "auto") -> torch.device:
    """Where work runs: the GPU if there is one and `accelerator` (trainer.accelerator) allows
    it, else the CPU. The one rule for training, transfer, diagnostics and the bench."""
    gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if gpu else "cpu")


def trains_on_gpu(trainer_cfg: DictConfig) -> bool:
    return device_for(trainer_cfg.accelerator).type == "cuda"


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """'auto': bf16-mixed where a GPU trains (with the CUDA graph, the fastest measured), fp32 on
    a CPU."""
    if trainer_cfg.precision != "auto":
        return str(trainer_cfg.precision)
    return "bf16-mixed" if trains_on_gpu(trainer_cfg) else "32-true"


def resolve_cuda_graph(cfg: DictConfig) -> bool:
    """'auto': on where a GPU trains in fp32 or bf16 (the measured winner, tested against eager
    training); a CPU, or fp16 (whose loss scaler cannot be graphed), trains eagerly."""
    if cfg.cuda_graph != "auto":
        return bool(cfg.cuda_graph)
    return trains_on_gpu(cfg.trainer) and not resolve_precision(cfg.trainer).startswith("16")


def log_window(cfg: DictConfig) -> int:
    """Iterations per logged training-metrics row: at most log_every_n_steps, >= 10 rows a run."""
    return max(1, min(cfg.trainer.log_every_n_steps, cfg.schedule.iterations // 10))
