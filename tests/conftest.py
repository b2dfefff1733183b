"""Shared fixtures: CIFAR-10 batches in the official format, read back by the real reader."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MATERIALIZE = ROOT.parent / "shared" / "data" / "cifar10" / "materialize.py"


def write_cifar(root: Path, n_train: int = 100, n_test: int = 40, seed: int = 0) -> Path:
    """Random images in the official python-version layout: 5 training batches + test_batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, n in [
        *[(f"data_batch_{i}", n_train // 5) for i in range(1, 6)],
        ("test_batch", n_test),
    ]:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
            "filenames": [f"{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    return root


@pytest.fixture
def fake_cifar(tmp_path: Path) -> Path:
    return write_cifar(tmp_path / "data")


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
    return write_cifar(root, n_train=500, n_test=500)


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
