"""Where a run came from: the code's commit, the library versions, the device it trained on."""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch

SOURCE = Path(__file__).resolve().parent
# The CPU features the fast paths depend on (bf16 autocast, channels-last; README, Speed).
FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.cache
def _cpuinfo(cpuinfo: Path) -> tuple[str, ...]:
    """The lines of Linux's /proc/cpuinfo (none where there is no such file)."""
    try:
        return tuple(cpuinfo.read_text().splitlines())
    except OSError:
        return ()


@functools.cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This CPU's feature flags, from Linux's /proc/cpuinfo (none where there is no such file)."""
    return frozenset(
        f for line in _cpuinfo(cpuinfo) if line.startswith("flags") for f in line.split()
    )


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """This CPU's model name, from Linux's /proc/cpuinfo (None where there is no such file, or
    no such line in it: ARM's has none)."""
    names = (
        line.partition(":")[2].strip()
        for line in _cpuinfo(cpuinfo)
        if line.startswith("model name")
    )
    return next(names, None)


def provenance(on_gpu: bool) -> dict[str, object]:
    """run.json's record of the code and the machine; None where unknown (no git checkout, no
    CUDA, no /proc/cpuinfo). `git_dirty`: the checkout had uncommitted changes to tracked files.
    The CPU (a GPU run's host too): its model, which of FEATURES it has, and the kernels' level
    ATen picked (AVX512, AVX2, DEFAULT), which fix its numbers' rounding (README, Fused runs)."""
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
        "cpu": cpu_model(),
        "cpu_features": [f for f in FEATURES if f in cpu_flags()],
        "aten_cpu": torch.backends.cpu.get_cpu_capability(),
    }
