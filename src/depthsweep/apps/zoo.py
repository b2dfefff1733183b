"""Every finished run is a reusable model: load one from its run directory or its checkpoint file
alone, list the finished runs under some directories, evaluate one on its test set.

A checkpoint describes its net (`training.build.model_spec`, saved with the Lightning module's
hyperparameters as `spec`): the arch's name, its node (`_target_` and constructor options), the
depth, the class names in label order and the data config; and the inputs' normalisation as
applied in training (`normalization`, training.callbacks.RecordData: shift and scale
tensors, x -> (x - shift) / scale, the mean image for `data.normalize=per_pixel_mean`).
Checkpoints written before these records are loaded from their run directory's config.yaml.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

from depthsweep.errors import OptionError, UserError
from depthsweep.runs.metrics import read_final_errors
from depthsweep.runs.rundir import (
    CHECKPOINT,
    CONFIG,
    RunRecord,
    find_runs,
    read_config,
    unreadable,
)
from depthsweep.training.build import build_model, model_spec
from depthsweep.training.config import check_precision
from depthsweep.training.console import quiet_libraries
from depthsweep.training.data import FOLDER, DatasetMissingError, ensure_cifar10, not_found
from depthsweep.training.module import Classifier


class NotACheckpointError(UserError, ValueError):
    """The file is not a checkpoint that depthsweep wrote, or cannot be read as one."""


class ArchNotInstalledError(UserError, ImportError):
    """The checkpoint's architecture cannot be imported here."""


class NoCheckpointError(UserError, FileNotFoundError):
    """The path is neither a checkpoint file nor a run directory holding one."""


@dataclass
class ZooModel:
    model: nn.Module  # weights loaded, in eval mode
    spec: dict[str, Any]  # build.model_spec: arch_name, arch, depth, classes, data
    checkpoint: Path
    normalization: tuple[Tensor, Tensor] | None  # (shift, scale); None: not recorded
    tested_on: dict[str, Any] | None = None  # test_images and test_md5 in training; None: unknown

    @property
    def classes(self) -> list[str]:
        return list(self.spec["classes"])

    def input_normalization(self) -> tuple[Tensor, Tensor]:
        """(shift, scale): the net's inputs are (x - shift) / scale, x uint8."""
        if self.normalization is None:
            raise ValueError(
                f"{self.checkpoint} does not record its input normalisation "
                "(data.normalize=per_pixel_mean before checkpoints recorded it): retrain the run"
            )
        return self.normalization

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 images (N, 3, 32, 32) normalised as in training (no augmentation)."""
        shift, scale = (t.to(images.device) for t in self.input_normalization())
        return (images.float() - shift) / scale


def checkpoint_path(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/last.ckpt."""
    path = Path(path)
    if path.is_dir():
        if not (path / CHECKPOINT).is_file():
            raise NoCheckpointError(
                f"{path} has no {CHECKPOINT}: give a finished run directory or a .ckpt file "
                "(python -m experiments.zoo DIR lists the finished runs)"
            )
        return path / CHECKPOINT
    if not path.is_file():
        raise NoCheckpointError(f"{path}: no such run directory or checkpoint file")
    return path


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_checkpoint(path: Path) -> dict[str, Any]:
    not_ours = f"{path} is not a depthsweep checkpoint (a run's checkpoints/last.ckpt)"
    try:
        # weights_only: tensors and plain containers only, so loading someone else's file
        # cannot run code; depthsweep writes nothing else.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, IsADirectoryError) as e:  # a checkpoint, maybe, that cannot be read
        raise NotACheckpointError(f"{path} cannot be read: {e.strerror}") from e
    except Exception as e:
        # Any error: torch.load parses arbitrary bytes with no single error of its own. A text
        # file, a CSV, a truncated or damaged checkpoint raised UnpicklingError, KeyError,
        # IndexError, EOFError, UnicodeDecodeError, struct.error, AssertionError, RuntimeError and
        # OSError (EINVAL from its zip reader), and the call does nothing but read the file.
        raise NotACheckpointError(f"{not_ours}: {unreadable(e)}") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise NotACheckpointError(f"{not_ours}: it has no Lightning state_dict/hyper_parameters")
    return ckpt


def _spec_of(ckpt: dict[str, Any], path: Path) -> dict[str, Any]:
    spec = ckpt["hyper_parameters"].get("spec")
    if spec is not None:
        return _with_arch_name(spec)
    run_dir = path.parent.parent  # <run_dir>/checkpoints/last.ckpt
    if (run_dir / CONFIG).is_file():  # written before checkpoints described their net
        cfg = read_config(run_dir)
        if "arch_name" not in cfg:  # see _with_arch_name
            cfg.arch_name = cfg.arch.name
        return _with_arch_name(model_spec(cfg))
    raise NotACheckpointError(
        f"{path} does not describe its net (written before checkpoints did) and has no run "
        f"directory around it: load it from its run directory, which holds {CONFIG}"
    )


def _with_arch_name(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs trained before the arch node held only the net's constructor options kept the arch's
    name and warm-up depth in it: moved out, as model_spec now writes them."""
    arch = spec["arch"]
    if "name" not in arch:
        return spec
    options = {k: v for k, v in arch.items() if k not in ("name", "warmup_from_depth")}
    return {**spec, "arch_name": arch["name"], "arch": options}


def load(path: str | os.PathLike, device: torch.device | str = "cpu") -> ZooModel:
    """The net of a run directory or a checkpoint file, weights loaded, in eval mode on
    `device`."""
    path = checkpoint_path(path)
    ckpt = _read_checkpoint(path)
    spec = _spec_of(ckpt, path)
    arch = OmegaConf.create(spec["arch"])
    try:
        model = build_model(arch, spec["depth"], len(spec["classes"]))
    except ImportError as e:
        raise ArchNotInstalledError(
            f"{path} holds a {spec['arch_name']!r} net ({arch._target_}), which cannot be imported "
            f"here: install the package that defines {arch._target_}, or use the depthsweep "
            f"version that trained it. ({e})"
        ) from e
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(state)
    normalization = _normalization(ckpt, spec["data"])
    return ZooModel(model.to(device).eval(), spec, path, normalization, ckpt.get("test_set"))


def _normalization(ckpt: dict[str, Any], data: dict[str, Any]) -> tuple[Tensor, Tensor] | None:
    """(shift, scale) as recorded; for older checkpoints per_channel's are the config's mean/std,
    and per_pixel_mean's mean image is unknown."""
    if "normalization" in ckpt:
        return ckpt["normalization"]["shift"], ckpt["normalization"]["scale"]
    if data.get("normalize", "per_channel") == "per_channel":
        mean, std = (torch.tensor(data[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        return mean, std
    return None


def is_model(run_dir: Path) -> bool:
    """Whether `run_dir` holds a model of the zoo: a finished run with its checkpoint."""
    return RunRecord(run_dir).is_finished() and (run_dir / CHECKPOINT).is_file()


def list_runs(paths: list[str | os.PathLike], unusable: list[str] | None = None) -> pd.DataFrame:
    """The models under `paths` (`is_model`, and `load` can rebuild it), one row each: arch,
    depth, seed, classes, params, macs, final_test_error (the last logged, %), path. A finished
    run that cannot be loaded is left out, with why, in `unusable` if given. A path that does not
    exist raises NoCheckpointError."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise NoCheckpointError(f"{', '.join(missing)}: no such directory")
    rows = []
    for run_dir in sorted({r for p in paths for r in find_runs(p)}):
        try:
            if not is_model(run_dir):
                continue
            model = load(run_dir)  # every model listed can be used: its checkpoint is read here
        except UserError as e:  # a checkpoint that cannot be read, an arch not installed here
            if unusable is not None:
                unusable.append(f"{run_dir}: {e}")
            continue
        info = RunRecord(run_dir).read()
        classes = model.spec["data"].get("classes")  # the run's resolved data config
        rows.append(
            {
                **{k: info.get(k) for k in ("arch", "depth", "seed", "params", "macs")},
                "classes": "all" if classes is None else ",".join(map(str, classes)),
                "final_test_error": read_final_errors(run_dir)["final_test_error"],
                "path": str(run_dir),
            }
        )
    columns = ["arch", "depth", "seed", "classes", "params", "macs", "final_test_error", "path"]
    return pd.DataFrame(rows, columns=columns)


def evaluate(
    path: str | os.PathLike,
    data_root: str | None = None,
    precision: str = "32-true",
    say: Callable[[str], None] = print,
) -> dict[str, float]:
    """Test error and loss (and val_* with a validation split) of a checkpoint on its run's test
    set, through the code that validated it in training: its data module (normalisation, eval
    batches) and the Lightning module's validation step, reduced by Lightning. A run trained in
    bf16 logged bf16 numbers: pass precision="bf16-mixed" on a GPU to reproduce them. Where the
    test set (`data_root`'s) is not the one the run was tested on, `say` gets a note saying so:
    the numbers are then on another test set, not comparable with the run's."""
    quiet_libraries()  # Lightning's device lines, advertisement and notices, as in training
    check_precision(precision, f"--precision {precision}")
    try:  # first: a precision Lightning refuses is the user's option, before any loading
        trainer = pl.Trainer(
            accelerator="auto",
            devices=1,
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
    except (ValueError, MisconfigurationException) as e:
        raise OptionError(f"--precision {precision}: {e}") from None
    zm = load(path)
    overrides: dict[str, Any] = {"download": False}
    if data_root is not None:
        overrides["root"] = data_root
    datamodule = instantiate(zm.spec["data"], **overrides, _convert_="all")
    try:  # checked here to name evaluate's option: the data module's message names data.root=
        ensure_cifar10(datamodule.root, download=datamodule.download)  # the run's, as it trained
    except DatasetMissingError:
        folder = Path(datamodule.root).expanduser() / FOLDER
        raise DatasetMissingError(not_found(folder, "--data-root (data_root)")) from None
    # One dict per dataloader: the test set's test_*, then the validation split's val_*.
    results = trainer.validate(Classifier(zm.model), datamodule, verbose=False)
    now = {k: datamodule.test_set[k] for k in ("test_images", "test_md5")}
    if zm.tested_on and {k: zm.tested_on.get(k) for k in now} != now:
        say(
            f"note: {zm.checkpoint} was tested in training on {zm.tested_on['test_images']} "
            f"images (test_batch MD5 {zm.tested_on['test_md5']}), these numbers on "
            f"{now['test_images']} (MD5 {now['test_md5']}): another test set, not comparable "
            "with its metrics.csv"
        )
    return {k: v for r in results for k, v in r.items() if k.endswith(("_error", "_loss"))}
