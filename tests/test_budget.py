"""The sweep-time arithmetic: projection, concurrency, and the quick Figure 6's iterations."""

from __future__ import annotations

import csv

import pytest

from depthsweep.tools.bench import COLUMNS
from depthsweep.tools.budget import (
    best_jobs,
    fastest_variant,
    interpolate_ms,
    plan_from_bench,
    plan_quick_sweep,
    project_sweep_s,
    read_bench,
)


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


def test_more_jobs_only_where_they_pay():
    assert best_jobs({1: 1.0, 2: 1.6, 4: 2.0}) == (4, 2.0)
    assert best_jobs({1: 1.0, 2: 1.6, 4: 1.7}) == (2, 1.6)  # 4 jobs: not 10% more than 2
    assert best_jobs({1: 1.0, 2: 1.05}) == (1, 1.0)
    assert best_jobs({1: 1.0}) == (1, 1.0)


MS = {20: 2.0, 110: 10.5}  # the brief's H100 CUDA-graph figures at depths 20 and 110
# interpolated: 32 -> 3.1333, 44 -> 4.2667, 56 -> 5.4; all five: 25.3 ms, both archs 50.6 ms


def test_quick_plan_fits_the_budget_with_all_five_depths():
    plan = plan_quick_sweep(MS, budget_s=240, jobs=4, gain=2.0, overhead_s=20)
    # (240 s * 2.0 - 10 runs * 20 s) / 0.0506 s = 5533.6 -> 5500
    assert (plan.iterations, plan.depths, plan.jobs) == (5500, (20, 32, 44, 56, 110), 4)
    assert plan.expected_s == pytest.approx((200 + 5500 * 0.0506) / 2)
    assert plan.expected_s <= 240


def test_quick_plan_drops_to_three_depths_when_five_get_too_few_iterations():
    plan = plan_quick_sweep(MS, budget_s=120, jobs=4, gain=2.0, overhead_s=20)
    # five depths: (240 - 200) / 0.0506 = 790 < 2000; three: (240 - 120) / 0.0358 = 3351.9
    assert (plan.iterations, plan.depths) == (3300, (20, 56, 110))


def test_quick_plan_refuses_a_budget_that_fits_nothing():
    with pytest.raises(ValueError, match="leaves no time to train 6 runs"):
        plan_quick_sweep(MS, budget_s=50, jobs=4, gain=2.0, overhead_s=20)


def write_bench(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for arch, depth, variant, jobs, ms, images in rows:
            writer.writerow(
                {"arch": arch, "depth": depth, "variant": variant, "jobs": jobs}
                | {"ms_per_step": ms, "images_per_s": images, "batch": 128}
            )


def test_quick_plan_from_bench_csvs(tmp_path):
    bench, jobs = tmp_path / "bench.csv", tmp_path / "bench_jobs.csv"
    write_bench(
        bench,
        [
            ("resnet", 20, "reference", 1, 30.0, 4267),
            ("resnet", 110, "reference", 1, 60.0, 2133),
            ("resnet", 20, "eager-fp32", 1, 9.1, 14066),
            ("resnet", 110, "eager-fp32", 1, 47.0, 2723),
            ("resnet", 20, "graph-fp32", 1, 2.0, 64000),
            ("resnet", 110, "graph-fp32", 1, 10.5, 12190),
            ("resnet", 20, "graph-bf16", 1, 1.0, 128000),  # fastest, but failed its tests
            ("resnet", 110, "graph-bf16", 1, 5.0, 25600),
        ],
    )
    write_bench(  # the concurrency bench: 1, 2, 4 processes at once
        jobs,
        [
            ("resnet", 110, "graph-fp32", 1, 10.5, 12190),
            ("resnet", 110, "graph-fp32", 2, 10.5 * 1.25, 12190 * 1.6),
            ("resnet", 110, "graph-fp32", 4, 10.5 * 2, 12190 * 2.0),
        ],
    )
    rows = read_bench(bench) + read_bench(jobs)
    assert fastest_variant(rows) == "graph-bf16"
    candidates = ["eager-fp32", "graph-fp32"]
    assert fastest_variant(rows, candidates) == "graph-fp32"
    variant, plan = plan_from_bench(rows, 240, candidates, overhead_s=20)
    assert variant == "graph-fp32"
    assert (plan.jobs, plan.iterations, plan.depths) == (4, 5500, (20, 32, 44, 56, 110))
    assert round(plan.expected_s) == 239
    with pytest.raises(ValueError, match="no single-job rows of graph-fp16 at depth 110"):
        fastest_variant(rows, ["graph-fp16"])
