"""The fast paths (channels-last, the CUDA-graph step) give the eager path's training curve on the
same seed, for the parts that run on a CPU; which path a run takes by default."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from depthsweep.errors import OptionError
from depthsweep.training import config
from depthsweep.training import train as train_module
from depthsweep.training.build import build_model, build_net, make_module, make_trainer
from depthsweep.training.clocks import StepClock
from depthsweep.training.config import compose_config, resolve_cuda_graph
from depthsweep.training.train import train


def curve(overrides: list[str], run_dir) -> pd.DataFrame:
    assert train(compose_config(overrides), run_dir) == "done"
    return pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_loss"]).set_index("step")


def lr_trace(run_dir: Path) -> pd.Series:
    return pd.read_csv(run_dir / "metrics.csv").dropna(subset=["lr"]).set_index("step")["lr"]


def test_channels_last_matches_eager(fake_cifar, tmp_path, monkeypatch):
    layouts = []  # each training forward's input: channels-last, or not

    def recording(cfg):
        net = build_net(cfg)
        net.register_forward_pre_hook(
            lambda _, args: (
                layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
                if net.training
                else None
            )
        )
        return net

    monkeypatch.setattr(train_module, "build_net", recording)
    common = [
        "depth=8",
        f"data.root={fake_cifar}",
        "data.batch_size=20",
        "schedule.iterations=20",
        "trainer.log_every_n_steps=2",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
    ]
    eager = curve(common, tmp_path / "eager")
    assert layouts == [False] * 20
    channels_last = curve([*common, "channels_last=true"], tmp_path / "cl")
    assert layouts == [False] * 20 + [True] * 20
    assert len(eager) == 10
    # Channels-last convolutions sum in another order: float noise that grows over 20 steps
    # (~4e-4 here); a real fault (wrong layout, lost augmentation) moves the loss by far more.
    for column in ("train_loss", "train_error"):
        pd.testing.assert_series_equal(eager[column], channels_last[column], rtol=2e-3)


@pytest.mark.parametrize(
    ("gpu", "overrides", "graphed"),
    [
        (False, [], False),  # a CPU trains eagerly, as before
        (True, [], True),  # a GPU replays CUDA graphs, in bf16
        (True, ["trainer.precision=32-true"], True),
        (True, ["trainer.precision=16-mixed"], False),  # fp16's loss scaler: eager
        (True, ["trainer.accelerator=cpu"], False),
        (False, ["cuda_graph=true"], True),  # asked for: the manual path, eager on a CPU
    ],
)
def test_cuda_graph_auto_is_on_where_a_gpu_trains(gpu, overrides, graphed, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    cfg = compose_config(["depth=8", *overrides])
    assert cfg.cuda_graph in ("auto", True)
    assert resolve_cuda_graph(cfg) is graphed
    assert make_module(cfg, build_model(cfg.arch, cfg.depth)).automatic_optimization is not graphed


def test_graphed_path_matches_automatic_optimization(fake_cifar, tmp_path):
    """cuda_graph=true optimizes manually (on a GPU, through one CUDA graph per step); on a CPU the
    same manual path runs eagerly and must reproduce automatic optimization: loss, error and the
    lr trace, warm-up switch included."""
    common = [
        "depth=8",
        f"data.root={fake_cifar}",
        "data.batch_size=20",
        "schedule.iterations=20",
        "schedule.warmup.from_depth=8",
        "schedule.warmup.until_train_error=100",  # ends at the first check, iteration 2
        "schedule.warmup.max_fraction=0.5",  # not at the cap (1/64 of 20 iterations: 1)
        "trainer.log_every_n_steps=2",
        "trainer.enable_progress_bar=false",
        "trainer.accelerator=cpu",
        "trainer.check_val_every_n_epoch=2",  # an evaluation mid-run (test_module checks the
        # gradients survive it on the graphed path; here the CPU rebuilds them every step)
    ]
    automatic = curve(common, tmp_path / "auto")
    manual = curve([*common, "cuda_graph=true"], tmp_path / "graph")
    assert len(automatic) == 10
    for column in ("train_loss", "train_error"):
        pd.testing.assert_series_equal(automatic[column], manual[column], rtol=1e-6)
    lr_auto, lr_manual = lr_trace(tmp_path / "auto"), lr_trace(tmp_path / "graph")
    assert lr_auto.iloc[0] == 0.01 and lr_auto.iloc[-1] == pytest.approx(0.1 * 0.1**2)
    pd.testing.assert_series_equal(lr_auto, lr_manual)
    run = json.loads((tmp_path / "graph" / "run.json").read_text())
    assert run["status"] == "done" and run["first_step_s"] > 0


def test_graphed_path_resumes_from_a_checkpoint(fake_cifar, tmp_path):
    cfg = compose_config(
        [
            "depth=8",
            f"data.root={fake_cifar}",
            "data.batch_size=20",
            "schedule.iterations=8",
            "trainer=cpu",
            "trainer.enable_progress_bar=false",
            "cuda_graph=true",
        ]
    )

    def fit(steps: int, ckpt: Path | None = None) -> tuple[pl.Trainer, StepClock]:
        module = make_module(cfg, build_model(cfg.arch, cfg.depth))
        clock = StepClock()
        trainer = make_trainer(
            cfg, [clock], max_steps=steps, logger=False, default_root_dir=str(tmp_path)
        )
        trainer.fit(module, datamodule=instantiate(cfg.data, _convert_="all"), ckpt_path=ckpt)
        return trainer, clock

    first, _ = fit(4)
    first.save_checkpoint(tmp_path / "half.ckpt")
    resumed, clock = fit(8, tmp_path / "half.ckpt")
    assert resumed.global_step == 8
    assert clock.steps == 4  # it took only the 4 steps left
    # 8 scheduler steps from the base rate: past the decays at iterations 4 and 6
    assert resumed.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.1 * 0.1**2)
    assert resumed.lr_scheduler_configs[0].scheduler.last_epoch == 8


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.precision=16-mixed"], "fp32 or bf16"),  # its loss scaler is not graphed
        # Lightning's manual optimization refuses both, but only once fit starts
        (["+trainer.gradient_clip_val=1.0"], "cannot take trainer.gradient_clip_val=1.0"),
        (["+trainer.accumulate_grad_batches=2"], "cannot take trainer.accumulate_grad_batches=2"),
    ],
)
def test_graphed_path_refuses_what_it_cannot_capture(overrides, message, monkeypatch):
    monkeypatch.setattr(config, "trains_on_gpu", lambda trainer: True)  # on a CPU fp16 is bf16
    cfg = compose_config(["depth=8", "cuda_graph=true", *overrides])
    with pytest.raises(OptionError, match=message):
        make_module(cfg, build_model(cfg.arch, cfg.depth))
