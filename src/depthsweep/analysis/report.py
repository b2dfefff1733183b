"""Write a sweep's report into its directory: summary.csv, by_depth.csv, summary.md, verdict.json
and the figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from depthsweep.analysis import plots
from depthsweep.analysis.plots import save_figure
from depthsweep.analysis.summaries import (
    aggregate,
    by_depth,
    decide,
    load_sweep,
    summarize,
    to_markdown,
)
from depthsweep.files import atomic_write_text

# what `analyze` writes into the sweep, as the end of a sweep and experiments.analyze say it
WRITTEN = (
    "summary.md, summary.csv, by_depth.csv, verdict.json, figure6.png and error_vs_depth.png "
    "(and .svg)"
)


def analyze(sweep_dir: str | os.PathLike, ylim: tuple[float, float] | None = None) -> pd.DataFrame:
    """Summarise a sweep and write summary.csv, by_depth.csv, summary.md, verdict.json and the
    figures into it."""
    sweep_dir = Path(sweep_dir)
    runs, metrics = load_sweep(sweep_dir)
    summary = summarize(runs, metrics)
    # Each table and the verdict computed once for every file that shows them.
    table, finished = aggregate(summary), by_depth(summary)
    judged = decide(summary, finished)
    atomic_write_text(sweep_dir / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(sweep_dir / "by_depth.csv", finished.to_csv(index=False))
    atomic_write_text(sweep_dir / "summary.md", to_markdown(summary, table, judged))
    verdict = json.dumps(judged.to_dict(), indent=2, ensure_ascii=False)
    atomic_write_text(sweep_dir / "verdict.json", verdict + "\n")
    subtitle = plots.describe(summary, table)
    save_figure(plots.figure6(metrics, ylim=ylim, subtitle=subtitle), sweep_dir / "figure6")
    save_figure(plots.error_vs_depth(summary, finished, subtitle), sweep_dir / "error_vs_depth")
    return summary
