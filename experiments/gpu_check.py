"""Everything that needs a GPU, as prepared device calls (depthsweep.tools.gpu_check says what each
runs):

    python -m experiments.gpu_check call1 OUT [--carry .gpu_call1] [--stash .gpu_stash]
        [--deadline-s 240] [--dry-run] [...]
    python -m experiments.gpu_check call2 OUT [--carry .gpu_call2] [--stash .gpu_stash]
        [--deadline-s 420] [--dry-run] [--force-variant V] [--val-split N] [FIGURE_OVERRIDE ...]
    python -m experiments.gpu_check OUT DATA_ROOT [--deadline-s 510] [--figure-budget-s 240]
        [--depths 20,110] [--steps 100] [--warmup 20] [--jobs 4] [FIGURE_OVERRIDE ...]

call1 and call2 are issue #18's window (Figure 6 on all 50,000 training images, two device calls
of one warm machine: experiments/gpu_check.sh and results/gpu/README.md say how to make them);
the third form is the one-call quick check on the 17,000 images of one part (DATA_ROOT holds
cifar-10-batches-py/; OUT gets gpu_check.tar.gz and the files worth reading first).
--dry-run shrinks every size for a CPU (depthsweep.tools.gpu_check.dry_run_window); the quick
check's dry run shrinks its sizes and plan by hand (--overhead-s, --min-iterations, --round-to)
and adds overrides of the figure's sweep, e.g. data.limit=500.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from depthsweep.tools.budget import RUN_OVERHEAD_S
from depthsweep.tools.gpu_check import (
    Sizes,
    Window,
    dry_run_window,
    run_call1,
    run_call2,
    run_check,
)

DEADLINES = {"call1": 240.0, "call2": 420.0}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def window(argv: list[str]) -> int:
    """Issue #18's window: call1 or call2."""
    call = argv[0]
    p = argparse.ArgumentParser(
        prog=f"python -m experiments.gpu_check {call}",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("out", type=Path, help="where the call's files go ($OUT on the device)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of the figure and the pair")
    p.add_argument("--carry", type=Path, default=Path(f".gpu_{call}"), help="the carried folder")
    p.add_argument("--stash", type=Path, default=Path(".gpu_stash"), help="kept between calls")
    p.add_argument("--deadline-s", type=float, default=DEADLINES[call], help="steps end by then")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, for a CPU")
    p.add_argument("--force-variant", help="plan only this variant (e.g. fused-6)")
    p.add_argument("--val-split", type=int, default=0, help="data.val_split of figure and pair")
    p.add_argument("--seeds", type=_ints, help="seed counts the plan weighs (default 2,3)")
    p.add_argument("--figure-budget-s", type=float, help="cap on the figure and pair's budget")
    a = p.parse_intermixed_args(argv[1:])
    given = {"force_variant": a.force_variant, "val_split": a.val_split}
    given |= {"seeds": a.seeds} if a.seeds else {}
    given |= {"figure_budget_s": a.figure_budget_s} if a.figure_budget_s else {}
    w = dry_run_window(a.deadline_s, **given) if a.dry_run else Window(a.deadline_s, **given)
    if a.overrides:
        w.figure_overrides = [*w.figure_overrides, *a.overrides]
    run = run_call1 if call == "call1" else run_call2
    return run(a.out, a.carry, a.stash, w)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DEADLINES:
        return window(argv)
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
