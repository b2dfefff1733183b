"""The speed bench: the CLI end to end at the tiniest sizes, and the sweep-time projection."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import run_cli

from depthsweep.bench import (
    COLUMNS,
    format_table,
    interpolate_ms,
    job_counts,
    project_sweep_s,
    projection,
)
from experiments.bench import compile_overrides


def test_cli_times_both_paths_and_concurrent_jobs(tmp_path, monkeypatch):
    out = tmp_path / "results" / "bench.csv"
    # One torch thread: on a small shared CPU, more threads than free cores is many times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # cwd=tmp_path: no data/ there, so the bench writes random images in the official format.
    result = run_cli(
        *["experiments.bench", "--depths", "8", "--batch", "16", "--steps", "2", "--warmup", "1"],
        *["--archs", "plain", "--workers", "1", "--jobs", "2", "--out", str(out)],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    assert [(r["arch"], r["path"], r["jobs"]) for r in rows] == [
        ("plain", "reference", "1"),
        ("plain", "harness", "1"),
        ("plain", "harness", "1"),  # the concurrency runs: one process, then two at once
        ("plain", "harness", "2"),
    ]
    device = rows[0]["device"]
    assert device.startswith("CPU") and f"bench on {device}" in result.stdout
    for r in rows:
        assert (r["device"], r["torch_version"], r["depth"]) == (device, torch.__version__, "8")
        assert (r["batch"], r["steps_timed"], r["precision"]) == ("16", "2", "32-true")
        assert r["compile"] == "false"
        assert float(r["ms_per_step"]) > 0
    for r in rows[:3]:
        assert float(r["images_per_s"]) == pytest.approx(16_000 / float(r["ms_per_step"]), abs=0.1)
    assert "random images in the official CIFAR-10 format" in result.stdout
    assert "CPU only" in result.stdout
    table = result.stdout[result.stdout.index("arch     depth") :]
    assert table.splitlines()[1].split()[:2] == ["plain", "8"]
    assert "only plain measured" in result.stdout and "2 jobs at once" in result.stdout
    assert f"wrote {out} (4 rows)" in result.stdout


def test_interpolation_is_linear_in_depth_and_extrapolates_the_end_segments():
    ms = {8: 4.0, 20: 10.0, 56: 40.0}
    assert interpolate_ms(ms, 14) == pytest.approx(7.0)
    assert interpolate_ms(ms, 32) == pytest.approx(20.0)
    assert interpolate_ms(ms, 110) == pytest.approx(40.0 + 54 * 30 / 36)
    assert interpolate_ms(ms, 2) == pytest.approx(1.0)
    assert interpolate_ms({20: 10.0}, 110) == pytest.approx(55.0)  # one depth: proportional


def test_sweep_projection_with_known_numbers():
    # ms = depth / 2: 10 + 16 + 22 + 28 + 55 = 131 ms a step at the paper's depths, 64k steps each.
    assert project_sweep_s({20: 10.0, 56: 28.0}) == pytest.approx(131 * 64)
    assert project_sweep_s({20: 10.0}) == pytest.approx(131 * 64)
    assert project_sweep_s({20: 10.0, 56: 28.0}, speedup=2.0) == pytest.approx(131 * 32)
    assert project_sweep_s({20: 10.0}, depths=[20, 56], iterations=1000) == pytest.approx(38.0)


def test_projection_and_table_from_rows():
    rows = [
        {"arch": a, "depth": d, "path": p, "batch": 128, "jobs": 1, "ms_per_step": ms, **extra}
        for a in ("plain", "resnet")
        for d in (20, 56)
        for p, ms in (("reference", d), ("harness", d / 2))
        for extra in [{"images_per_s": 128_000 / ms}]
    ]
    lines = projection(rows, {2: 2.0})
    hours = 2 * 131 * 64 / 3600  # both archs, harness at depth/2 ms
    assert lines[1].split() == [
        "reference",
        "1",
        "job",
        "at",
        "a",
        "time:",
        f"{2 * hours:.2f}",
        "h",
    ]
    assert f"{hours:.2f} h" in lines[2] and lines[2].split()[0] == "harness"
    assert "2 jobs at once:" in lines[3] and f"{hours / 2:.2f} h" in lines[3]
    table = format_table(rows).splitlines()
    assert len(table) == 5
    assert table[2].split() == ["plain", "56", "56.0", "28.0", "2286", "4571", "2.00x"]


def test_job_counts():
    assert job_counts(1) == []
    assert job_counts(2) == [1, 2]
    assert job_counts(4) == [1, 2, 4]
    assert job_counts(6) == [1, 2, 4, 6]


def test_compile_option_becomes_overrides():
    assert compile_overrides(None) == compile_overrides("false") == []
    assert compile_overrides("true") == ["compile.enabled=true"]
    assert compile_overrides("max-autotune") == [
        "compile.enabled=true",
        "compile.mode=max-autotune",
    ]
