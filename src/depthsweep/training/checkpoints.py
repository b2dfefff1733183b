"""How a run's checkpoints are written and read: whole or not at all, and never running code.

Lightning's own writer (TorchCheckpointIO) saves through an fsspec transaction whose temporary
file lies in the system's temp directory; "committing" it is then a copy across file systems
over the old checkpoint, so a disk that fills during the copy leaves `last.ckpt` truncated and the
run's only checkpoint lost (measured: a 2 MB tmpfs). Here the temporary file lies beside the
target, is flushed to disk, then renamed over it: the previous checkpoint stays whole until the
new one is. Reading is weights-only (tensors and plain containers), so a checkpoint from
elsewhere cannot run code.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from depthsweep.files import atomic_write


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one, if any, is untouched."""


def _fsynced_save(checkpoint: dict[str, Any], tmp: Path) -> None:
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic writes beside the target, weights-only reads (see the module's docstring)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: _fsynced_save(checkpoint, tmp))
        except OSError as e:
            kept = "the previous one is kept" if path.is_file() else "there was none before"
            full = " (the disk is full)" if e.errno == errno.ENOSPC else ""
            raise CheckpointWriteError(
                e.errno, f"could not write checkpoint {path}{full}: {e.strerror or e}; {kept}"
            ) from None

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool | None = None
    ) -> dict[str, Any]:
        return torch.load(path, map_location=map_location, weights_only=True)
