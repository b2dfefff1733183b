"""Summarise a sweep: `python -m experiments.analyze SWEEP_DIR`.

Writes summary.csv, summary.md, figure6.{png,svg} and error_vs_depth.{png,svg} into SWEEP_DIR
and prints the summary table and the verdict.
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.analysis.report import analyze
from depthsweep.analysis.summaries import to_markdown
from depthsweep.runs.sweep import NoRunsError


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; exit status 2 when the directory holds no runs."""
    parser = argparse.ArgumentParser(description="Summarise a depthsweep sweep directory.")
    parser.add_argument("sweep_dir", help="a Hydra multirun directory, e.g. multirun/DATE/TIME")
    parser.add_argument(
        "--ylim",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="y range of figure6, in %% (default: 0 to above the highest curve; the paper: 0 20)",
    )
    args = parser.parse_args(argv)
    try:
        summary = analyze(args.sweep_dir, ylim=args.ylim and tuple(args.ylim))
    except NoRunsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(to_markdown(summary), end="")  # ends with the verdict line
    return 0


if __name__ == "__main__":
    sys.exit(main())
