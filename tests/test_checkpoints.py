"""Checkpoints are written whole or not at all, and read without running code."""

from __future__ import annotations

import errno
import json
import pickle
import subprocess

import pytest
import torch
from helpers import train_tiny

from depthsweep.runs.rundir import CHECKPOINT
from depthsweep.training import checkpoints
from depthsweep.training.checkpoints import CheckpointWriteError, SafeCheckpointIO
from depthsweep.training.config import compose_config
from depthsweep.training.train import train


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = SafeCheckpointIO()
    io.save_checkpoint({"global_step": 2, "w": torch.ones(3)}, path)

    def half_then_full(obj, f):  # the disk fills halfway through the new file
        f.write(b"PK\x03\x04" + b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoints.torch, "save", half_then_full)
    with pytest.raises(CheckpointWriteError, match="the disk is full.*the previous one is kept"):
        io.save_checkpoint({"global_step": 4}, path)
    assert io.load_checkpoint(path)["global_step"] == 2  # whole, and the old one
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_reading_a_checkpoint_runs_no_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (exec, ("open('pwned', 'w').close()",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        SafeCheckpointIO().load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs: a real file system that fills up (needs the right to mount one)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_disk_that_fills_during_training_loses_no_checkpoint(fake_cifar, small_disk):
    """The checkpoint at iteration 4 finds the disk full (another process filled it; this one is
    larger than the one of iteration 2): the run fails, saying so in one line; the checkpoint of
    iteration 2 is whole, and once there is space the same command resumes from it. (Lightning's
    own writer truncated it: it copies a temporary file from /tmp over the old checkpoint.)"""
    run_dir, filler = small_disk / "run", small_disk / "filler"
    fill = ["+callbacks.fill._target_=helpers.FillDisk", f"+callbacks.fill.path={filler}"]
    cfg = compose_config(
        [
            *["trainer=cpu", "depth=8", f"data.root={fake_cifar}", "data.batch_size=16"],
            *["schedule.iterations=6", "checkpoint_every=2", "trainer.enable_progress_bar=false"],
            *fill,
            "+callbacks.fill.at=3",
            "+callbacks.fill.grow=500000",
        ]
    )
    assert train(cfg, run_dir) == "failed"
    ckpt = torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert ckpt["global_step"] == 2
    filler.unlink()
    again = ["depth=8", "schedule.iterations=6", "checkpoint_every=2", "data.batch_size=16"]
    train_tiny(run_dir, fake_cifar, *again, *fill, "+callbacks.fill.at=99")
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "done"
    assert torch.load(run_dir / CHECKPOINT, weights_only=True)["global_step"] == 6
