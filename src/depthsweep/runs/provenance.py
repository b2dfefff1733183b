"""Where a run came from: the code's commit, the library versions, the device it trained on."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch

SOURCE = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(on_gpu: bool) -> dict[str, object]:
    """run.json's record of the code and the machine; None where unknown (no git checkout, no
    CUDA). `git_dirty`: the checkout had uncommitted changes to tracked files."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    cpu = platform.processor() or platform.machine()
    return {
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "lightning": pl.__version__,
        "hydra": hydra.__version__,
        "device": torch.cuda.get_device_name() if on_gpu else f"CPU {cpu}",
    }
