"""The sweep-time arithmetic: projection, concurrency, and the quick Figure 6's iterations."""

from __future__ import annotations

import csv

import pytest

from depthsweep.tools.bench import COLUMNS
from depthsweep.tools.budget import (
    FP32_OVER_BF16,
    best_jobs,
    concurrency_gain,
    fastest_variant,
    figure_options,
    first_step_s,
    interpolate_ms,
    pair_ms,
    pair_variants,
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


def bench_rows(per_run: dict[str, float], jobs_gain: dict[int, float] | None = None) -> list[dict]:
    """Bench rows at depths 20 and 110: each variant's ms per run is `per_run[v]` x MS (a fused-K
    group's step K times that); graph-bf16's concurrency rows at 110 from `jobs_gain`."""
    rows = []
    for variant, factor in per_run.items():
        k = int(variant.removeprefix("fused-")) if variant.startswith("fused-") else 1
        for depth, ms in MS.items():
            step = k * factor * ms
            rows.append(
                {"variant": variant, "depth": depth, "jobs": 1, "members": k}
                | {"ms_per_step": step, "images_per_s": k * 128_000 / step}
            )
    for k, gain in (jobs_gain or {}).items():
        rows.append(
            {"variant": "graph-bf16", "depth": 110, "jobs": k, "members": 1}
            | {"ms_per_step": MS[110] * k / gain, "images_per_s": gain * 128_000 / MS[110]}
        )
    return rows


def test_a_fused_plan_trains_k_runs_a_job_with_one_overhead_per_job():
    # 2 seeds: 4 runs a depth, one fused-4 group each: 5 jobs, 5 x 20 s of overhead (20 runs
    # alone would pay 400 s). A step of all runs: 4 x 25.3 ms = 101.2 ms; (300 - 100) / 0.1012
    # = 1976 -> 1900 iterations.
    plan = plan_quick_sweep(MS, 300, seeds=2, fuse=4, overhead_s=20, min_iterations=1000)
    assert (plan.fuse, plan.seeds, plan.groups, plan.runs) == (4, 2, 5, 20)
    assert (plan.iterations, plan.depths) == (1900, (20, 32, 44, 56, 110))
    assert plan.expected_s == pytest.approx(100 + 1900 * 0.1012)
    alone = plan_quick_sweep(MS, 300, seeds=2, overhead_s=20, min_iterations=1000)
    assert (alone.groups, alone.iterations, alone.depths) == (12, 800, (20, 56, 110))
    with pytest.raises(ValueError, match="fuse=4 does not divide the 6 runs of a depth"):
        plan_quick_sweep(MS, 300, seeds=3, fuse=4)


def test_a_job_never_ends_before_its_longest_run_alone():
    # 4 runs at once at 4x throughput: a step of all four is (2 + 2 + 10.5 + 10.5) / 4 = 6.25 ms,
    # which would fit 1,680 iterations into 10.5 s, but a depth-110 run alone takes 10.5 ms a step
    plan = plan_quick_sweep(MS, 10.5, 4, 4.0, overhead_s=0, depth_sets=[(20, 110)])
    assert plan.iterations == 1000 and plan.expected_s == pytest.approx(10.5)


def test_the_plan_picks_fused_k_and_sets_fuse_k_and_its_seeds():
    rows = bench_rows({"graph-bf16": 1.0, "fused-4": 0.5, "fused-6": 0.4, "fused-8": 0.1})
    variant, plan = plan_from_bench(rows, 300, ["graph-bf16", "fused-4", "fused-6", "fused-8"],
                                    seeds=(2, 3), overhead_s=20, min_iterations=1000)  # fmt: skip
    # fused-8 is the cheapest per run but needs 4 seeds: 3 seeds of fused-6 (6 runs a depth,
    # one group) keep more than 80% of the iterations of 2 seeds of fused-4
    assert (variant, plan.fuse, plan.seeds, plan.groups, plan.jobs) == ("fused-6", 6, 3, 5, 1)
    two = plan_quick_sweep(MS, 300, seeds=2, fuse=4, overhead_s=20, min_iterations=1000)
    assert plan.iterations >= 0.8 * two.iterations
    # a fused-6 that saves little: 3 seeds would cost too many iterations, 2 seeds of fused-4
    rows = bench_rows({"graph-bf16": 1.0, "fused-4": 0.5, "fused-6": 0.7})
    variant, plan = plan_from_bench(rows, 300, ["graph-bf16", "fused-4", "fused-6"],
                                    seeds=(2, 3), overhead_s=20, min_iterations=1000)  # fmt: skip
    assert (variant, plan.fuse, plan.seeds) == ("fused-4", 4, 2)
    # the fused variants not allowed (their GPU tests failed): the unfused path, fuse=1
    variant, plan = plan_from_bench(rows, 300, ["graph-bf16"], seeds=(2, 3), overhead_s=20,
                                    min_iterations=500)  # fmt: skip
    assert (variant, plan.fuse, plan.groups) == ("graph-bf16", 1, 12)


def test_the_precision_pair_is_planned_in_with_its_own_jobs():
    rows = bench_rows({"graph-bf16": 1.0, "graph-fp32": 1.8, "fused-4": 0.5}, {2: 1.5, 4: 2.0})
    common = {"seeds": (2,), "overhead_s": 20, "min_iterations": 1000}
    _, bare = plan_from_bench(rows, 300, ["fused-4"], **common)
    variant, plan = plan_from_bench(rows, 300, ["fused-4"], pair_depth=56, **common)
    assert variant == "fused-4" and plan.iterations < bare.iterations
    assert plan.pair_jobs == 2  # graph-bf16's two processes at once gave 1.5x
    bf16 = interpolate_ms(MS, 56)  # 5.4 ms; fp32 1.8 x that
    pair = max((40 + plan.iterations * (1.8 + 1.0) * bf16 / 1000) / 1.5,
               20 + plan.iterations * 1.8 * bf16 / 1000)  # fmt: skip
    assert plan.pair_s == pytest.approx(pair)
    assert plan.expected_s <= 300
    # unmeasured fp32: bf16's x FP32_OVER_BF16
    no_fp32 = [r for r in rows if r["variant"] != "graph-fp32"]
    assert pair_ms(no_fp32, "fused-4", 56) == pytest.approx((FP32_OVER_BF16 * bf16, bf16))
    assert pair_variants("eager-bf16") == ("eager-fp32", "eager-bf16")


def test_concurrency_gain_is_the_smaller_of_the_depths_measured():
    rows = [
        {"variant": "g", "depth": d, "jobs": k, "images_per_s": ips}
        for d, k, ips in [(110, 1, 100), (110, 2, 150), (110, 4, 200), (20, 1, 1000),
                          (20, 2, 1800), (20, 4, 1900)]
    ]  # fmt: skip
    assert concurrency_gain(rows, "g") == {1: 1.0, 2: 1.5, 4: 1.9}
    assert concurrency_gain(rows, "g", 20) == {1: 1.0, 2: 1.8, 4: 1.9}
    assert concurrency_gain(rows, "other") == {1: 1.0}


def test_a_fused_groups_longer_first_step_is_paid_once_per_group():
    rows = bench_rows({"graph-bf16": 1.0, "fused-4": 0.5})
    for r in rows:
        r["first_step_s"] = {"graph-bf16": 0.3, "fused-4": 10.3}[r["variant"]]
    [(_, plan)] = figure_options(rows, 300, ["fused-4"], (2,), overhead_s=20, min_iterations=1000)
    # 5 groups x (20 + 10) s of overhead, then 4 x 0.5 x 25.3 = 50.6 ms a step of all runs:
    # (300 - 150) / 0.0506 = 2964 -> 2900 (3,900 with graph-bf16's first step)
    assert plan.iterations == 2900 and plan.expected_s == pytest.approx(150 + 2900 * 0.0506)
    assert first_step_s(rows, "fused-4") == 10.3 and first_step_s(rows, "fused-8") == 0.0
