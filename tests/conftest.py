"""Shared fixtures: CIFAR-10 batches in the official format, read back by the real reader."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from depthsweep.bench import write_random_cifar10
from depthsweep.train import compose_config, train

ROOT = Path(__file__).resolve().parents[1]
MATERIALIZE = ROOT.parent / "shared" / "data" / "cifar10" / "materialize.py"


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    return write_random_cifar10(tmp_path / "data", n_train=100, n_test=40)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """Real CIFAR-10 (first 2000 images) from ../shared when it is there, else random images in
    the same official format: either way the project's own reader loads it."""
    root = tmp_path_factory.mktemp("cifar")
    if MATERIALIZE.is_file():
        subprocess.run(
            [sys.executable, str(MATERIALIZE), str(root), "--limit", "2000"],
            check=True,
            capture_output=True,
        )
        return root
    return write_random_cifar10(root, n_train=500, n_test=500)


def run_cli(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m experiments.<args>` as a user types it; output captured as text."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}
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
