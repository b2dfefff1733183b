"""A run's metrics.csv, read back: its columns, a row cut off mid-line, and the run's final errors
(the one reader of them, for the summaries, the zoo and searches)."""

from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from depthsweep.runs.rundir import ERROR_COLUMNS, METRICS

# Written by training (training.window, training.clocks, Lightning's LearningRateMonitor and
# validation; metrics_log): sparse rows, each holding what was logged together.
METRIC_COLUMNS = [
    "step",
    "epoch",
    "lr",
    "train_error",
    "train_loss",
    "train_error_epoch",
    "train_loss_epoch",
    "test_error",
    "test_loss",
    "val_error",
    "val_loss",
    "wall_time",
]


def metrics_cut_off(run_dir: Path) -> bool:
    """Whether metrics.csv ends inside a row (its writer was killed mid-line): the CSV writer ends
    every row with a newline."""
    path = run_dir / METRICS
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def read_metrics(run_dir: Path) -> pd.DataFrame | None:
    """The run's metrics.csv with the METRIC_COLUMNS it has as numbers, or None if absent or
    unreadable (with a warning). A last row cut off mid-line is dropped, with a warning."""
    path = run_dir / METRICS
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # metrics_cut_off, on the text already read
            warnings.warn(f"{path}: its last row is cut off mid-line: dropped", stacklevel=3)
            text = text[: text.rfind("\n") + 1]
        frame = pd.read_csv(io.StringIO(text))
        if "step" not in frame:
            raise ValueError("no 'step' column")
        known = [col for col in METRIC_COLUMNS if col in frame]
        frame[known] = frame[known].apply(pd.to_numeric)
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        warnings.warn(f"ignoring metrics in {path}: {exc}", stacklevel=3)
        return None
    return frame


def _last(values: pd.Series) -> float:
    values = values.dropna()
    return values.iloc[-1] if len(values) else math.nan


# "Final" training error: the mean of the windows logged in the last FINAL_FRACTION of the run
# (3,200 of 64,000 iterations; 300 of 6,000), all at the schedule's last learning rate. One
# window (50 mini-batches of 128) has a sampling noise of about 0.3-0.5 points near 10% error;
# averaging many keeps that below the differences between depths.
FINAL_FRACTION = 0.05
FINAL_PHASE = 0.25  # where lr was not logged: the last quarter, the paper's last lr phase


def within_run_se(train: pd.DataFrame, lr: pd.DataFrame, averaged: int) -> float:
    """The standard error of a run's final training error from its own logged windows: the
    scatter of the windows logged at the final learning rate about a straight line through them
    (which takes out the slow decline that is still going on), over sqrt(the windows averaged).
    Each window averages different mini-batches, so this is the mini-batch sampling noise of the
    final error: a floor for its uncertainty, since a run with another seed would land elsewhere
    as well. NaN with fewer than 3 windows in the final phase."""
    last = train["step"].max()
    if len(lr):
        final = lr["lr"].iloc[-1]
        earlier = lr.loc[lr["lr"] != final, "step"]
        start = earlier.max() + 1 if len(earlier) else 0
    else:
        start = (1 - FINAL_PHASE) * last
    phase = train[train["step"] >= start]
    if len(phase) < 3 or averaged < 1:
        return math.nan
    x, y = phase["step"].to_numpy(float), phase["train_error"].to_numpy(float)
    residuals = y - np.polyval(np.polyfit(x, y, 1), x)
    return float(np.sqrt(np.sum(residuals**2) / (len(phase) - 2) / averaged))


def final_errors(frame: pd.DataFrame) -> dict[str, float]:
    """End-of-training numbers of one run's metrics (every METRIC_COLUMNS column present): the
    iterations reached, ERROR_COLUMNS, the final training error's own SE, the wall time; NaN
    where nothing was logged."""
    frame = frame.sort_values("step", kind="stable")
    last_step = frame["step"].max()
    train = frame.dropna(subset=["train_error"])
    window = train.loc[train["step"] >= (1 - FINAL_FRACTION) * last_step, "train_error"]
    evals = frame.dropna(subset=["val_error", "test_error"])
    return {
        "iterations": last_step,
        "final_train_error": window.mean() if len(window) else _last(train["train_error"]),
        "final_test_error": _last(frame["test_error"]),
        "best_test_error": frame["test_error"].min(),
        "test_error_at_best_val": (
            evals.loc[evals["val_error"].idxmin(), "test_error"] if len(evals) else math.nan
        ),
        "final_train_error_se": within_run_se(train, frame.dropna(subset=["lr"]), len(window)),
        "wall_time_s": _last(frame["wall_time"]),
    }


def read_final_errors(run_dir: Path) -> dict[str, float]:
    """`final_errors` of the run's metrics.csv; all NaN if it has none."""
    frame = read_metrics(run_dir)
    if frame is None:
        frame = pd.DataFrame(columns=METRIC_COLUMNS, dtype=float)
    frame = frame.reindex(columns=list(dict.fromkeys([*METRIC_COLUMNS, *frame.columns])))
    return final_errors(frame)


def final_error(run_dir: Path, name: str) -> float:
    """One of a run's ERROR_COLUMNS: what a search over runs (Hydra's Optuna sweeper) optimises
    (`optimized_metric`)."""
    if name not in ERROR_COLUMNS:
        raise ValueError(f"optimized_metric={name!r}: choose one of {', '.join(ERROR_COLUMNS)}")
    return float(read_final_errors(run_dir)[name])
