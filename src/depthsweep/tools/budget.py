"""What a sweep costs in time: ms/step by depth (from the bench) projected onto a sweep, the fastest
variant measured, and the number of iterations that fits a quick Figure 6 into a time budget.

Read from a bench CSV (`experiments.bench --out`): one row per (arch, depth, variant, jobs) with
`ms_per_step`, `images_per_s` and `members` (a fused group's step is `members` runs' steps: costs
are per run, ms_per_step / members, so that fused and unfused variants compare).

A figure's plan (`plan_from_bench`) weighs every measured variant at every seed count asked for:
a fused-K variant trains the sweep's runs K to a job (`fuse=K`), so it applies only where K
divides the runs of one depth (plain and resnet x seeds: the sweeper fuses runs of one depth
only) and costs one job's overhead per group, not per run. With a precision pair (ResNet at one
depth, fp32 and bf16, the figure's iterations) its cost is planned in too.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from depthsweep.paper import PAPER_DEPTHS, PAPER_ITERATIONS

QUICK_DEPTH_SETS = (PAPER_DEPTHS, (20, 56, 110))  # the paper's, else its three telling depths
# A run's cost beyond its steps (process start, data, graph capture, evaluations, checkpoints):
# 10 runs of 6,000 iterations, 4 at once under MPS, took 229 s on an H200 against 171 s of
# measured steps (results/gpu/figure6_quick), about 12 s a run.
RUN_OVERHEAD_S = 12.0
# fp32 over bf16 ms/step of the CUDA-graph path on that H200 (results/gpu/check/bench.csv: 3.9 /
# 2.3 at depth 20, 20.8 / 11.5 at 110): the precision pair's fp32 cost where none was measured.
FP32_OVER_BF16 = 1.81


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


def concurrency_gain(
    rows: Sequence[Mapping], variant: str, depth: int | None = None
) -> dict[int, float]:
    """Total throughput of k concurrent jobs of `variant` over one job's, for each measured k, at
    `depth`. Without a depth: at each depth where k > 1 was measured, the smallest gain for each k
    (the plan's jobs run at every depth). One job's throughput is the last jobs=1 row at that
    depth: the concurrency bench's own, which follows the single-job bench's rows."""
    if depth is None:
        depths = {r["depth"] for r in rows if r["variant"] == variant and r["jobs"] > 1}
        if not depths:
            return {1: 1.0}
        per_depth = [concurrency_gain(rows, variant, d) for d in sorted(depths)]
        ks = set.intersection(*(set(g) for g in per_depth))
        return {k: min(g[k] for g in per_depth) for k in sorted(ks)}
    total = {
        r["jobs"]: r["images_per_s"]
        for r in rows
        if r["variant"] == variant and r["depth"] == depth
    }
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
    expected_s: float  # the plan's own estimate of the sweep's wall time (and the pair's)
    seeds: int = 1  # seeds 0..seeds-1 of each arch and depth
    fuse: int = 1  # runs per fused group (fuse=K); 1: unfused
    groups: int = 0  # jobs the sweep launches (runs, or fused groups)
    pair_s: float = 0.0  # of expected_s: the precision pair's
    pair_jobs: int = 1  # the pair's runs at once

    @property
    def runs(self) -> int:
        return 2 * self.seeds * len(self.depths)


def _wall_s(works: Sequence[float], gain: float) -> float:
    """Wall time of jobs of `works` seconds each (alone), run with total throughput `gain` times
    one job's: their sum over the gain, but never less than the longest job alone."""
    return max(sum(works) / gain, max(works)) if works else 0.0


def plan_quick_sweep(
    ms: Mapping[int, float],
    budget_s: float,
    jobs: int = 1,
    gain: float = 1.0,
    archs: int = 2,
    overhead_s: float = RUN_OVERHEAD_S,
    min_iterations: int = 2000,
    round_to: int = 100,
    seeds: int = 1,
    fuse: int = 1,
    pair_ms: Sequence[float] = (),
    pair_gain: float = 1.0,
    pair_jobs: int = 1,
    depth_sets: Sequence[Sequence[int]] = QUICK_DEPTH_SETS,
) -> QuickPlan:
    """The iterations per run that end a sweep of `archs` archs x `seeds` seeds at the first
    depth set of `depth_sets` that gets at least `min_iterations` inside `budget_s` seconds,
    `jobs` jobs at a time with total throughput `gain` times one job's. `ms` is one run's ms/step
    by depth; with `fuse` K > 1 a job is a fused group of K runs of one depth (K must divide
    archs x seeds) whose step costs K runs' steps. Each job also costs `overhead_s` (process
    start, data, graph capture, evaluations). A precision pair, where `pair_ms` (ms/step of each
    of its runs) is given, trains after the sweep at the same iterations, `pair_jobs` at once with
    gain `pair_gain`. Rounded down to `round_to`."""
    per_depth = archs * seeds
    if fuse < 1 or per_depth % fuse:
        raise ValueError(f"fuse={fuse} does not divide the {per_depth} runs of a depth")

    def seconds(depths: Sequence[int], iterations: int) -> tuple[float, float]:
        group_ms = [fuse * interpolate_ms(ms, d) for d in depths for _ in range(per_depth // fuse)]
        sweep = _wall_s([overhead_s + iterations * m / 1000 for m in group_ms], gain)
        pair = _wall_s([overhead_s + iterations * m / 1000 for m in pair_ms], pair_gain)
        return sweep, pair

    for depths in depth_sets:
        runs = per_depth * len(depths)
        low, high = 0, 1  # in units of round_to: the largest that fits, by bisection
        while sum(seconds(depths, high * round_to)) <= budget_s and high < 10**7:
            low, high = high, 2 * high
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (
                (mid, high) if sum(seconds(depths, mid * round_to)) <= budget_s else (low, mid)
            )
        iterations = low * round_to
        if iterations >= min_iterations or depths == depth_sets[-1]:
            break
    if iterations < round_to:
        raise ValueError(
            f"a {budget_s:.0f} s budget leaves no time to train {runs} runs "
            f"({overhead_s:.0f} s of overhead a job, {gain:.2f}x throughput with {jobs} jobs)"
        )
    sweep, pair = seconds(depths, iterations)
    groups = runs // fuse
    return QuickPlan(
        iterations, tuple(depths), jobs, sweep + pair, seeds, fuse, groups, pair, pair_jobs
    )


def members(rows: Sequence[Mapping], variant: str) -> int:
    """The runs one step of `variant` trains (the bench's `members` column: K for fused-K)."""
    return max((int(r.get("members", 1)) for r in rows if r["variant"] == variant), default=1)


def pair_variants(variant: str) -> tuple[str, str]:
    """The unfused fp32 and bf16 variants of `variant`'s path: its graph or eager step (a fused
    group's is the composed config's, a CUDA graph on a GPU)."""
    kind = "eager" if variant.startswith("eager") else "graph"
    return f"{kind}-fp32", f"{kind}-bf16"


def pair_ms(rows: Sequence[Mapping], variant: str, depth: int) -> tuple[float, float]:
    """ms/step of the precision pair's runs (fp32, bf16) at `depth`: the measured unfused
    variants of `variant`'s path; bf16 unmeasured: `variant`'s own per-run cost; fp32
    unmeasured: bf16's x FP32_OVER_BF16."""

    def measured(v: str) -> float | None:
        try:
            return interpolate_ms(ms_by_depth(rows, v), depth)
        except ValueError:
            return None

    fp32, bf16 = (measured(v) for v in pair_variants(variant))
    bf16 = bf16 or interpolate_ms(ms_by_depth(rows, variant), depth)
    return fp32 or FP32_OVER_BF16 * bf16, bf16


def first_step_s(rows: Sequence[Mapping], variant: str) -> float:
    """`variant`'s first step (graph capture, cuDNN autotuning) at the deepest depth measured, one
    job (the deepest: the process's own start-up went into the first depth's); 0 if unknown."""
    single = [r for r in rows if r["variant"] == variant and r["jobs"] == 1]
    deepest = max((r["depth"] for r in single), default=None)
    seconds = []
    for r in single:
        try:
            if r["depth"] == deepest:
                seconds.append(float(r.get("first_step_s") or 0.0))
        except (TypeError, ValueError):
            continue
    return max(seconds, default=0.0)


def figure_options(
    rows: Sequence[Mapping],
    budget_s: float,
    candidates: Iterable[str],
    seeds: Sequence[int] = (1,),
    pair_depth: int | None = None,
    **options: float,
) -> list[tuple[str, QuickPlan]]:
    """Every plan that fits: each of `candidates` measured at one job (its jobs at once from its
    concurrency rows, if any) at each seed count it applies to (fused-K: K divides 2 x seeds),
    with the precision pair at `pair_depth` if given (2 at once where 2 jobs pay). A job's
    overhead is `overhead_s` (calibrated on graph-bf16 runs) plus what the variant's first step
    took beyond graph-bf16's (a fused group's larger graph and autotuning)."""
    single = {r["variant"] for r in rows if r["jobs"] == 1} - {"reference"}
    plans = []
    for variant in sorted(set(candidates) & single):
        jobs, gain = best_jobs(concurrency_gain(rows, variant))
        k = members(rows, variant)
        extra = max(0.0, first_step_s(rows, variant) - first_step_s(rows, "graph-bf16"))
        own = dict(options)
        own["overhead_s"] = own.get("overhead_s", RUN_OVERHEAD_S) + extra
        pair: dict = {}
        if pair_depth is not None:
            bf16 = pair_variants(variant)[1]
            two = concurrency_gain(rows, bf16).get(2, 1.0)
            pair_jobs, pair_gain = best_jobs({1: 1.0, 2: two})
            ms_pair = pair_ms(rows, variant, pair_depth)
            pair = {"pair_ms": ms_pair, "pair_gain": pair_gain, "pair_jobs": pair_jobs}
        for s in seeds:
            if (2 * s) % k:
                continue
            try:
                plan = plan_quick_sweep(
                    ms_by_depth(rows, variant), budget_s, jobs, gain, seeds=s, fuse=k,
                    **pair, **own,
                )  # fmt: skip
            except ValueError:
                continue
            plans.append((variant, plan))
    return plans


def choose_plan(
    plans: Sequence[tuple[str, QuickPlan]], more_seeds_worth: float = 0.8
) -> tuple[str, QuickPlan]:
    """The plan that trains the figure: at the fewest seeds offered, the most depths, then the most
    iterations (then the shortest); more seeds where their best plan keeps the depths and at
    least `more_seeds_worth` of those iterations (seeds tighten the verdict's intervals; the
    paper's claim needs iterations)."""
    if not plans:
        raise ValueError("no plan fits: no candidate variant was measured, or none fits the budget")

    def best(seeds: int) -> tuple[str, QuickPlan]:
        at = [p for p in plans if p[1].seeds == seeds]
        return max(at, key=lambda p: (len(p[1].depths), p[1].iterations, -p[1].expected_s))

    counts = sorted({p.seeds for _, p in plans})
    chosen = best(counts[0])
    for s in counts[1:]:
        more = best(s)
        base = chosen[1]
        if len(more[1].depths) >= len(base.depths) and (
            more[1].iterations >= more_seeds_worth * best(counts[0])[1].iterations
        ):
            chosen = more
    return chosen


def plan_from_bench(
    rows: Sequence[Mapping],
    budget_s: float,
    candidates: Iterable[str],
    seeds: Sequence[int] = (1,),
    pair_depth: int | None = None,
    more_seeds_worth: float = 0.8,
    **options: float,
) -> tuple[str, QuickPlan]:
    """A Figure 6 sweep from bench rows (single jobs and concurrency): of `candidates` and
    `seeds`, the plan `choose_plan` picks from `figure_options` (a fused-K variant's with
    fuse=K), its iterations ending the sweep (and the precision pair at `pair_depth`, if given)
    inside `budget_s`."""
    candidates = list(candidates)
    plans = figure_options(rows, budget_s, candidates, seeds, pair_depth, **options)
    if not plans:  # say why: nothing measured, or the fastest fits neither fusion nor budget
        variant = fastest_variant(rows, candidates)
        k = members(rows, variant)
        plan_quick_sweep(ms_by_depth(rows, variant), budget_s, seeds=seeds[0], fuse=k, **options)
    return choose_plan(plans, more_seeds_worth)
