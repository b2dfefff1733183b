"""Fused runs end to end: a group trained as one FusedNet writes, for every member, the run
directory its unfused run writes.

The tolerance is zero. On the CPU with oneDNN off (PyTorch's native kernels; `native_kernels`), a
grouped convolution computes each group with the loop an ungrouped one uses, the classifier runs
each member's own linear layer (checked kernel by kernel in tests/test_fused.py), and FusedSGD
does torch SGD's arithmetic per element: tests/test_fused.py shows the nets bitwise equal step by
step, and here every metrics.csv value (wall time aside) is equal. With oneDNN on, grouped and
ungrouped kernels sum in different orders: a fused group then agrees with its members' unfused
runs within stated rounding bounds (losses within a relative 1e-4, errors within one image:
test_with_the_default_kernels_a_fused_group_agrees_within_rounding; step by step:
tests/test_fused.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from helpers import killed_before_the_row, write_random_cifar10

from depthsweep.apps import zoo
from depthsweep.errors import OptionError
from depthsweep.training import group as group_module
from depthsweep.training.config import compose_config
from depthsweep.training.fused import FusedPadShortcut
from depthsweep.training.group import train_group
from depthsweep.training.train import TestSetChangedError, train

RUNS = [(arch, depth, seed) for depth in (8, 14) for arch in ("plain", "resnet") for seed in (0, 1)]


@pytest.fixture(autouse=True)
def native_kernels():
    with torch.backends.mkldnn.flags(enabled=False):
        yield


def config(data: Path, arch: str, depth: int, seed: int, *extra: str):
    return compose_config(
        [
            *["trainer=cpu", f"data.root={data}", "data.batch_size=16"],
            *["schedule.iterations=12", "trainer.log_every_n_steps=3", "checkpoint_every=4"],
            *[
                f"arch={arch}",
                f"depth={depth}",
                f"seed={seed}",
                "trainer.enable_progress_bar=false",
            ],
            *extra,
        ]
    )


def metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns="wall_time", errors="ignore")


def name(arch: str, depth: int, seed: int) -> str:
    return f"{arch}-{depth}-{seed}"


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> tuple[Path, Path]:
    """The 8 runs trained one by one (depths 8 and 14, plain and resnet, 2 seeds)."""
    data = write_random_cifar10(tmp_path_factory.mktemp("data"), n_train=100, n_test=40)
    out = tmp_path_factory.mktemp("alone")
    with torch.backends.mkldnn.flags(enabled=False):
        for run in RUNS:
            assert train(config(data, *run), out / name(*run)) == "done"
    return data, out


def test_a_fused_sweep_writes_every_runs_own_numbers(alone, tmp_path):
    """Two groups of four (one per depth), as the sweeper groups them with fuse=4."""
    data, separate = alone
    for depth in (8, 14):
        runs = [r for r in RUNS if r[1] == depth]
        assert train_group([(config(data, *r, "fuse=4"), tmp_path / name(*r)) for r in runs]) == (
            "done"
        )
    for run in RUNS:
        pd.testing.assert_frame_equal(
            metrics(tmp_path / name(*run)), metrics(separate / name(*run)), check_exact=True
        )
        info = json.loads((tmp_path / name(*run) / "run.json").read_text())
        assert info["status"] == "done" and len(info["fused_with"]) == 3
        assert (
            info["params"] == json.loads((separate / name(*run) / "run.json").read_text())["params"]
        )
        hparams = (tmp_path / name(*run) / "hparams.yaml").read_text()
        assert hparams == (separate / name(*run) / "hparams.yaml").read_text()
        assert f"depth: {run[1]}" in hparams  # the member's net, not the group's
    # Each member's checkpoint is an unfused run's: the zoo loads it, and its logged test error
    # comes back from the file alone.
    member = tmp_path / name("resnet", 14, 1)
    assert type(zoo.load(member).model).__name__ == "ResNet"
    last = metrics(member).dropna(subset=["test_error"]).iloc[-1]
    assert zoo.evaluate(member)["test_error"] == pytest.approx(last["test_error"], abs=1e-9)


def pad_the_concatenation(self, x):
    """Option A done wrong for a fused group: the concatenation padded, so that each member's
    new channels hold its neighbour's (the coupling FusedPadShortcut exists to avoid)."""
    x = x[:, :, :: self.stride, :: self.stride]
    half = self.extra // 2
    return F.pad(x, (0, 0, 0, 0, self.k * half, self.k * (self.extra - half)))


@pytest.mark.parametrize("coupled", [False, True], ids=["members apart", "members coupled"])
def test_with_the_default_kernels_a_fused_group_agrees_within_rounding(
    coupled, tmp_path, monkeypatch
):
    """oneDNN (the CPU default) sums grouped and ungrouped convolutions in different orders: the
    curves then agree within rounding, not bitwise. Stated tolerance over these 12 iterations:
    losses within a relative 1e-4 (measured: about 1e-6), errors within one image. A group whose
    members are coupled (the resnet member's shortcuts reading the plain one's channels) is far
    outside it: the check tells a real coupling from rounding on any CPU."""
    data = write_random_cifar10(tmp_path / "data", n_train=100, n_test=40)
    runs = [("plain", 8, 0), ("resnet", 8, 0)]
    if coupled:
        monkeypatch.setattr(FusedPadShortcut, "forward", pad_the_concatenation)
    with torch.backends.mkldnn.flags(enabled=True):
        for r in runs:
            assert train(config(data, *r), tmp_path / "alone" / name(*r)) == "done"
        group = [(config(data, *r), tmp_path / "fused" / name(*r)) for r in runs]
        assert train_group(group) == "done"
    worst = 0.0
    for r in runs:
        alone, fused = (metrics(tmp_path / kind / name(*r)) for kind in ("alone", "fused"))
        for column in ("train_loss", "test_loss", "train_error", "test_error"):
            assert alone[column].isna().equals(fused[column].isna()), column  # same rows logged
        for column in ("train_loss", "test_loss"):
            a, f = alone[column].dropna().to_numpy(), fused[column].dropna().to_numpy()
            worst = max(worst, float(np.max(np.abs(a - f) / np.abs(a))))
        if not coupled:
            errors = (alone["train_error"] - fused["train_error"]).dropna()
            assert errors.abs().max() <= 100 / 16 + 1e-9  # one image of a 16-image batch
            test = alone["test_error"].dropna() - fused["test_error"].dropna()
            assert test.abs().max() <= 100 / 40 + 1e-9  # one of the 40 test images
    assert worst > 1e-2 if coupled else worst <= 1e-4, worst


class Crash(pl.Callback):
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 6:
            raise RuntimeError("the machine went away")


def test_a_group_resumes_from_its_members_checkpoints(alone, tmp_path, monkeypatch):
    data, separate = alone
    runs = [r for r in RUNS if r[1] == 8]
    group = [(config(data, *r), tmp_path / name(*r)) for r in runs]
    make_trainer = group_module.make_trainer
    monkeypatch.setattr(
        group_module,
        "make_trainer",
        lambda cfg, callbacks, **kw: make_trainer(cfg, [*callbacks, Crash()], **kw),
    )
    assert train_group(group) == "failed"  # at iteration 6; checkpoints at 4
    assert all(json.loads((d / "run.json").read_text())["status"] == "failed" for _, d in group)
    for _, run_dir in group:  # each member's checkpoint callback names its own file, not member 0's
        saved = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["callbacks"]
        [state] = [s for s in saved.values() if "last_model_path" in s]
        assert state["dirpath"] == str(run_dir / "checkpoints")
        assert state["last_model_path"] == str(run_dir / "checkpoints/last.ckpt")
    monkeypatch.setattr(group_module, "make_trainer", make_trainer)
    # Resumed on another test set, the group is refused as a single run is: nothing mixed in.
    other = write_random_cifar10(tmp_path / "other", n_train=100, n_test=40, seed=1)
    moved = [(config(other, *r), d) for r, (_, d) in zip(runs[:3], group, strict=False)]
    with pytest.raises(TestSetChangedError, match="was tested on 40 images"):
        train_group(moved)
    # Three resume together from iteration 4; a member's checkpoint is an unfused run's, so the
    # fourth resumes alone.
    assert train_group(group[:3]) == "done"
    assert train(*group[3]) == "done"
    for run in runs:
        pd.testing.assert_frame_equal(
            metrics(tmp_path / name(*run)), metrics(separate / name(*run)), check_exact=True
        )


def test_a_group_killed_between_a_checkpoint_and_a_members_row_resumes_to_its_runs_logs(
    alone, tmp_path, monkeypatch, caplog
):
    """Killed after the group's checkpoint of iteration 4 and member 0's row of it, before
    member 1's: resumed, the group writes the row again for members 1 to 3, not for member 0."""
    data, separate = alone
    runs = [r for r in RUNS if r[1] == 8]
    group = [(config(data, *r), tmp_path / name(*r)) for r in runs]
    with killed_before_the_row(monkeypatch, at=4, member=1):
        train_group(group)
    with caplog.at_level(logging.WARNING, logger="depthsweep"):
        assert train_group(group) == "done"
    lost = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert [line.split(": iteration 4's train_error, lost")[0] for line in lost] == [
        str(run_dir) for _, run_dir in group[1:]
    ]
    for run in runs:
        pd.testing.assert_frame_equal(
            metrics(tmp_path / name(*run)), metrics(separate / name(*run)), check_exact=True
        )


def test_a_group_killed_between_two_members_epoch_rows_writes_each_once(
    alone, tmp_path, monkeypatch
):
    """At an epoch's last iteration (6 batches an epoch), checkpointed there, killed after
    member 0's epoch row and before member 1's: resumed, every member has the row once."""
    data, separate = alone
    runs = [r for r in RUNS if r[1] == 8]
    group = [(config(data, *r, "checkpoint_every=6"), tmp_path / name(*r)) for r in runs]
    with killed_before_the_row(monkeypatch, at=6, member=1, column="train_error_epoch"):
        train_group(group)
    assert train_group(group) == "done"
    for run in runs:
        resumed, whole = (
            metrics(d / name(*run)).dropna(subset=["train_error_epoch"])
            for d in (tmp_path, separate)
        )
        assert resumed.step.tolist() == whole.step.tolist() == [6, 12]
        assert resumed.train_error_epoch.tolist() == whole.train_error_epoch.tolist()


def test_a_warm_up_ends_per_member(alone, tmp_path, caplog):
    """resnet members warm up (their own schedule.warmup), plain members do not: each member's
    lr trace and warm-up end are its unfused run's, and the console line names the member."""
    data, _ = alone
    warm = ["schedule.warmup.from_depth=8", "schedule.warmup.until_train_error=101"]
    warm += ["schedule.warmup.max_fraction=0.5"]  # ended by the first check, not by the cap
    runs = [("plain", 8, 0, []), ("resnet", 8, 0, warm), ("resnet", 8, 1, warm)]
    for where, fused in ((tmp_path / "alone", False), (tmp_path / "fused", True)):
        cfgs = [(config(data, a, d, s, *w), where / name(a, d, s)) for a, d, s, w in runs]
        if fused:
            with caplog.at_level(logging.INFO, logger="depthsweep"):
                assert train_group(cfgs) == "done"
        else:
            assert all(train(c, p) == "done" for c, p in cfgs)
    for a, d, s, w in runs:
        fused, separate = tmp_path / "fused" / name(a, d, s), tmp_path / "alone" / name(a, d, s)
        pd.testing.assert_frame_equal(metrics(fused), metrics(separate), check_exact=True)
        ends = [json.loads((p / "run.json").read_text())["warmup_end"] for p in (fused, separate)]
        # 12 iterations log (and check) every iteration: the first check ends it.
        assert ends[0] == ends[1] == (1 if w else None)
    said = [r.getMessage() for r in caplog.records if "warm-up over" in r.getMessage()]
    assert sorted(line.split("]")[0] for line in said) == ["[resnet-8 seed=0", "[resnet-8 seed=1"]


def test_a_diverging_member_fails_alone(alone, tmp_path):
    data, separate = alone
    boom = config(data, "resnet", 8, 0, "schedule.optimizer.lr=1e12")
    assert train(boom, tmp_path / "boom-alone") == "failed"
    runs = [(boom, tmp_path / "boom")]
    runs += [
        (config(data, *r), tmp_path / name(*r)) for r in RUNS if r[1] == 8 and r[:1] != ("resnet",)
    ]
    assert train_group(runs) == "failed"
    failed = json.loads((tmp_path / "boom" / "run.json").read_text())
    alone_failed = json.loads((tmp_path / "boom-alone" / "run.json").read_text())
    assert failed["status"] == "failed" and failed["error"] == alone_failed["error"]
    assert failed["error"].startswith("FloatingPointError: training loss became")
    pd.testing.assert_frame_equal(
        metrics(tmp_path / "boom"), metrics(tmp_path / "boom-alone"), check_exact=True
    )
    for r in RUNS:
        if r[1] == 8 and r[0] == "plain":  # the others went on, untouched
            pd.testing.assert_frame_equal(
                metrics(tmp_path / name(*r)), metrics(separate / name(*r)), check_exact=True
            )


def test_a_group_whose_every_member_diverges_fails(alone, tmp_path, caplog):
    data, _ = alone
    runs = [
        (config(data, "resnet", 8, seed, "schedule.optimizer.lr=1e12"), tmp_path / f"boom{seed}")
        for seed in (0, 1)
    ]
    with caplog.at_level(logging.ERROR, logger="depthsweep"):
        assert train_group(runs) == "failed"
    for _, run_dir in runs:
        info = json.loads((run_dir / "run.json").read_text())
        assert info["status"] == "failed"
        assert info["error"].startswith("FloatingPointError: training loss became")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 2 and lines[-1].endswith(
        "the rest of its fused group has stopped: all failed"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_graphed_fused_group_trains_like_an_eager_one(
    precision, fake_cifar, tmp_path, monkeypatch
):
    """The whole group's step replayed as one CUDA graph (bf16 and channels-last as a single run
    gets them) gives the eager group's curves on the GPU (no CPU runs first: GPU time is scarce)."""
    data = fake_cifar
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # same kernels both ways
    runs = [r for r in RUNS if r[1] == 8]
    gpu = ["trainer=default", f"trainer.precision={precision}", "trainer.benchmark=false"]
    curves = {}
    for graph in (False, True):
        group = [
            (config(data, *r, *gpu, f"cuda_graph={graph}"), tmp_path / str(graph) / name(*r))
            for r in runs
        ]
        assert train_group(group) == "done"
        curves[graph] = [metrics(d).dropna(subset=["train_loss"]) for _, d in group]
    for eager, graphed in zip(curves[False], curves[True], strict=True):
        for column in ("train_loss", "train_error"):
            pd.testing.assert_series_equal(eager[column], graphed[column], rtol=1e-4)


def test_a_member_with_a_bad_option_stops_the_group_before_anything_is_set(tmp_path):
    """Every member's options are checked before the group sets torch's threads (from its
    first member) or claims any run directory."""
    data = write_random_cifar10(tmp_path / "data", n_train=32, n_test=16)
    threads = torch.get_num_threads()
    first = config(data, "plain", 8, 0, f"threads={threads + 1}")
    bad = config(data, "resnet", 8, 0, "threads=0")
    with pytest.raises(OptionError, match="threads=0: must be an integer >= 1"):
        train_group([(first, tmp_path / "a"), (bad, tmp_path / "b")])
    assert torch.get_num_threads() == threads
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
