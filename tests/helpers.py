"""What the tests share beyond fixtures: official-format data, the CLI as a user types it, and a
tiny real training run."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from depthsweep.training.config import compose_config
from depthsweep.training.data import FOLDER, TEST_FILE, TRAIN_FILES
from depthsweep.training.metrics_log import AppendingCSVLogger
from depthsweep.training.train import train

ROOT = Path(__file__).resolve().parents[1]
MATERIALIZE = ROOT.parent / "shared" / "data" / "cifar10" / "materialize.py"


def write_cifar10_batch(path: Path, data: np.ndarray, labels: list[int], **extra) -> None:
    """One batch file as the official python version stores it: a pickled dict."""
    entry = {
        "batch_label": path.name,
        "data": data,
        "labels": labels,
        "filenames": [f"{path.name}_{i:05d}.png" for i in range(len(labels))],
    } | extra
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=4)


def write_random_cifar10(root: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random uint8 images and labels in the official python-version layout under `root`."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(n_train), len(TRAIN_FILES))
    for name, n in [*zip(TRAIN_FILES, map(len, parts), strict=True), (TEST_FILE, n_test)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        write_cifar10_batch(folder / name, data, rng.integers(0, 10, n).tolist())
    return Path(root)


def run_cli(
    *args: str, cwd: Path = ROOT, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m experiments.<args>` as a user types it, from the project's code wherever `cwd`
    is; output captured as text."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_tiny(run_dir: Path, data_root: Path, *overrides: str) -> None:
    """Train one real run (4 iterations, grad norms every 2) into `run_dir`, in this process."""
    cfg = compose_config(
        [
            "trainer=cpu",
            f"data.root={data_root}",
            "data.batch_size=32",
            "schedule.iterations=4",
            "trainer.enable_progress_bar=false",
            "diagnostics.grad_norm_every=2",
            *overrides,
        ],
    )
    assert train(cfg, run_dir) == "done"


class RecordingCallback(pl.Callback):
    """A user's callback, configured by `_target_`: writes how many steps it saw to `path`."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.path.write_text(str(trainer.global_step))


class FillDisk(pl.Callback):
    """Fills the file system of `path` after iteration `at`, leaving `leave` bytes free: a disk
    that fills during training. Its state in checkpoints is `grow` bytes per iteration, so that
    each checkpoint is larger than the one before (one that does not fit in the space its
    predecessor leaves)."""

    def __init__(self, path: str, at: int, leave: int = 4096, grow: int = 0) -> None:
        self.path, self.at, self.leave, self.grow = Path(path), at, leave, grow
        self.step = 0

    def state_dict(self) -> dict:
        return {"pad": torch.zeros(self.grow * self.step // 4)}

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        self.step = trainer.global_step
        if trainer.global_step == self.at:
            free = os.statvfs(self.path.parent).f_bavail * os.statvfs(self.path.parent).f_frsize
            self.path.write_bytes(b"\0" * max(0, free - self.leave))


class Killed(BaseException):
    """SIGKILL, as the process meets it (with `killed_before_the_row`: nothing more written)."""


@contextmanager
def killed_before_the_row(
    monkeypatch, at: int, member: int | None = None, column: str = "train_error"
) -> Iterator[None]:
    """Training in the block is killed just before the row of iteration `at` with `column` (the
    training window's; `train_error_epoch`: the epoch's) is written (a group's: member `member`'s),
    after that iteration's checkpoint where it has one. As after a SIGKILL, no log writes
    anything more, not even Lightning's flush of its buffers on the way out, which would save
    rows a killed process loses."""
    write, save = AppendingCSVLogger.log_metrics, AppendingCSVLogger.save
    killed = False

    def log_metrics(self, metrics, step=None):
        nonlocal killed
        own = getattr(self, "k", None) == member  # MemberLogger: the member's own keys here
        if own and step == at - 1 and column in metrics:  # Lightning's index of `at`
            killed = True
            raise Killed
        if not killed:
            write(self, metrics, step)

    def save_unless_killed(self):
        if not killed:
            save(self)

    with monkeypatch.context() as patched:
        patched.setattr(AppendingCSVLogger, "log_metrics", log_metrics)
        patched.setattr(AppendingCSVLogger, "save", save_unless_killed)
        with pytest.raises(Killed):
            yield
