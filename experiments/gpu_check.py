"""Everything that needs a GPU, as one prepared call (depthsweep.tools.gpu_check says what it runs):

    python -m experiments.gpu_check OUT DATA_ROOT [--deadline-s 510] [--figure-budget-s 240]
        [--depths 20,110] [--steps 100] [--warmup 20] [--jobs 4] [FIGURE_OVERRIDE ...]

DATA_ROOT holds cifar-10-batches-py/. OUT gets gpu_check.tar.gz and the files worth reading first.
A CPU dry run shrinks the sizes and the plan (--overhead-s, --min-iterations, --round-to) and adds
overrides of the figure's sweep, e.g. data.limit=500.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from depthsweep.tools.budget import RUN_OVERHEAD_S
from depthsweep.tools.gpu_check import Sizes, run_check


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("data_root", type=Path)
    p.add_argument("figure_overrides", nargs="*", help="Hydra overrides of the figure's sweep")
    p.add_argument("--deadline-s", type=float, default=510, help="steps end by then")
    p.add_argument("--figure-budget-s", type=float, default=240, help="the figure's cap")
    p.add_argument("--depths", default="20,110", help="the bench's depths")
    p.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--jobs", type=int, default=4, help="up to this many processes at once")
    p.add_argument("--overhead-s", type=float, default=RUN_OVERHEAD_S, help="a run's, beyond steps")
    p.add_argument("--min-iterations", type=int, default=2000, help="else fewer depths")
    p.add_argument("--round-to", type=int, default=100, help="iterations rounded down to this")
    a = p.parse_intermixed_args(argv)
    sizes = Sizes(
        deadline_s=a.deadline_s,
        figure_budget_s=a.figure_budget_s,
        depths=[int(d) for d in a.depths.split(",")],
        steps=a.steps,
        warmup=a.warmup,
        jobs=a.jobs,
        plan={"overhead_s": a.overhead_s, "min_iterations": a.min_iterations,
              "round_to": a.round_to},
        figure_overrides=a.figure_overrides,
    )  # fmt: skip
    # The device machine gets the working tree without .git: the caller names the commit.
    run_check(a.out, a.data_root, sizes, commit=os.environ.get("DEPTHSWEEP_COMMIT"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
