"""The Lightning module: a net's cross-entropy loss, its error rate as the paper plots it, and its
optimizer.

`training_step` returns the step's loss and error (%) on the augmented mini-batch; the callback
`window.TrainingWindow` turns them into the logged training metrics (means over the logging
window), the NaN guard and the warm-up switch. Validation logs the error and loss over the whole
test set (dataloader 0) and validation split (1), reduced by Lightning. The optimizer and its lr
schedule are factories (`conf/schedule/`, Hydra `_partial_` nodes, built by `build.make_schedule`)
that `configure_optimizers` hands the parameters; a module built only to evaluate needs neither.
`graphed.GraphedClassifier` replays each training step's forward and backward as one CUDA graph.

A net with side heads (InceptionNet with aux_weight > 0) returns (logits, [side logits]) in
training mode: the loss adds `aux_weight` times each side head's cross-entropy; errors and
evaluation use the main logits only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class Classifier(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        channels_last: bool = False,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Kept in every checkpoint: `spec`, the net's description (build.model_spec), which
        # depthsweep.apps.zoo rebuilds it from. The factories are not kept: a checkpoint holds only
        # tensors and plain values, so that the zoo can load anyone's without running code.
        self.save_hyperparameters("channels_last", "spec")
        self.model = model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.contiguous(memory_format=self.memory_format))

    def loss_and_error(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The mean cross-entropy (side heads weighted in) and the main head's error (%)."""
        x, y = batch
        logits = self(x)
        aux: list[Tensor] = []
        if isinstance(logits, tuple):  # (main, side heads' logits): a net with side heads, training
            logits, aux = logits
        loss = F.cross_entropy(logits, y)
        for side in aux:
            loss = loss + self.model.aux_weight * F.cross_entropy(side, y)
        return loss, (logits.argmax(1) != y).float().mean() * 100

    def step_outputs(self, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """What a training step returns: the loss to minimise and what the callbacks read."""
        loss, error = self.loss_and_error(batch)
        return {"loss": loss, "error": error.detach()}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self.step_outputs(batch)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, dataloader_idx=0):
        loss, error = self.loss_and_error(batch)
        split = "test" if dataloader_idx == 0 else "val"
        self.log_dict(
            {f"{split}_loss": loss, f"{split}_error": error},
            on_epoch=True,
            batch_size=len(batch[1]),
            add_dataloader_idx=False,
        )

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.optimizer(self.parameters())
        # Stepped every iteration; "lr" names its column in metrics.csv (LearningRateMonitor).
        lr_scheduler = {"scheduler": self.scheduler(optimizer), "interval": "step", "name": "lr"}
        return {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
