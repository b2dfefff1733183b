"""The speed bench: the CLI end to end at the tiniest sizes, and the sweep-time projection."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import run_cli

from depthsweep.bench import (
    COLUMNS,
    fastest_path,
    format_table,
    interpolate_ms,
    job_counts,
    path_overrides,
    project_sweep_s,
    projection,
)


def test_cli_times_paths_host_time_and_concurrent_jobs(tmp_path, monkeypatch):
    out = tmp_path / "results" / "bench.csv"
    # One torch thread: on a small shared CPU, more threads than free cores is many times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # cwd=tmp_path: no data/ there, so the bench writes random images in the official format.
    result = run_cli(
        *["experiments.bench", "--depths", "8", "--batch", "16", "--steps", "2", "--warmup", "1"],
        *["--archs", "plain", "--workers", "1", "--jobs", "2", "--out", str(out)],
        *["--paths", "harness,harness-graph"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    fastest = min(rows[1:3], key=lambda r: float(r["ms_per_step"]))["path"]
    assert rows[-1]["path"] == fastest  # the concurrency runs use the faster harness path
    assert [(r["arch"], r["depth"], r["path"], r["jobs"]) for r in rows] == [
        ("plain", "8", "reference", "1"),
        ("plain", "8", "harness", "1"),
        ("plain", "8", "harness-graph", "1"),
        ("linear", "0", "bare-loop", "1"),  # host time: a model that costs nothing
        ("linear", "0", "harness", "1"),
        ("linear", "0", "harness-graph", "1"),
        ("plain", "8", fastest, "1"),  # one process, then two at once
        ("plain", "8", fastest, "2"),
    ]
    device = rows[0]["device"]
    assert device.startswith("CPU") and f"bench on {device}" in result.stdout
    for r in rows:
        assert (r["device"], r["torch_version"]) == (device, torch.__version__)
        assert (r["batch"], r["steps_timed"], r["precision"]) == ("16", "2", "32-true")
        assert r["compile"] == "false"
        assert float(r["ms_per_step"]) > 0
    for r in rows[:7]:
        # ms_per_step is rounded to 3 decimals, images_per_s computed before rounding
        assert float(r["images_per_s"]) == pytest.approx(16_000 / float(r["ms_per_step"]), rel=1e-3)
    for r in rows[:3] + rows[4:6]:  # the first step is timed apart, in this process
        assert float(r["first_step_s"]) > 0
    assert "host time per step" in result.stdout
    assert "random images in the official CIFAR-10 format" in result.stdout
    assert "CPU only" in result.stdout
    table = result.stdout[result.stdout.index("arch     depth") :].splitlines()
    assert table[0].split() == ["arch", "depth", "reference", "harness", "harness-graph"]
    assert table[2].split()[:2] == ["plain", "8"]
    assert "only plain measured" in result.stdout
    assert f"{fastest} 2 jobs at once" in " ".join(result.stdout.split())
    assert f"wrote {out} (8 rows)" in result.stdout


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
        {"arch": a, "depth": d, "path": p, "batch": 128, "jobs": 1, "ms_per_step": ms}
        for a in ("plain", "resnet")
        for d in (20, 56)
        for p, ms in (("reference", d), ("harness", d / 2), ("harness-graph", d / 4))
    ]
    assert fastest_path(rows) == "harness-graph"
    lines = projection(rows, {2: 2.0}, concurrent="harness")
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
    assert f"{hours / 2:.2f} h" in lines[4] and lines[4].split()[0] == "harness-graph"
    assert len(lines) == 5  # no concurrency line for harness-graph: it was not measured
    table = format_table(rows).splitlines()
    assert len(table) == 6
    assert table[3].split() == ["plain", "56", "56.0", "28.0", "(2.00x)", "14.0", "(4.00x)"]


def test_job_counts():
    assert job_counts(1) == []
    assert job_counts(2) == [1, 2]
    assert job_counts(4) == [1, 2, 4]
    assert job_counts(6) == [1, 2, 4, 6]


def test_harness_paths_become_overrides():
    assert path_overrides("harness") == []
    assert path_overrides("harness-graph") == ["cuda_graph=true"]
    assert path_overrides("harness-compile") == ["compile.enabled=true"]
    assert path_overrides("harness-compile", "max-autotune") == [
        "compile.enabled=true",
        "compile.mode=max-autotune",
    ]
    with pytest.raises(SystemExit, match="unknown path 'fast'"):
        path_overrides("fast")
