"""What a run and a sweep say about their progress: the size and, on a CPU, the duration of a sweep
at its launch; progress lines with the time left; log lines never glued onto a progress bar."""

from __future__ import annotations

import io
import logging
import re

import pytest
from pytorch_lightning.callbacks import ProgressBar

from depthsweep.tools import sweep_size
from depthsweep.training.callbacks import duration
from depthsweep.training.config import compose_config
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
    size, estimate = sweep_size.describe(smoke)
    assert size == "sweep: 4 runs x 200 iterations (800 training steps)"
    assert re.fullmatch(
        r"sweep: about \S+ of training steps on this CPU, one run after another \(a step of "
        r"plain-8 at batch 128 took \d+ ms here; scaled by each run's multiply-adds and batch; "
        r"evaluations add to it\)",
        estimate,
    )
    # The paper's sweep on a CPU: days, and what to run instead (a step of plain-20 as fast as
    # 0.1 s here, which no 2-core CPU reaches).
    monkeypatch.setattr(sweep_size, "step_seconds", lambda net, batch: 0.1)
    figure6 = [
        compose_config(["experiment=figure6", f"arch={a}", f"depth={d}"])
        for a in ("plain", "resnet")
        for d in (20, 32, 44, 56, 110)
    ]
    lines = sweep_size.describe(figure6)
    assert lines[0] == "sweep: 10 runs x 64,000 iterations (640,000 training steps)"
    assert lines[2].startswith("warning: this sweep is sized for a GPU (about ")
    assert "run `python -m experiments.run -m experiment=smoke`" in lines[2]


@pytest.mark.parametrize("per_mac", [1e-12, 1e-9])
def test_the_estimate_scales_the_measured_step_by_multiply_adds(per_mac, monkeypatch):
    """The one measured step stands for every run in proportion to its multiply-adds and batch."""
    jobs = [compose_config([f"depth={d}", "schedule.iterations=1000"]) for d in (8, 56)]
    macs = {j.label: j.macs for j in sweep_size.jobs_of(jobs)}
    monkeypatch.setattr(
        sweep_size, "step_seconds", lambda net, batch: per_mac * macs["resnet-8"] * batch
    )
    (_, line, *warning) = sweep_size.describe(jobs)
    expected = per_mac * 1000 * 128 * (macs["resnet-8"] + macs["resnet-56"])
    assert f"about {duration(expected)} of training steps" in line
    assert bool(warning) == (expected > sweep_size.LONG_S)


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
    size, line = sweep_size.describe(jobs)
    assert size == "sweep: 2 runs x 1,000 iterations (2,000 training steps)"
    assert line.startswith(expected)
