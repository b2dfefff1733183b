"""The measuring commands behind the README's numbers, run through their real command lines:
experiments.cpu_paths (the fastest CPU path; its timings faked here, since torch.compile alone
takes minutes; its eager steps timed for real) and experiments.calibrate (the verdict's rates, on
a few draws)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from experiments import calibrate, cpu_paths


@pytest.fixture
def fake_steps(monkeypatch):
    """step_ms as a lookup: bf16 channels-last eager the fastest path, 1 thread; two processes
    at once each 1.5x slower than that path alone."""

    def step_ms(depth, width, size, batch, bf16, nhwc, compiled, threads, steps, barrier=None):
        return depth * (3 - bf16 - nhwc + 0.5 * compiled + 0.25 * (threads - 1))

    def at_once(args, processes):
        return [1.5 * step_ms(*args)] * processes

    monkeypatch.setattr(cpu_paths, "step_ms", step_ms)
    monkeypatch.setattr(cpu_paths, "at_once", at_once)
    monkeypatch.setattr(cpu_paths.os, "cpu_count", lambda: 2)


@pytest.mark.parametrize("bf16, nhwc", [(True, True), (False, False)])
def test_a_timed_step_trains_the_path_it_names(bf16, nhwc):
    """The real step_ms (the CLI's timings are faked above): its net's convolutions see the
    layout and compute in the precision it names, for 5 untimed and `steps` timed steps of SGD."""
    seen, before = [], {}

    def prepare(net: nn.Module) -> None:
        conv = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
        conv.register_forward_hook(
            lambda _, args, out: seen.append(
                (args[0].is_contiguous(memory_format=torch.channels_last), out.dtype)
            )
        )
        before.update(net=net, weight=conv.weight.detach().clone(), conv=conv)

    threads = torch.get_num_threads()
    try:
        ms = cpu_paths.step_ms(8, 4, 16, 8, bf16, nhwc, False, 1, steps=2, prepare=prepare)
    finally:
        torch.set_num_threads(threads)
    assert ms > 0
    assert seen == [(nhwc, torch.bfloat16 if bf16 else torch.float32)] * 7
    assert not torch.equal(before["conv"].weight, before["weight"])  # it trained


@pytest.mark.parametrize("out", ["folder", "table.csv"])
def test_cpu_paths_times_every_path_and_two_processes_on_the_fastest(fake_steps, tmp_path, out):
    assert cpu_paths.main(["--depths", "20,56", "--batch", "64", "--out", str(tmp_path / out)]) == 0
    written = tmp_path / out if out.endswith(".csv") else tmp_path / out / "cpu_paths.csv"
    table = pd.read_csv(written)
    alone, together = table[table.processes == 1], table[table.processes == 2]
    assert len(alone) == 2 * 16  # per depth: fp32/bf16 x layout x eager/compiled x 1/2 threads
    # the two at once train on the fastest eager path alone: bf16, channels-last, 1 thread
    assert together[["depth", "precision", "memory", "compile", "threads"]].values.tolist() == [
        [20, "bf16", "channels_last", False, 1],
        [56, "bf16", "channels_last", False, 1],
    ]
    assert together.ms_per_step.tolist() == [1.5 * 20, 1.5 * 56]
    # both processes' images count: 2 x 64 images a step each
    assert together.images_per_s.tolist() == pytest.approx([2 * 64 * 1000 / 30, 2 * 64 * 1000 / 84])
    assert (alone.images_per_s == 64 * 1000 / alone.ms_per_step).all()


def test_calibrate_writes_each_truths_rates(tmp_path, capsys):
    assert calibrate.main([str(tmp_path), "--draws", "20"]) == 0
    rates = pd.read_csv(tmp_path / "calibration.csv")
    assert set(rates.seeds) == {2, 3, 5} and set(rates.seed_sd) == {0.2, 0.4}
    outcomes = rates.filter(like="outcome ")  # each sweep has one outcome: shares sum to 1
    assert outcomes.sum(axis=1).to_numpy() == pytest.approx(1.0)
    paper = rates[rates.scenario == "paper-like (resnet illustrative)"]
    assert (paper["outcome not reproduced"] == 0).all()  # a true claim, loud effects: never
    md = (tmp_path / "calibration.md").read_text()
    assert md.startswith("# The verdict's rates by Monte Carlo (20 sweeps a row)")
    assert md.count("\n| ") == len(rates) + 1  # the header and one row per truth and size
    assert capsys.readouterr().out == md


@pytest.mark.parametrize("draws", ["0", "-1"])
def test_calibrate_refuses_no_draws_in_one_line(draws, tmp_path, capsys):
    assert calibrate.main([str(tmp_path / "out"), "--draws", draws]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: --draws={draws}: must be an integer >= 1\n"
    assert not (tmp_path / "out").exists()


def test_calibrate_refuses_a_folder_it_cannot_write_before_drawing(tmp_path, capsys, monkeypatch):
    """Under a file: after minutes of drawing, a traceback; now one line, and nothing drawn."""
    monkeypatch.setattr(calibrate, "table", lambda **kw: pytest.fail("drew before checking"))
    (tmp_path / "file").write_text("")
    assert calibrate.main([str(tmp_path / "file" / "out"), "--draws", "5"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: cannot write into {tmp_path / 'file' / 'out'}: ")


def test_calibrates_help_says_where_it_writes_by_default(capsys):
    with pytest.raises(SystemExit):
        calibrate.main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "results/verdict_calibration/, the committed results, which a run rewrites" in said


def test_processes_at_once_that_fail_are_said_not_waited_for():
    """A child that fails (here an invalid depth) aborts the barrier and names its error."""
    with pytest.raises(RuntimeError, match="a process of 2 at once failed: InvalidDepthError"):
        cpu_paths.at_once((7, 4, 16, 8, False, False, False, 1, 2), 2)
