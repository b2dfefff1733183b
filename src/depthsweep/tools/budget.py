"""What a sweep costs in time: ms/step by depth (from the bench) projected onto a sweep, the fastest
variant measured, and the number of iterations that fits a quick Figure 6 into a time budget.

Read from a bench CSV (`experiments.bench --out`): one row per (arch, depth, variant, jobs) with
`ms_per_step`, `images_per_s` and `members` (a fused group's step is `members` runs' steps: costs
are per run, ms_per_step / members, so that fused and unfused variants compare).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PAPER_DEPTHS = (20, 32, 44, 56, 110)
PAPER_ITERATIONS = 64_000
QUICK_DEPTH_SETS = (PAPER_DEPTHS, (20, 56, 110))  # the paper's, else its three telling depths
# A run's cost beyond its steps (process start, data, graph capture, evaluations, checkpoints):
# 10 runs of 6,000 iterations, 4 at once under MPS, took 229 s on an H200 against 171 s of
# measured steps (results/gpu/figure6_quick), about 12 s a run.
RUN_OVERHEAD_S = 12.0


def read_bench(path: str | Path) -> list[dict]:
    """The bench CSV's rows, numbers as numbers."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["depth"], r["jobs"] = int(r["depth"]), int(r["jobs"])
        r["ms_per_step"], r["images_per_s"] = float(r["ms_per_step"]), float(r["images_per_s"])
        r["members"] = int(r.get("members") or 1)  # bench CSVs from before fused runs: 1
    return rows


def ms_by_depth(rows: Sequence[Mapping], variant: str) -> dict[int, float]:
    """One job's ms per step of one run of `variant` at each measured depth (a fused group's
    ms/step over its members), the slowest arch where several were measured (plain and resnet cost
    the same to within their shortcuts)."""
    out: dict[int, float] = {}
    for r in rows:
        if r["variant"] == variant and r["jobs"] == 1:
            per_run = r["ms_per_step"] / r.get("members", 1)
            out[r["depth"]] = max(out.get(r["depth"], 0.0), per_run)
    if not out:
        raise ValueError(f"no single-job rows of variant {variant!r} in the bench")
    return out


def fastest_variant(rows: Sequence[Mapping], candidates: Iterable[str] | None = None) -> str:
    """The harness variant (of `candidates`, if given) with the lowest single-job ms/step at the
    deepest depth measured (`ms_by_depth`: the slowest arch's): the one place that picks it."""
    deepest = max(r["depth"] for r in rows)
    measured = {r["variant"] for r in rows if r["depth"] == deepest and r["jobs"] == 1}
    measured.discard("reference")
    wanted = measured if candidates is None else set(candidates)
    chosen = measured & wanted
    if not chosen:
        raise ValueError(f"no single-job rows of {', '.join(sorted(wanted))} at depth {deepest}")
    return min(sorted(chosen), key=lambda v: ms_by_depth(rows, v)[deepest])


def interpolate_ms(ms: Mapping[int, float], depth: int) -> float:
    """ms/step at `depth`, linear in depth between measured depths and beyond them along the
    nearest segment; from one measured depth, proportional to depth."""
    points = sorted(ms.items())
    if len(points) == 1:
        ((d0, m0),) = points
        return m0 * depth / d0
    i = 1
    while i < len(points) - 1 and depth > points[i][0]:
        i += 1
    (d0, m0), (d1, m1) = points[i - 1], points[i]
    return m0 + (m1 - m0) * (depth - d0) / (d1 - d0)


def project_sweep_s(
    ms: Mapping[int, float],
    depths: Sequence[int] = PAPER_DEPTHS,
    iterations: int = PAPER_ITERATIONS,
    speedup: float = 1.0,
) -> float:
    """Seconds of training steps for one arch at `depths`, `iterations` each, with `speedup` the
    measured gain in total throughput from running several jobs at once."""
    return sum(interpolate_ms(ms, d) for d in depths) * iterations / 1000 / speedup


def concurrency_gain(rows: Sequence[Mapping], variant: str) -> dict[int, float]:
    """Total throughput of k concurrent jobs of `variant` over one job's, for each measured k."""
    total = {r["jobs"]: r["images_per_s"] for r in rows if r["variant"] == variant}
    if 1 not in total:
        return {1: 1.0}
    return {k: v / total[1] for k, v in sorted(total.items())}


def best_jobs(gains: Mapping[int, float], worth: float = 1.1) -> tuple[int, float]:
    """The fewest jobs whose gain no larger count beats by a factor `worth` (more jobs cost memory
    and make the slowest run finish later)."""
    k = 1
    for more in sorted(gains):
        if gains[more] >= worth * gains[k]:
            k = more
    return k, gains[k]


@dataclass
class QuickPlan:
    iterations: int
    depths: tuple[int, ...]
    jobs: int
    expected_s: float  # the plan's own estimate of the sweep's wall time


def plan_quick_sweep(
    ms: Mapping[int, float],
    budget_s: float,
    jobs: int = 1,
    gain: float = 1.0,
    archs: int = 2,
    overhead_s: float = RUN_OVERHEAD_S,
    min_iterations: int = 2000,
    round_to: int = 100,
) -> QuickPlan:
    """The iterations per run that end a sweep of `archs` archs at the first depth set of
    QUICK_DEPTH_SETS that gets at least `min_iterations` inside `budget_s` seconds, `jobs` runs at
    a time with total throughput `gain` times one job's. Each run also costs `overhead_s` (process
    start, data, graph capture, evaluations). Rounded down to `round_to`."""
    for depths in QUICK_DEPTH_SETS:
        runs = archs * len(depths)
        step_s = archs * sum(interpolate_ms(ms, d) for d in depths) / 1000  # one step of each run
        fit = (budget_s * gain - runs * overhead_s) / step_s
        iterations = max(0, math.floor(fit / round_to) * round_to)
        if iterations >= min_iterations or depths == QUICK_DEPTH_SETS[-1]:
            break
    if iterations < round_to:
        raise ValueError(
            f"a {budget_s:.0f} s budget leaves no time to train {runs} runs "
            f"({overhead_s:.0f} s of overhead each, {gain:.2f}x throughput with {jobs} jobs)"
        )
    expected = (runs * overhead_s + iterations * step_s) / gain
    return QuickPlan(iterations, tuple(depths), jobs, expected)


def plan_from_bench(
    rows: Sequence[Mapping], budget_s: float, candidates: Iterable[str], **options: float
) -> tuple[str, QuickPlan]:
    """A quick Figure 6 from bench rows (single jobs and concurrency): the fastest of
    `candidates`, the jobs at once that pay (`best_jobs`), and the iterations that end the sweep
    inside `budget_s` (`plan_quick_sweep`, given `options`)."""
    variant = fastest_variant(rows, candidates)
    jobs, gain = best_jobs(concurrency_gain(rows, variant))
    return variant, plan_quick_sweep(ms_by_depth(rows, variant), budget_s, jobs, gain, **options)
