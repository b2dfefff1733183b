"""Transfer learning from a zoo model to other CIFAR-10 classes with few labels.

The source is a zoo model (a run directory or a checkpoint); the target is `transfer.classes`,
relabelled 0..k-1, with `transfer.labels_per_class` labelled training images per class drawn with
`seed`, evaluated on the target classes' test images. Inputs are normalised as the source's were
(the shift and scale its checkpoint records). The source's classifier, the net's `fc`, is replaced
by a new linear head with one output per target class, initialised from `seed`, the same in every
mode. Modes (`transfer.freeze`):

    all         the rest of the net is a fixed function: its features of the labelled and the test
                images are computed once (eval mode, un-augmented images), cached on disk, and
                only the head is trained, on the cached features
    last_stage  the last stage (the last child module before `fc` with parameters) and the head
                are fine-tuned; everything before stays as it was, BN statistics included
    none        the whole net is fine-tuned from the source weights
    scratch     the same net from random initialisation: the baseline

The fine-tuning modes train through Lightning with the source's augmentation (random crop and
flip). All four share the optimiser and schedule (`schedule`: SGD, lr decayed at 50% and 75% of
`schedule.iterations`) and the batch size.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from depthsweep.apps import zoo
from depthsweep.errors import OptionError, UserError, check_count
from depthsweep.files import atomic_write
from depthsweep.nets.models import count_params
from depthsweep.runs.provenance import provenance
from depthsweep.runs.rundir import RunRecord
from depthsweep.training.build import build_model, make_schedule, make_trainer
from depthsweep.training.config import device_for, resolve_precision
from depthsweep.training.console import quiet_libraries
from depthsweep.training.data import CLASSES, CIFAR10DataModule, class_indices
from depthsweep.training.module import Classifier

log = logging.getLogger(__name__)
MODES = ("all", "last_stage", "none", "scratch")
HEAD = "fc"  # the classifier every CifarNet ends with
Batches = list[tuple[Tensor, Tensor]]

# The options the input checks name, as the user gave them: experiments.transfer's keys;
# experiments.transfer_bench passes its flags (--labels-per-class), so each message names the
# option to change on the command line that was typed.
OPTIONS = {k: f"transfer.{k}" for k in ("labels_per_class", "batch_size", "data_root")}
SOURCE_REQUIRED = (
    "transfer.source is required: give transfer.source=RUN_DIR_OR_CKPT, a finished run "
    "directory or its checkpoint file (python -m experiments.zoo DIR lists the finished runs)"
)


def given(option: str, value: object) -> str:
    """`option` set to `value` as typed: KEY=VALUE, or --flag VALUE."""
    return f"{option} {value}" if option.startswith("-") else f"{option}={value}"


class CacheMismatchError(UserError, ValueError):
    """A features cache file holds features of another source or data set."""


def draw_labelled(
    labels: Tensor,
    per_class: int,
    seed: int,
    names: Sequence[str],
    options: Mapping[str, str] = OPTIONS,
) -> Tensor:
    """Indices of `per_class` images of each label 0..k-1, drawn with `seed`, sorted. Each class's
    draw is the start of one seeded permutation, so a smaller draw is part of a larger one."""
    counts = torch.bincount(labels, minlength=len(names))
    if per_class < 1 or per_class > counts.min():
        fewest, option = int(counts.argmin()), options["labels_per_class"]
        raise OptionError(
            f"{given(option, per_class)}: class {names[fewest]!r} has {int(counts[fewest])} "
            f"training images here; set {option} between 1 and {int(counts[fewest])}, or give "
            f"more training images ({options['data_root']}; the source's data.limit applies)"
        )
    g = torch.Generator().manual_seed(seed)
    picks = []
    for label in range(len(names)):
        of_class = (labels == label).nonzero().flatten()
        picks.append(of_class[torch.randperm(len(of_class), generator=g)[:per_class]])
    return torch.cat(picks).sort().values


class TargetData(CIFAR10DataModule):
    """The target task: CIFAR10DataModule on the target classes, its training images cut to
    `labels_per_class` per class (`draw_labelled`), normalised with the source's (shift, scale);
    `options`: how its errors name the options (OPTIONS)."""

    def __init__(
        self,
        labels_per_class: int,
        seed: int,
        normalization: tuple[Tensor, Tensor],
        options: Mapping[str, str] = OPTIONS,
        **data: Any,
    ) -> None:
        super().__init__(**data, seed=seed)
        self.root_option = f"{options['data_root']}=DIR"  # not data.root, which transfer lacks
        self.limit_is_required = False  # the source's data.limit caps: labels_per_class draws
        self.labels_per_class, self.normalization = labels_per_class, normalization
        self.options = options
        labels = self.classes if self.classes is not None else range(len(CLASSES))
        self.names = [CLASSES[i] for i in labels]  # of the target's labels 0..k-1

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        super().setup(stage)
        keep = draw_labelled(
            self.data.y_train, self.labels_per_class, self.seed, self.names, self.options
        )
        d = self.data
        self.data = d._replace(x_train=d.x_train[keep], y_train=d.y_train[keep])
        self.shift, self.scale = self.normalization

    def plain_batches(self, train: bool) -> Batches:
        """The labelled training images (train) or the test set, in order, normalised, never
        augmented, in eval-sized batches."""
        d = self.data
        x, y = (d.x_train, d.y_train) if train else (d.x_test, d.y_test)
        return [self.on_after_batch_transfer(b, 0) for b in self._batches(x, y, train=False)]


def target_data(
    cfg: DictConfig, source: zoo.ZooModel, options: Mapping[str, str] = OPTIONS
) -> TargetData:
    """The target task of `cfg.transfer` with the source's data config (limit, eval batches,
    padding), set up; its errors name `options` (OPTIONS)."""
    t = cfg.transfer
    # Here, not by the data module: it would name data.batch_size, an option transfer lacks.
    check_count(options["batch_size"], t.batch_size, minimum=1)
    data = {k: v for k, v in source.spec["data"].items() if k != "_target_"}
    data |= {
        "root": t.data_root or data["root"],
        "classes": None if t.classes is None else list(t.classes),
        "val_split": 0,
        "batch_size": t.batch_size,
    }
    dm = TargetData(t.labels_per_class, cfg.seed, source.input_normalization(), options, **data)
    dm.setup("fit")
    return dm


def new_head(in_features: int, num_classes: int, seed: int) -> nn.Linear:
    """The target's classifier, PyTorch's default init drawn from `seed` alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, num_classes)


def without_side_heads(model: nn.Module) -> nn.Module:
    """`model` without its side heads (an Inception's, arch.aux_weight > 0): they classify the
    source's classes, and a transfer trains and scores its new head alone, in every mode."""
    if hasattr(model, "aux_heads"):
        model.aux_heads = nn.ModuleList()
    return model


def backbone(model: nn.Module) -> nn.Module:
    """A copy of `model` that outputs the features its classifier reads, in eval mode."""
    features = copy.deepcopy(model)
    setattr(features, HEAD, nn.Identity())
    return features.eval()


def frozen_children(model: nn.Module, mode: str) -> list[str]:
    """Names of the children of `model` that `mode` keeps fixed."""
    if mode in ("none", "scratch"):
        return []
    names = [n for n, _ in model.named_children()]
    before_head = names[: names.index(HEAD)]
    trained = [n for n in before_head if count_params(model.get_submodule(n))]
    return [n for n in names if n not in (trained[-1], HEAD)]


@torch.no_grad()
def compute_features(features: nn.Module, batches: Batches) -> tuple[Tensor, Tensor]:
    """(features, labels) of every image in `batches`, on the CPU."""
    device = next(features.parameters()).device
    out = [(features(x.to(device)).cpu(), y) for x, y in batches]
    return torch.cat([f for f, _ in out]), torch.cat([y for _, y in out])


@contextlib.contextmanager
def _one_thread_on(device: torch.device) -> Iterator[None]:
    """On a CPU, torch on one thread: for small matrix products, handing work to other threads
    costs more than the work (about 100x on a 2-core CPU that is busy with something else)."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_head(
    head: nn.Linear,
    features: Callable[[Tensor], Tensor],
    labels: Tensor,
    schedule: DictConfig,
    batch_size: int,
    seed: int,
) -> nn.Linear:
    """SGD on `head` alone: `features(indices)` gives the inputs of those training images. Each
    epoch is one permutation drawn from `seed`, cut into batches, the last partial one dropped
    (unless it is the only one), as the data module batches training images.

    A plain loop, not Lightning: the features are fixed (no augmentation, no BN), so a step is
    one small matrix product, which Lightning's per-step hooks would outweigh many times."""
    optimizer, scheduler = make_schedule(schedule, batch=batch_size)
    opt = optimizer(head.parameters())
    sched = scheduler(opt)
    g = torch.Generator().manual_seed(seed)
    n, step = len(labels), 0
    per_epoch = max(1, n // batch_size)
    with _one_thread_on(head.weight.device):
        while step < schedule.iterations:
            order = torch.randperm(n, generator=g)
            for i in range(min(per_epoch, schedule.iterations - step)):
                idx = order[i * batch_size : (i + 1) * batch_size]
                loss = F.cross_entropy(head(features(idx)), labels[idx].to(head.weight.device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
    return head


class FineTune(Classifier):
    """A Classifier whose `frozen` children of the net learn nothing: their parameters get no
    gradient, so SGD (weight decay included) leaves them as they are, and they stay in eval mode
    whenever Lightning puts the module in training mode, so their BN statistics stay too."""

    def __init__(self, model: nn.Module, frozen: Sequence[str] = (), **options: Any) -> None:
        super().__init__(model, **options)  # optimizer and scheduler factories
        self.frozen = [model.get_submodule(name) for name in frozen]
        for m in self.frozen:
            m.requires_grad_(False)

    def train(self, mode: bool = True) -> FineTune:
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self


def fine_tune(
    model: nn.Module,
    mode: str,
    data: TargetData,
    cfg: DictConfig,
    callbacks: Sequence[pl.Callback] = (),
) -> nn.Module:
    """Train `model` on `data` in `mode` (last_stage, none, scratch) for schedule.iterations."""
    optimizer, scheduler = make_schedule(cfg.schedule, batch=cfg.transfer.batch_size)
    module = FineTune(model, frozen_children(model, mode), optimizer=optimizer, scheduler=scheduler)
    trainer = make_trainer(
        cfg,
        list(callbacks),
        limit_val_batches=0,  # evaluated once at the end, like every mode
        logger=False,
        enable_checkpointing=False,
    )
    module.train()  # Lightning keeps the modes it finds; the source net comes in eval mode
    with warnings.catch_warnings():  # Lightning warns of the frozen children: they are meant so
        warnings.filterwarnings("ignore", r"Found \d+ module\(s\) in eval mode")
        trainer.fit(module, datamodule=data)
    return model.eval()


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(checkpoint_sha256: str, data: TargetData) -> dict[str, Any]:
    """What the cached features depend on: the checkpoint's bytes, the labelled and test images
    and labels (so data, classes, labels_per_class and seed), and the normalisation."""
    d = data.data
    return {
        "checkpoint_sha256": checkpoint_sha256,
        "images_sha256": _digest(d.x_train, d.y_train, d.x_test, d.y_test),
        "normalization_sha256": _digest(*data.normalization),
        "classes": data.names,
        "labels_per_class": data.labels_per_class,
        "seed": data.seed,
    }


def cached_features(
    cache_dir: Path,
    source: zoo.ZooModel,
    sha256: str,
    data: TargetData,
    device: torch.device | str,
) -> tuple[dict[str, Tensor], str, Path]:
    """The backbone's features of the labelled and test images, {train, train_labels, test,
    test_labels}: read from `cache_dir` (hit) or computed and written there (miss). The file is
    named by its key; a file whose recorded key differs was put there by hand, and is refused."""
    key = cache_key(sha256, data)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = cache_dir / f"{name}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if cached["key"] != key:
            raise CacheMismatchError(_mismatch(path, cached, key, source))
        return cached, "hit", path
    features = backbone(source.model).to(device)
    train, train_labels = compute_features(features, data.plain_batches(train=True))
    test, test_labels = compute_features(features, data.plain_batches(train=False))
    cached = {
        "key": key,
        "source": str(source.checkpoint),
        "train": train,
        "train_labels": train_labels,
        "test": test,
        "test_labels": test_labels,
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(cached, tmp))
    return cached, "miss", path


def _mismatch(path: Path, cached: dict, key: dict, source: zoo.ZooModel) -> str:
    fix = f"delete {path}, or set transfer.cache_dir to another folder"
    if cached["key"]["checkpoint_sha256"] != key["checkpoint_sha256"]:
        return (
            f"features cache {path} was written by another checkpoint ({cached['source']}, "
            f"sha256 {cached['key']['checkpoint_sha256'][:12]}), not by {source.checkpoint} "
            f"(sha256 {key['checkpoint_sha256'][:12]}): {fix}"
        )
    differs = sorted(k for k in key if cached["key"].get(k) != key[k])
    return f"features cache {path} holds features of other {', '.join(differs)}: {fix}"


def _scores(logits: Tensor, labels: Tensor) -> dict[str, float]:
    labels = labels.to(logits.device)
    error = (logits.argmax(1) != labels).double().mean().item() * 100
    return {"test_error": error, "test_loss": F.cross_entropy(logits, labels).item()}


@torch.no_grad()
def _logits(model: nn.Module, batches: Batches) -> tuple[Tensor, Tensor]:
    device = next(model.parameters()).device
    return torch.cat([model(x.to(device)) for x, _ in batches]), torch.cat([y for _, y in batches])


def transfer(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, Any]:
    """One transfer run: train the target head (and more, by mode), evaluate it on the target test
    set. `run_dir` is a run record as a training run's is (depthsweep.runs.rundir): held while the
    run trains, skipped once done, refused if it holds another configuration; its run.json gets
    the result (below) with the status and provenance. Returns run.json's contents. Bad input
    fails before the run directory is made."""
    quiet_libraries()
    t = cfg.transfer
    if OmegaConf.is_missing(t, "source") or t.source is None:  # not OmegaConf's 3-line error
        raise OptionError(SOURCE_REQUIRED)
    if t.freeze not in MODES:
        raise OptionError(f"transfer.freeze={t.freeze!r}: choose one of {', '.join(MODES)}")
    target = [CLASSES[i] for i in class_indices(t.classes, "transfer.classes")]  # fails early
    start = time.perf_counter()
    device = device_for(cfg.trainer.accelerator)
    source = zoo.load(t.source, device)
    seen = [c for c in target if c in source.classes]
    if seen:  # its training images taught the source these classes: no transfer to measure
        new = [c for c in CLASSES if c not in source.classes]
        fix = (
            f"transfer.classes=[{','.join(new)}]"
            if new
            else "a source trained on some classes only (experiment=transfer_source)"
        )
        raise OptionError(
            f"transfer.classes: {', '.join(seen)} already among the source's classes "
            f"({', '.join(source.classes)}); transfer to classes it never saw: {fix}"
        )
    data = target_data(cfg, source)
    label = f"transfer freeze={t.freeze} labels_per_class={t.labels_per_class} seed={cfg.seed}"
    record = RunRecord(run_dir)
    with record.claimed(cfg, label) as not_ours:
        if not_ours:
            return record.read()
        sha256 = zoo.file_sha256(source.checkpoint)
        record.start(
            cfg,
            {
                "freeze": t.freeze,
                "labels_per_class": t.labels_per_class,
                "seed": cfg.seed,
                "source": str(source.checkpoint),
                "source_sha256": sha256,
                "source_arch": source.spec["arch_name"],
                "source_depth": source.spec["depth"],
                "source_classes": source.classes,
                "target_classes": data.names,
                "precision": resolve_precision(cfg.trainer),
                **provenance(device.type == "cuda"),
            },
        )
        try:
            result = _train_and_score(cfg, source, sha256, data, device)
        except Exception as e:  # recorded, then raised: Hydra reports it at the sweep's end
            record.update(status="failed", error=f"{type(e).__name__}: {e}")
            raise
        wall_time_s = round(time.perf_counter() - start, 3)
        record.update(**result, wall_time_s=wall_time_s, status="done", error=None)
    cache = result["cache"]
    log.info(
        f"[{label}] test error {result['test_error']:.2f}%"
        f"{f' (features cache {cache})' if cache else ''} in {wall_time_s:.1f}s"
    )
    return record.read()


def _train_and_score(
    cfg: DictConfig, source: zoo.ZooModel, sha256: str, data: TargetData, device: torch.device
) -> dict[str, Any]:
    """Train in mode transfer.freeze, score on the target test set: the record's results."""
    t = cfg.transfer
    head = new_head(getattr(source.model, HEAD).in_features, len(data.names), cfg.seed)
    cache = cache_file = None
    if t.freeze == "all":
        feats, cache, cache_file = cached_features(Path(t.cache_dir), source, sha256, data, device)
        train, labels = feats["train"].to(device), feats["train_labels"]
        train_head(head.to(device), train.__getitem__, labels, cfg.schedule, t.batch_size, cfg.seed)
        with torch.no_grad():
            scores = _scores(head(feats["test"].to(device)), feats["test_labels"])
    else:
        torch.manual_seed(cfg.seed)  # the scratch net's init and the fine-tuning data order
        if t.freeze == "scratch":
            spec = source.spec
            model = build_model(OmegaConf.create(spec["arch"]), spec["depth"], len(data.names))
        else:
            model = copy.deepcopy(source.model)
        setattr(model, HEAD, head)
        model = fine_tune(without_side_heads(model), t.freeze, data, cfg)
        scores = _scores(*_logits(model.to(device), data.plain_batches(train=False)))
    return {
        **scores,
        "train_images": len(data.data.y_train),
        "test_images": len(data.data.y_test),
        "iterations": cfg.schedule.iterations,
        "cache": cache,
        "cache_file": None if cache is None else str(cache_file),
    }
