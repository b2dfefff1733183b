"""K runs trained as one FusedNet under Lightning, each member still its own run.

Lightning trains one module with one optimizer, one scheduler, its loggers and one checkpoint
file; a fused group has K of each. The pieces here keep Lightning's loop (steps, precision,
evaluation, checkpoint timing, signals) and split what is per member:

- `FusedClassifier`: the FusedNet, the summed loss, per-member losses and errors; each member's
  metrics are logged as `<name>@<k>` (evaluation included: the test batches go to every member);
- `FusedSGD` with `MemberSchedules` (the members' own PaperLRs, stepped and checkpointed where
  Lightning steps an unfused run's scheduler);
- `FusedTrainingWindow`: the metrics window per member; a member whose loss is no longer finite
  is stopped (`FusedClassifier.fail`) while the others go on; warm-up ends per member;
- `MemberLRMonitor`, `MemberLogger`: each member's `lr` and metrics into its own metrics.csv, with
  the rows an unfused run writes;
- `GroupCheckpointIO`: every checkpoint Lightning writes becomes one checkpoint per member, in an
  unfused run's format (the zoo loads it; an unfused run resumes from it), and a group resumes
  from its members' checkpoints.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from depthsweep.training.checkpoints import SafeCheckpointIO
from depthsweep.training.fused import FusedNet, FusedSGD, fused_loss_and_error
from depthsweep.training.graphed import GraphedClassifier
from depthsweep.training.metrics_log import AppendingCSVLogger
from depthsweep.training.module import Classifier, OptimizerFactory, SchedulerFactory
from depthsweep.training.schedule import PaperLR
from depthsweep.training.window import TrainingWindow

log = logging.getLogger(__name__)
SEP = "@"  # `train_error@3`: member 3's train_error


def member_key(name: str, k: int) -> str:
    return f"{name}{SEP}{k}"


class MemberSchedules:
    """The members' own PaperLRs as the one scheduler Lightning steps and checkpoints (it needs an
    `optimizer`, `step` and a state; `FusedClassifier.lr_scheduler_step` steps it)."""

    def __init__(self, optimizer: FusedSGD, schedulers: Sequence[PaperLR]) -> None:
        self.optimizer, self.schedulers = optimizer, list(schedulers)

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def state_dict(self) -> dict[str, Any]:
        return {"members": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s, own in zip(self.schedulers, state["members"], strict=True):
            s.load_state_dict(own)


class FusedClassifier(Classifier):
    """The Classifier of a FusedNet: `members` are the members' own (unfused) Classifiers, whose
    optimizer and scheduler factories and hyperparameters each member keeps. `on_fail(k, error)`
    is told when member k stops."""

    def __init__(
        self,
        model: FusedNet,
        members: Sequence[Classifier],
        on_fail: Callable[[int, str], None] | None = None,
    ) -> None:
        super().__init__(model, channels_last=members[0].hparams.channels_last)
        # Not modules of this one: their nets were copied into the FusedNet.
        self.member_hparams = [dict(m.hparams) for m in members]
        self._factories: list[tuple[OptimizerFactory, SchedulerFactory]] = [
            (m.optimizer, m.scheduler) for m in members
        ]
        self.model.memory_format = self.memory_format
        self.active = [True] * model.k
        self.on_fail = on_fail

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)  # the FusedNet lays its input out itself

    def step_outputs(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        x, y = batch
        total, losses, errors = fused_loss_and_error(self(x), y)
        return {"loss": total, "losses": losses, "error": errors}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx=0):
        x, y = batch
        k = self.model.k
        logits = self(x.unsqueeze(0).expand(k, *x.shape))  # the same images to every member
        split = "test" if dataloader_idx == 0 else "val"
        values = {}
        for i in range(k):
            if self.active[i]:  # as an unfused Classifier computes them
                values[member_key(f"{split}_loss", i)] = F.cross_entropy(logits[i], y)
                values[member_key(f"{split}_error", i)] = (
                    logits[i].argmax(1) != y
                ).float().mean() * 100
        self.log_dict(values, on_epoch=True, batch_size=len(y), add_dataloader_idx=False)

    def configure_optimizers(self) -> dict[str, Any]:
        """FusedSGD with each member's lr and weight decay (its `schedule.optimizer` partial,
        torch.optim.SGD: fusion_key keeps the rest equal), and each member's own scheduler on its
        stand-in optimizer."""
        options = [factory.keywords for factory, _ in self._factories]
        optimizer = FusedSGD(
            self.model,
            lr=[o["lr"] for o in options],
            momentum=options[0].get("momentum", 0.0),
            weight_decay=[o.get("weight_decay", 0.0) for o in options],
        )
        schedulers = [
            scheduler(member)
            for (_, scheduler), member in zip(self._factories, optimizer.members, strict=True)
        ]
        lr_scheduler = {"scheduler": MemberSchedules(optimizer, schedulers), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}

    def lr_scheduler_step(self, scheduler: MemberSchedules, metric: Any = None) -> None:
        scheduler.step()

    def fail(self, k: int, error: str) -> None:
        """Stop member k (no more updates, no more metrics or checkpoints); the others go on."""
        self.active[k] = False
        optimizer = self.optimizers()
        getattr(optimizer, "optimizer", optimizer).freeze(k)  # through Lightning's wrapper
        if self.on_fail is not None:
            self.on_fail(k, error)
        if not any(self.active):
            raise FloatingPointError(f"every member of the fused group stopped; the last: {error}")


class FusedGraphedClassifier(GraphedClassifier, FusedClassifier):
    """A FusedClassifier whose steps (the whole group's forward, loss and backward) replay as one
    CUDA graph, as GraphedClassifier's do."""


class FusedTrainingWindow(TrainingWindow):
    """TrainingWindow for a group: one value per member, logged per member; a member whose loss
    is no longer finite is stopped alone; member k's warm-up ends below its own threshold
    `until_train_error[k]`. Its checkpoint state keeps the unfused name, so a member's slice of it
    is an unfused run's."""

    def __init__(
        self, until_train_error: Sequence[float], labels: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        self.thresholds = list(until_train_error)
        self.labels = list(labels or (f"member {k}" for k in range(len(self.thresholds))))

    @property
    def state_key(self) -> str:
        return "TrainingWindow"

    def values(self, outputs: Any) -> Tensor:
        return torch.stack([outputs["losses"], outputs["error"]])

    def named(self, module: pl.LightningModule, values: dict[str, Tensor]) -> dict[str, Tensor]:
        return {
            member_key(name, k): v[k]
            for name, v in values.items()
            for k in range(len(v))
            if module.active[k]
        }

    def check(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        loss: Sequence[float],
        error: Sequence[float],
    ) -> None:
        schedules = module.lr_schedulers().schedulers
        for k in [k for k in range(len(loss)) if module.active[k]]:
            fault = self.decide(
                schedules[k],
                loss[k],
                error[k],
                self.thresholds[k],
                trainer.global_step,
                self.labels[k],
            )
            if fault:
                module.fail(k, f"FloatingPointError: {fault}")


class MemberLRMonitor(pl.Callback):
    """Each member's lr, logged as Lightning's LearningRateMonitor logs an unfused run's: before
    each step that Lightning writes, the rate that step uses."""

    def on_train_batch_start(self, trainer: pl.Trainer, module, batch, batch_idx: int) -> None:
        if (trainer.global_step + 1) % trainer.log_every_n_steps and not trainer.should_stop:
            return
        schedules = module.lr_schedulers()
        lrs = {
            member_key("lr", k): s.optimizer.param_groups[0]["lr"]
            for k, s in enumerate(schedules.schedulers)
        }
        for logger in trainer.loggers:
            logger.log_metrics(lrs, step=trainer.global_step)


class MemberLogger(AppendingCSVLogger):
    """Member k's metrics.csv: the group's rows with member k's `name@k` as `name`, and what the
    group shares (step, epoch, wall time); its hparams.yaml: the member's own (`hparams`, its
    unfused Classifier's), not the group's. `active` False: nothing more is written."""

    def __init__(self, run_dir: Path, k: int, hparams: dict[str, Any]) -> None:
        super().__init__(run_dir)
        self.k, self.active, self.hparams = k, True, hparams

    def log_hyperparams(self, params: Any = None, *args: Any, **kwargs: Any) -> None:
        super().log_hyperparams(self.hparams, *args, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if not self.active:
            return
        own = f"{SEP}{self.k}"
        shared = {key: v for key, v in metrics.items() if SEP not in key}
        mine = {key[: -len(own)]: v for key, v in metrics.items() if key.endswith(own)}
        if len(shared) < len(metrics) and not mine:
            return  # other members' values only
        super().log_metrics(shared | mine, step)


class GroupCheckpointIO(SafeCheckpointIO):
    """Writes each checkpoint of a group as one unfused checkpoint per active member, to
    `paths[k]` (the path Lightning asks for is the first member's), and reads a group's back from
    its members' files. `module` is the group's FusedClassifier, `data` its FusedData."""

    def __init__(self, module: FusedClassifier, paths: Sequence[Path], data) -> None:
        super().__init__()
        self.module, self.paths, self.data = module, list(paths), data

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        for k, own in enumerate(self.paths):
            if self.module.active[k]:
                super().save_checkpoint(self.member(checkpoint, k), own, storage_options)

    def load_checkpoint(self, path, map_location: Any = "cpu", weights_only=None) -> dict:
        members = [
            super(GroupCheckpointIO, self).load_checkpoint(p, map_location) for p in self.paths
        ]
        return self.merge(members)

    def member(self, checkpoint: dict[str, Any], k: int) -> dict[str, Any]:
        """Member k's part of the group's checkpoint, as its unfused run would have written it."""
        data_name = type(self.data).__qualname__
        own = {}
        for key, value in checkpoint.items():
            if key == "state_dict":
                net = self.module.model.member_state_dict(k)
                value = OrderedDict((f"model.{n}", t) for n, t in net.items())
            elif key == "loops":
                value = _member_loops(value, k)
            elif key == "callbacks":
                value = {
                    name: _member_callback(name, s, k, self.paths[k]) for name, s in value.items()
                }
            elif key in ("optimizer_states", "lr_schedulers"):  # FusedSGD's, MemberSchedules'
                value = [value[0]["members"][k]]
            elif key == "hyper_parameters":
                value = self.module.member_hparams[k]
            elif key == data_name:
                key, value = "CIFAR10DataModule", self.data.member_state(value, k)
            own[key] = value
        return own

    def merge(self, members: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The group's checkpoint from its members' (all at one iteration)."""
        steps = {m["global_step"] for m in members}
        if len(steps) != 1:
            raise ValueError(f"members' checkpoints are at different iterations: {sorted(steps)}")
        net = self.module.model
        for k, m in enumerate(members):
            prefix = "model."
            net.load_member_state_dict(k, {n[len(prefix) :]: t for n, t in m["state_dict"].items()})
        merged = copy.copy(members[0])
        merged["state_dict"] = OrderedDict((f"model.{n}", t) for n, t in net.state_dict().items())
        merged["optimizer_states"] = [
            {
                "members": [m["optimizer_states"][0] for m in members],
                "frozen": [False] * len(members),
            }
        ]
        merged["lr_schedulers"] = [{"members": [m["lr_schedulers"][0] for m in members]}]
        merged["callbacks"] = dict(members[0]["callbacks"])
        if "TrainingWindow" in merged["callbacks"]:
            states = [m["callbacks"]["TrainingWindow"] for m in members]
            merged["callbacks"]["TrainingWindow"] = {
                **states[0],
                "recent": _stack_last([s["recent"] for s in states]),
                "epoch_sum": _stack_last([s["epoch_sum"] for s in states]),
            }
        loaders = [_fit_loop(m["loops"]).get("combined_loader") for m in members]
        merged["loops"] = copy.deepcopy(members[0]["loops"])
        if all(loaders):
            _fit_loop(merged["loops"])["combined_loader"] = [
                {"members": [own[0] for own in loaders]}
            ]
        data = [m.get("CIFAR10DataModule", {}).get("augment") for m in members]
        merged.pop("CIFAR10DataModule", None)
        merged[type(self.data).__qualname__] = (
            {"augments": data} if all(d is not None for d in data) else {}
        )
        return merged


def _stack_last(tensors: Sequence[Tensor | None]) -> Tensor | None:
    return None if tensors[0] is None else torch.stack(list(tensors), dim=-1)


def _fit_loop(loops: dict[str, Any]) -> dict[str, Any]:
    """The fit loop's own state in a checkpoint's `loops`: where Lightning keeps the training
    loader's state (`combined_loader`)."""
    return loops["fit_loop"]["state_dict"]


def _member_loops(loops: dict[str, Any], k: int) -> dict[str, Any]:
    loops = copy.deepcopy(loops)
    loader = _fit_loop(loops).get("combined_loader")
    if loader:
        _fit_loop(loops)["combined_loader"] = [loader[0]["members"][k]]
    return loops


def _member_callback(name: str, state: Any, k: int, path: Path) -> Any:
    if name == "TrainingWindow":
        return {
            **state,
            "recent": None if state["recent"] is None else state["recent"][..., k],
            "epoch_sum": None if state["epoch_sum"] is None else state["epoch_sum"][..., k],
        }
    if "last_model_path" in state:  # a ModelCheckpoint's (LastCheckpoint's): as the member's own
        return {**state, "dirpath": str(path.parent), "last_model_path": str(path)}
    return state
