"""Summarise a sweep: `python -m experiments.analyze SWEEP_DIR`.

Writes summary.csv, by_depth.csv, summary.md, verdict.json, figure6.{png,svg} and
error_vs_depth.{png,svg} into SWEEP_DIR and prints the summary table and the verdict.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from depthsweep.analysis.report import WRITTEN, analyze
from depthsweep.analysis.summaries import to_markdown
from depthsweep.runs.sweep import NoRunsError
from experiments.exits import interruptible


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; exit status 2 when the directory holds no runs or cannot be written, or
    --ylim is not two finite numbers LOW < HIGH (one line, nothing written)."""
    parser = argparse.ArgumentParser(description="Summarise a depthsweep sweep directory.")
    parser.add_argument(
        "sweep_dir", help="a sweep directory, multirun/<name> (e.g. multirun/depthsweep)"
    )
    parser.add_argument(
        "--ylim",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="y range of figure6, in %% (default: 0 to above the highest curve; the paper: 0 20)",
    )
    args = parser.parse_args(argv)
    if args.ylim:  # checked before anything is written
        low, high = args.ylim
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            said = f"--ylim {low:g} {high:g}: two finite numbers, LOW < HIGH"
            print(f"error: {said}", file=sys.stderr)
            return 2
    try:
        summary = analyze(args.sweep_dir, ylim=args.ylim and tuple(args.ylim))
    except NoRunsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only sweep (someone else's, a mounted archive), a full disk
        why = exc.strerror or exc
        print(f"error: cannot write the summary into {args.sweep_dir}: {why}", file=sys.stderr)
        return 2
    print(to_markdown(summary), end="")  # ends with the verdict line
    print(f"in {Path(args.sweep_dir).absolute()}: {WRITTEN}")
    return 0


if __name__ == "__main__":
    sys.exit(interruptible(main))
