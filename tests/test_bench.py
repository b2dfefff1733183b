"""The speed bench: the CLI end to end at the tiniest sizes, its table and projection."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import run_cli, write_random_cifar10

from depthsweep.errors import USER_ERROR, OptionError
from depthsweep.tools import bench, timing
from depthsweep.tools.bench import (
    COLUMNS,
    format_table,
    job_counts,
    members_of,
    projection,
    variant_overrides,
)
from depthsweep.tools.budget import fastest_variant
from depthsweep.tools.timing import time_harness
from depthsweep.training.config import compose_config
from depthsweep.training.group import make_fused_module
from experiments import bench as bench_cli


@pytest.mark.slow
def test_cli_times_variants_and_concurrent_jobs(tmp_path):
    data = write_random_cifar10(tmp_path / "data", n_train=200, n_test=20)
    out = tmp_path / "results" / "bench.csv"
    result = run_cli(
        *["experiments.bench", "--depths", "8", "--batch", "16", "--steps", "2", "--warmup", "1"],
        *["--archs", "plain", "--workers", "1", "--jobs", "2", "--out", str(out)],
        *["--variants", "default,graph-fp32", "--data-root", str(data)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    fastest = min(rows[1:3], key=lambda r: float(r["ms_per_step"]))["variant"]
    assert [(r["arch"], r["depth"], r["variant"], r["jobs"]) for r in rows] == [
        ("plain", "8", "reference", "1"),
        ("plain", "8", "default", "1"),
        ("plain", "8", "graph-fp32", "1"),
        ("plain", "8", fastest, "1"),  # the faster variant, one process, then two at once
        ("plain", "8", fastest, "2"),
    ]
    assert [r["cuda_graph"] for r in rows[:3]] == ["False", "False", "True"]
    device = rows[0]["device"]
    assert device.startswith("CPU") and f"bench on {device}" in result.stdout
    for r in rows:
        assert (r["device"], r["torch_version"]) == (device, torch.__version__)
        assert (r["batch"], r["steps_timed"], r["precision"]) == ("16", "2", "32-true")
        assert float(r["ms_per_step"]) > 0
    for r in rows[:3]:
        # ms_per_step is rounded to 3 decimals, images_per_s computed before rounding
        assert float(r["images_per_s"]) == pytest.approx(16_000 / float(r["ms_per_step"]), rel=1e-3)
        assert float(r["first_step_s"]) > 0  # the first step is timed apart
    assert "CPU only" in result.stdout
    table = result.stdout[result.stdout.index("arch     depth") :].splitlines()
    assert table[0].split() == ["arch", "depth", "reference", "default", "graph-fp32"]
    assert table[2].split()[:2] == ["plain", "8"]
    assert f"{fastest} 2 jobs at once" in " ".join(result.stdout.split())
    assert f"wrote {out} (5 rows)" in result.stdout
    assert not (tmp_path / "bench.csv").exists()  # only where --out says


def test_the_bench_says_where_it_looked_for_missing_data(tmp_path, capsys):
    args = ["--depths", "8", "--data-root", str(tmp_path / "none"), "data.download=false"]
    assert bench_cli.main([*args, "--out", str(tmp_path / "bench.csv")]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"{tmp_path / 'none' / 'cifar-10-batches-py'}" in err


@pytest.mark.parametrize(
    "override, meant",
    [
        ("schedule.lr=0.05", "Did you mean schedule.optimizer.lr=0.05"),  # Hydra's error, in one
        ("+schedule.lr=0.05", "nothing reads schedule.lr"),  # Hydra's suggestion: a no-op
        ("+data.seed=3", "the harness sets seed itself"),
    ],
)
def test_an_override_the_bench_would_not_apply_is_one_line_before_any_timing(
    override, meant, tmp_path, capsys
):
    args = ["--depths", "8", "--data-root", str(tmp_path / "none"), override]
    assert bench_cli.main([*args, "--out", str(tmp_path / "bench.csv")]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {override}: ") and err.count("\n") == 1 and meant in err
    assert not (tmp_path / "bench.csv").exists()


@pytest.mark.parametrize(
    "given, said",
    [
        (
            ["--archs", "resnt"],
            "--archs resnt: In 'config': Could not find 'arch/resnt' (available",
        ),
        (["--depths", "8,21"], "--depths 21 (plain): depth=21 is invalid"),
        (["--batch", "0"], "--batch=0: must be an integer >= 1"),
        (["data.limit=0"], "data.limit=0: must be an integer >= 1"),
        (["schedule=fast"], "schedule=fast: no such schedule (conf/schedule/ holds paper)."),
        (["--workers", "-1"], "--workers=-1: must be an integer >= 0"),
        (["--threads", "-1"], "--threads=-1: must be an integer >= 0"),
    ],
)
def test_an_option_every_variant_would_refuse_is_one_line_before_any_timing(
    given, said, tmp_path, capsys, monkeypatch
):
    """Checked before the data (missing here) and before anything is timed: a variant that fails
    is skipped, so these would otherwise end in "every variant failed", exit 1."""
    monkeypatch.setattr(bench, "time_harness", pytest.fail)  # nothing is timed
    args = ["--depths", "8", "--data-root", str(tmp_path / "none"), "data.download=false", *given]
    assert bench_cli.main([*args, "--out", str(tmp_path / "bench.csv")]) == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"error: {said}") and err.count("\n") == 1
    assert not (tmp_path / "bench.csv").exists()


def rows_of(ms: dict[str, float], depths=(20, 56), archs=("plain", "resnet")) -> list[dict]:
    """Bench rows whose ms/step is depth times each variant's factor."""
    return [
        {"arch": a, "depth": d, "variant": v, "batch": 128, "jobs": 1, "ms_per_step": f * d}
        for a in archs
        for d in depths
        for v, f in ms.items()
    ]


def test_projection_and_table_from_rows():
    rows = rows_of({"reference": 1.0, "eager-fp32": 0.5, "graph-fp32": 0.25})
    assert fastest_variant(rows) == "graph-fp32"
    lines = projection(rows, {1: 1.0, 2: 2.0}, concurrent="eager-fp32")
    # eager-fp32 at depth/2 ms: 10 + 16 + 22 + 28 + 55 = 131 ms per step of the five depths,
    # 64,000 steps, two archs: 279.5 minutes; the reference twice that, the graph half.
    assert lines[1].split() == ["reference", "1", "job", "at", "a", "time:", "558.9", "min"]
    assert lines[2].split() == ["eager-fp32", "1", "job", "at", "a", "time:", "279.5", "min"]
    assert lines[3].split()[:7] == ["eager-fp32", "2", "jobs", "at", "once:", "139.7", "min"]
    assert lines[4].split() == ["graph-fp32", "1", "job", "at", "a", "time:", "139.7", "min"]
    assert len(lines) == 5  # no concurrency line for graph-fp32: it was not measured
    table = format_table(rows).splitlines()
    assert len(table) == 6
    assert table[3].split() == ["plain", "56", "56.0", "28.0", "(2.00x)", "14.0", "(4.00x)"]


def test_a_fused_variant_costs_its_step_over_its_members():
    """fused-2 at 0.8 x depth ms per step of two runs: 0.4 per run, 80% of default's 0.5."""
    rows = rows_of({"reference": 1.0, "default": 0.5, "fused-2": 0.8})
    for r in rows:
        r["members"] = members_of(r["variant"])
    assert fastest_variant(rows) == "fused-2"
    lines = projection(rows, {})
    assert lines[2].split()[:7] == ["default", "1", "job", "at", "a", "time:", "279.5"]
    assert lines[3].split()[:7] == ["fused-2", "1", "job", "at", "a", "time:", "223.6"]
    # 56 x 0.8 = 44.8 ms for two runs' steps: 2 x 56 / 44.8 = 2.5x the reference's images/s
    assert format_table(rows).splitlines()[3].split()[-2:] == ["44.8", "(2.50x)"]


def test_a_fused_group_is_timed_through_the_training_path(fake_cifar, monkeypatch):
    """members=3: the training path's fused module, three nets of seeds 0-2 as one FusedNet,
    each step on three batches."""
    cfg = compose_config(["depth=8", f"data.root={fake_cifar}", "data.batch_size=16"])
    built, inputs = [], []

    def recording(cfgs, nets):
        module = make_fused_module(cfgs, nets)
        built.append([c.seed for c in cfgs])
        module.model.register_forward_hook(lambda _, args, out: inputs.append(args[0].shape))
        return module

    monkeypatch.setattr(timing, "make_fused_module", recording)
    t = time_harness(cfg, warmup=1, steps=2, members=3)
    assert t.steps == 2 and t.ms_per_step > 0
    assert built == [[0, 1, 2]] and inputs == [torch.Size([3, 16, 3, 32, 32])] * 3, inputs


def test_table_without_a_reference():
    table = format_table(rows_of({"graph-fp32": 0.25}, archs=("resnet",))).splitlines()
    assert table[2].split() == ["resnet", "20", "—", "5.0"]


def test_job_counts():
    assert job_counts(1) == []
    assert job_counts(2) == [1, 2]
    assert job_counts(4) == [1, 2, 4]
    assert job_counts(6) == [1, 2, 4, 6]


def test_variants_name_everything_they_depend_on():
    assert variant_overrides("default") == []
    assert variant_overrides("graph-bf16") == [
        "cuda_graph=true",
        "trainer.precision=bf16-mixed",
        "channels_last=true",
    ]
    with pytest.raises(OptionError, match="unknown variant 'fast'"):
        variant_overrides("fast")


def test_a_failing_variant_is_reported_and_the_others_are_kept(tmp_path, monkeypatch, capsys):
    data = write_random_cifar10(tmp_path / "data", n_train=100, n_test=20)
    real = bench.time_harness

    def capture_fails(cfg, *args, **kwargs):
        if cfg.cuda_graph:
            raise RuntimeError("capture failed")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(bench, "time_harness", capture_fails)
    settings, _ = bench.default_settings(
        torch.device("cpu"),
        **{"archs": ["plain"], "depths": [8], "batch": 16, "steps": 2, "warmup": 1},
        **{"variants": ["graph-fp32", "eager-fp32"], "reference": False, "workers": 0},
        **{"data_root": str(data), "out": tmp_path / "bench.csv"},
    )
    rows = bench.run(settings)
    assert "graph-fp32 FAILED (RuntimeError: capture failed)" in capsys.readouterr().out
    assert [r["variant"] for r in rows] == ["eager-fp32"]
    with open(tmp_path / "bench.csv", newline="") as f:
        assert [r["variant"] for r in csv.DictReader(f)] == ["eager-fp32"]
