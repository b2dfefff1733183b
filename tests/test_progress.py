"""What a run and a sweep say about their progress: the size and, on a CPU, the duration of a sweep
at its launch; progress lines with the time left; log lines never glued onto a progress bar."""

from __future__ import annotations

import io
import logging
import re

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ProgressBar

from depthsweep.tools import sweep_size
from depthsweep.training import config
from depthsweep.training.build import build_net
from depthsweep.training.callbacks import duration
from depthsweep.training.config import compose_config
from depthsweep.training.fused import FusedNet
from depthsweep.training.sweeper import fuse
from depthsweep.training.train import train


def tiny(data, *overrides: str):
    return compose_config(
        ["trainer=cpu", "depth=8", f"data.root={data}", "data.batch_size=16"]
        + ["schedule.iterations=6", "trainer.check_val_every_n_epoch=100", *overrides]
    )


def test_durations_read_as_people_read_them():
    assert [duration(s) for s in (0.4, 45, 725, 12_000, 200_000)] == [
        "0s",
        "45s",
        "12m05s",
        "3h20m",
        "55h33m",
    ]


def test_progress_lines_say_how_long_is_left(fake_cifar, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="depthsweep"):
        assert train(tiny(fake_cifar, "progress_every=1e-9"), tmp_path / "run") == "done"
    lines = [r.getMessage() for r in caplog.records if "iter " in r.getMessage()]
    # a line after every step (progress_every: a second is long here) but an epoch's last, whose
    # evaluation says it (6 steps of 16 of 100 images: one epoch), then the final evaluation
    assert [re.search(r"iter (\d)/6 ", line)[1] for line in lines] == list("123456")
    assert re.fullmatch(
        r"\[resnet-8 seed=0\] iter 3/6 \(50%\) epoch 0(: train err [\d.]+%)? "
        r"\(\d+s; about \d+s left\)",
        lines[2],
    ), lines[2]
    assert "left" not in lines[-1]  # nothing left at the end


def test_lightnings_bar_is_off_and_with_it_on_log_lines_go_through_it(
    fake_cifar, tmp_path, monkeypatch
):
    assert compose_config([]).trainer.enable_progress_bar is False  # our lines are the display
    printed: list[str] = []
    monkeypatch.setattr(ProgressBar, "print", lambda self, *args, **kw: printed.append(args[0]))
    console = io.StringIO()
    handler = logging.StreamHandler(console)  # a console handler, as Hydra's job logging has
    logging.getLogger().addHandler(handler)
    logging.getLogger("depthsweep").setLevel(logging.INFO)
    try:
        cfg = tiny(fake_cifar, "progress_every=1e-9", "trainer.enable_progress_bar=true")
        assert train(cfg, tmp_path / "run") == "done"
    finally:
        logging.getLogger().removeHandler(handler)
    # while the bar was drawn, every log line went through its print, none straight to the
    # console; before and after it, the console had them
    assert any("iter 3/6" in line for line in printed)
    assert "iter 3/6" not in console.getvalue()
    assert "starting in" in console.getvalue() and "done in" in console.getvalue()


def test_a_sweep_says_its_size_and_on_a_cpu_how_long_it_takes(monkeypatch):
    smoke = [
        compose_config(["experiment=smoke", f"arch={a}", f"depth={d}"])
        for a in ("plain", "resnet")
        for d in (8, 20)
    ]
    size, estimate, *note = list(sweep_size.describe(smoke))
    assert size == "sweep: 4 runs x 200 iterations (800 training steps)"
    assert re.fullmatch(
        r"sweep: about \S+ of training steps on this CPU, one run after another \(a step of "
        r"plain-8 \d+ ms and plain-20 \d+ ms here, batch 128, 32x32 images, 32-true, \d threads?; "
        r"the others' by multiply-adds x batch; evaluations add to it\)",
        estimate,
    )
    # The paper's sweep on a CPU: days, and what to run instead (steps as fast as 0.1 s here,
    # which no 2-core CPU reaches).
    monkeypatch.setattr(sweep_size, "step_seconds", lambda cfg, members=1: 0.1)
    figure6 = [
        compose_config(["experiment=figure6", f"arch={a}", f"depth={d}"])
        for a in ("plain", "resnet")
        for d in (20, 32, 44, 56, 110)
    ]
    lines = list(sweep_size.describe(figure6))
    assert lines[0] == "sweep: 10 runs x 64,000 iterations (640,000 training steps)"
    assert lines[-1].startswith("warning: this sweep is sized for a GPU (about ")
    assert "`python -m experiments.run -m experiment=figure6_cpu` shows Figure 6" in lines[-1]


def test_a_sweep_sized_for_a_cpu_is_not_told_to_run_itself_instead(monkeypatch):
    """figure6_cpu on a CPU slower than the README's (or timed while it was slow) is estimated
    past LONG_S: it says how long, but not that it is sized for a GPU nor to run itself."""
    monkeypatch.setattr(sweep_size, "step_seconds", lambda cfg, members=1: 1.0)
    sweep = [
        compose_config(["experiment=figure6_cpu", f"arch={a}", f"depth={d}"])
        for a in ("plain", "resnet")
        for d in (20, 56)
    ]
    lines = list(sweep_size.describe(sweep, at_once=2))
    # 4 runs x 2,500 steps of 1 s, 2 at once
    assert "about 1h23m of training steps on this CPU, 2 runs at once" in lines[1]
    assert not [line for line in lines if line.startswith("warning")], lines
    # the same runs under another name are not CPU-sized: warned, and offered figure6_cpu
    renamed = [OmegaConf.merge(cfg, {"name": "mine"}) for cfg in sweep]
    assert "experiment=figure6_cpu` shows" in list(sweep_size.describe(renamed, at_once=2))[-1]


def test_a_fused_sweep_is_estimated_by_its_jobs(monkeypatch):
    """fuse=3: a job is a group of three runs, timed as one step of a FusedNet of
    three, and the jobs are shared out over the runs at once."""
    members = []

    def step(cfg, k=1):
        members.append(k)
        return 0.5

    monkeypatch.setattr(sweep_size, "step_seconds", step)
    sweep = [
        compose_config(["experiment=figure6_cpu", "fuse=3", f"arch={a}", f"depth={d}", f"seed={s}"])
        for d in (56, 20)
        for a in ("plain", "resnet")
        for s in range(3)
    ]
    groups = fuse([([], cfg) for cfg in sweep])
    assert groups == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]
    line = list(sweep_size.describe(sweep, at_once=2, groups=groups))[1]
    assert members == [3, 3]  # the cheapest job and the dearest, each a fused step of three
    # 4 jobs x 2,500 steps of 0.5 s, 2 at once
    assert line.startswith(
        "sweep: about 41m40s of training steps on this CPU, 12 runs as 4 jobs (fused groups), "
        "2 jobs at once (a step of 3 fused plain-20 500 ms and 3 fused plain-56 500 ms here"
    ), line


def test_a_fused_step_is_timed_on_a_fused_net(monkeypatch):
    cfg = compose_config(["trainer=cpu", "depth=8", "data.batch_size=64", "threads=1"])
    inputs = []

    def recording(nets):
        net = FusedNet(nets)
        net.register_forward_hook(lambda _, args, out: inputs.append((len(nets), args[0].shape)))
        return net

    monkeypatch.setattr(sweep_size, "FusedNet", recording)
    alone, fused = sweep_size.step_seconds(cfg), sweep_size.step_seconds(cfg, members=3)
    assert inputs == [(3, torch.Size([3, 64, 3, 32, 32]))] * 7  # three nets, each its batch
    assert 0 < alone < fused  # three nets' work, in one network


def affine_steps(monkeypatch, fixed: float, per_mac: float) -> dict[str, int]:
    """step_seconds as a CPU whose steps cost `fixed` s plus `per_mac` s a multiply-add x image;
    returns each net's multiply-adds by label."""
    cost = {}

    def step(cfg, members=1):
        assert members == 1
        (job,) = sweep_size.jobs_of([cfg])
        cost[job.label] = job.macs
        return fixed + per_mac * job.macs * job.batch

    monkeypatch.setattr(sweep_size, "step_seconds", step)
    monkeypatch.setattr(sweep_size.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle CPU
    return cost


@pytest.mark.parametrize("per_mac", [1e-12, 1e-9])
def test_the_estimate_draws_a_line_through_the_cheapest_and_the_dearest_step(per_mac, monkeypatch):
    """Steps cost a fixed part besides their multiply-adds (small nets cost more per
    multiply-add): measured at both ends, the line through them gives the nets in between."""
    jobs = [compose_config([f"depth={d}", "schedule.iterations=1000"]) for d in (8, 20, 56)]
    timed = affine_steps(monkeypatch, 0.05, per_mac)
    (_, line, *warning) = list(sweep_size.describe(jobs))
    assert set(timed) == {"resnet-8", "resnet-56"}  # only the ends are timed
    macs = {j.label: j.macs for j in sweep_size.jobs_of(jobs)}
    expected = sum(1000 * (0.05 + per_mac * m * 128) for m in macs.values())
    assert f"about {duration(expected)} of training steps" in line
    assert bool(warning) == (expected > sweep_size.LONG_S)


def test_runs_at_once_share_the_steps_and_finished_runs_are_not_counted(monkeypatch):
    jobs = [compose_config([f"depth={d}", "schedule.iterations=1000"]) for d in (8, 20, 56)]
    timed = affine_steps(monkeypatch, 0.1, 0.0)  # every step 0.1 s
    assert (
        "about 5m00s of training steps on this CPU, one run after"
        in list(sweep_size.describe(jobs))[1]
    )
    assert (
        "about 2m30s of training steps on this CPU, 2 runs at once"
        in (list(sweep_size.describe(jobs, at_once=2))[1])
    )
    timed.clear()
    line = list(sweep_size.describe(jobs, finished=[True, False, True]))[1]
    assert "about 1m40s of training steps on this CPU, 1 run to train, one run after" in line
    assert set(timed) == {"resnet-20"}
    timed.clear()
    done = list(sweep_size.describe(jobs, at_once=2, finished=[True, True, True]))
    assert done[1] == "sweep: every run finished before: nothing to train, only the analysis"
    assert not timed  # nothing timed for a sweep that only re-analyses


def test_a_busy_cpu_is_said_beside_the_estimate(monkeypatch):
    affine_steps(monkeypatch, 0.1, 0.0)
    monkeypatch.setattr(sweep_size.os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    monkeypatch.setattr(sweep_size.os, "cpu_count", lambda: 2)
    lines = list(sweep_size.describe([compose_config(["depth=8", "schedule.iterations=10"])]))
    assert lines[2] == (
        "note: the CPU was busy while the steps were timed (load 5.0 on 2 cores): on an idle "
        "one the sweep takes less"
    )


@pytest.mark.parametrize(
    "launcher, at_once",
    [
        ({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 1),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": 3}, 3),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": -1}, 8),
        ({"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher", "n_jobs": -2}, 7),
    ],
)
def test_runs_at_once_are_the_launchers(launcher, at_once, monkeypatch):
    monkeypatch.setattr(sweep_size.os, "cpu_count", lambda: 8)
    assert sweep_size.runs_at_once(OmegaConf.create(launcher)) == at_once


@pytest.mark.parametrize(
    "precision, amx, dtype, contiguous",  # channels_last auto: channels-last in bf16 or fp16
    [  # on a CPU without AMX
        ("bf16-mixed", False, torch.bfloat16, False),
        ("bf16-mixed", True, torch.bfloat16, True),
        ("16-mixed", False, torch.bfloat16, False),  # on a CPU fp16 trains as bf16 (Lightning)
        ("32-true", False, torch.float32, True),
    ],
)
def test_a_step_is_timed_as_the_run_takes_it(precision, amx, dtype, contiguous, monkeypatch):
    """In the run's precision, memory format and threads, on images of its batch and size, as
    the net itself sees them in the timed steps; torch's threads put back."""
    monkeypatch.setattr(config, "cpu_has_amx", lambda: amx)
    cfg = compose_config(
        ["trainer=cpu", "depth=8", "arch.width=4", "data.resolution=16", "data.batch_size=8"]
        + [f"trainer.precision={precision}", "threads=1"]
    )
    seen = []

    def net_that_records(cfg):
        net = build_net(cfg)
        net.register_forward_hook(
            lambda _, args, out: seen.append(
                (args[0].shape, out.dtype, torch.get_num_threads(), args[0].is_contiguous())
            )
        )
        return net

    monkeypatch.setattr(sweep_size, "build_net", net_that_records)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))  # not the run's 1, so that the run's setting shows
    try:
        assert sweep_size.step_seconds(cfg) > 0 and torch.get_num_threads() == max(2, threads)
    finally:
        torch.set_num_threads(threads)
    assert seen == [(torch.Size([8, 3, 16, 16]), dtype, 1, contiguous)] * 7
    resolved = config.resolve_precision(cfg.trainer)  # 16-mixed on a CPU: bf16-mixed
    assert sweep_size._path(cfg) == f"batch 8, 16x16 images, {resolved}, 1 thread"


@pytest.mark.parametrize(
    "gpu, expected",
    [
        # 2 runs x 1000 iterations at depths 20 and 110: (2.3 + 11.5) ms x 1000 = 13.8 s
        ("NVIDIA H200", "sweep: about 14s of training steps on this NVIDIA H200, one run after"),
        ("Tesla T4", "sweep: no duration estimate for Tesla T4 on this path at launch"),
    ],
)
def test_a_gpu_sweep_says_how_long_where_the_gpu_was_measured(gpu, expected, monkeypatch):
    monkeypatch.setattr(sweep_size, "trains_on_gpu", lambda trainer: True)
    monkeypatch.setattr(sweep_size, "resolve_cuda_graph", lambda cfg: True)
    monkeypatch.setattr(sweep_size, "resolve_precision", lambda trainer: "bf16-mixed")
    monkeypatch.setattr(sweep_size, "gpu_name", lambda: gpu)
    jobs = [compose_config([f"depth={d}", "schedule.iterations=1000"]) for d in (20, 110)]
    size, line = list(sweep_size.describe(jobs))
    assert size == "sweep: 2 runs x 1,000 iterations (2,000 training steps)"
    assert line.startswith(expected)
