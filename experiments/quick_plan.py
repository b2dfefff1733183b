"""Plan a quick Figure 6 from a bench: which variant, how many jobs at once, how many iterations.

    python -m experiments.quick_plan BENCH_CSV [JOBS_CSV] --budget-s 240 --variants graph-bf16,...

Prints shell assignments (variant, overrides, jobs, iterations, depths, expected_s) for
experiments/gpu_check.sh to `eval`: the fastest of --variants at the deepest benched depth, the
concurrency that pays (budget.best_jobs), and the iterations that end the sweep inside the budget
(budget.plan_quick_sweep). Depths come deepest first, so the longest runs start first.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from depthsweep.bench import VARIANTS
from depthsweep.budget import (
    RUN_OVERHEAD_S,
    best_jobs,
    concurrency_gain,
    ms_by_depth,
    plan_quick_sweep,
    read_bench,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("bench_csv", nargs="+", help="the bench's CSVs: single jobs, then concurrency")
    p.add_argument("--budget-s", type=float, default=240.0, help="the sweep's wall time")
    p.add_argument("--variants", required=True, help="candidates: those that passed the tests")
    p.add_argument(
        "--overhead-s", type=float, default=RUN_OVERHEAD_S, help="per run: start, data, evals"
    )
    p.add_argument("--min-iterations", type=int, default=2000, help="else fewer depths")
    p.add_argument("--round-to", type=int, default=100, help="iterations rounded down to this")
    args = p.parse_args(argv)
    rows = [row for path in args.bench_csv for row in read_bench(path)]
    candidates = [v for v in args.variants.split(",") if any(r["variant"] == v for r in rows)]
    if not candidates:
        print(f"no rows of {args.variants} in {', '.join(args.bench_csv)}", file=sys.stderr)
        return 2
    deepest = max(r["depth"] for r in rows)
    variant = min(candidates, key=lambda v: ms_by_depth(rows, v)[deepest])
    jobs, gain = best_jobs(concurrency_gain(rows, variant))
    try:
        plan = plan_quick_sweep(
            ms_by_depth(rows, variant),
            args.budget_s,
            jobs,
            gain,
            overhead_s=args.overhead_s,
            min_iterations=args.min_iterations,
            round_to=args.round_to,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    values = {
        "variant": variant,
        "overrides": " ".join(VARIANTS[variant]),
        "jobs": jobs,
        "iterations": plan.iterations,
        "depths": ",".join(map(str, sorted(plan.depths, reverse=True))),
        "expected_s": round(plan.expected_s),
    }
    for key, value in values.items():
        print(f"{key}={shlex.quote(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
