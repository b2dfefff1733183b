"""Shared fixtures: CIFAR-10 batches in the official format, read back by the real reader. One
torch thread in the tests and the processes they start: these tiny nets gain nothing from more,
and on a small CPU busy with other work a second thread made steps 20-30x slower."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import MATERIALIZE, write_random_cifar10

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


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
