"""The data of a fused group: one copy of CIFAR-10 on the device, K members' own batches.

Each member draws its training order and its crops and flips from its own streams, seeded with
its own seed exactly as its CIFAR10DataModule would seed them alone, so that member k sees the
batches of its unfused run. A training batch is the K members' batches stacked, (K, B, 3, H, W)
and (K, B); evaluation batches are the test set's, shared (the module feeds them to every member).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from depthsweep.training.data import (
    AUGMENT_STREAM,
    CIFAR10DataModule,
    DeviceBatches,
    random_crop_flip,
)


class MemberBatches:
    """The members' DeviceBatches in lockstep: each step yields their batches stacked. Resumable
    as each of them is (Lightning saves `state_dict` in checkpoints)."""

    def __init__(self, members: Sequence[DeviceBatches]) -> None:
        self.members = list(members)

    def __len__(self) -> int:
        return len(self.members[0])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for batches in zip(*self.members, strict=True):
            xs, ys = zip(*batches, strict=True)
            yield torch.stack(xs), torch.stack(ys)

    @property
    def trained(self) -> int:
        return self.members[0].trained

    def count_trained(self) -> None:
        for m in self.members:
            m.trained += 1

    def state_dict(self) -> dict[str, Any]:
        return {"members": [m.state_dict() for m in self.members]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for m, s in zip(self.members, state["members"], strict=True):
            m.load_state_dict(s)


class FusedData(CIFAR10DataModule):
    """CIFAR10DataModule for K members that differ only in `seeds`."""

    def __init__(self, seeds: Sequence[int], **data: Any) -> None:
        super().__init__(**data, seed=seeds[0])
        self.seeds = list(seeds)
        self.orders: list[torch.Generator] = []
        self.augments: list[torch.Generator] = []
        self._augment_states: list[Tensor] | None = None

    def _generators(self) -> None:
        dev = self._device
        if not self.orders or self.orders[0].device != dev:
            self.orders = [torch.Generator(dev).manual_seed(s) for s in self.seeds]
            self.augments = [
                torch.Generator(dev).manual_seed(s + AUGMENT_STREAM) for s in self.seeds
            ]
        if self._augment_states is not None:
            for g, state in zip(self.augments, self._augment_states, strict=True):
                g.set_state(state)
            self._augment_states = None

    def train_dataloader(self) -> MemberBatches:
        self._generators()
        x, y = self._split(train=True)
        members = []
        for order in self.orders:
            self.order = order  # _batches hands the training loader this stream
            members.append(self._batches(x, y, train=True))
        self._train = MemberBatches(members)
        return self._train

    def state_dict(self) -> dict[str, Any]:
        return {"augments": [g.get_state() for g in self.augments]} if self.augments else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._augment_states = state.get("augments")

    def member_state(self, state: dict[str, Any], k: int) -> dict[str, Any]:
        """Member k's part of `state_dict()`, as its own CIFAR10DataModule's."""
        return {"augment": state["augments"][k]} if state else {}

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int):
        x, y = batch
        if self.trainer is None or not self.trainer.training:  # a shared evaluation batch
            return super().on_after_batch_transfer(batch, dataloader_idx)
        x = torch.stack(
            [random_crop_flip(xk, self.pad, g) for xk, g in zip(x, self.augments, strict=True)]
        )
        self._train.count_trained()  # these batches are about to be trained on
        return (x.float() - self.shift) / self.scale, y
