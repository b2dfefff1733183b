"""A transfer sweep's report: transfer.csv (one row per finished run) and transfer.png/.svg (target
test error against labelled images per class, one line per mode), written into the sweep
directory."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from depthsweep.analysis.plots import save_figure
from depthsweep.apps.transfer import MODES
from depthsweep.files import atomic_write_text
from depthsweep.runs.rundir import RunRecord, find_runs

# run.json's fields but the provenance; those added later go last, so older tables' order stays
COLUMNS = [
    *["freeze", "labels_per_class", "seed", "test_error", "test_loss", "train_images"],
    *["test_images", "iterations", "wall_time_s", "cache", "source_arch", "source_depth"],
    *["source_classes", "target_classes", "source", "source_sha256", "cache_file", "precision"],
    "run_dir",
]


def collect(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """Every finished transfer run below `sweep_dir`, one row each (its run.json), by mode (MODES
    order), labels per class and seed; class lists joined with commas."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for run_dir in find_runs(sweep_dir):
        record = RunRecord(run_dir)
        if not record.is_finished():
            continue
        row = record.read()
        for key in ("source_classes", "target_classes"):
            row[key] = ",".join(row[key])
        rows.append(row | {"run_dir": run_dir.relative_to(sweep_dir).as_posix()})
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["freeze"] = pd.Categorical(table["freeze"], categories=MODES, ordered=True)
    return table.sort_values(["freeze", "labels_per_class", "seed"], ignore_index=True)


def figure(table: pd.DataFrame) -> Figure:
    """Target test error vs labelled images per class (log scale), one line per mode; error
    bars: std over seeds."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for mode, rows in table.groupby("freeze", observed=True):
        stats = rows.groupby("labels_per_class")["test_error"].agg(["mean", "std"])
        ax.errorbar(
            stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3, label=mode
        )
    ax.set(
        xscale="log",
        xlabel="labelled training images per class",
        ylabel="target test error (%)",
        xticks=sorted(table["labels_per_class"].unique()),
    )
    ax.xaxis.set_major_formatter("{x:g}")
    ax.set_ylim(bottom=0)
    if len(table):
        ax.legend(title="transfer.freeze")
    return fig


def write_report(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """Write transfer.csv and transfer.png/.svg into `sweep_dir`; returns the table."""
    table = collect(sweep_dir)
    atomic_write_text(Path(sweep_dir) / "transfer.csv", table.to_csv(index=False))
    save_figure(figure(table), Path(sweep_dir) / "transfer")
    return table
