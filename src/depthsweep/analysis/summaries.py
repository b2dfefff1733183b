"""A sweep's runs as tables: one row per run, seed means per (arch, depth), the verdict, and the
summary.md text. `report.analyze` writes them and the figures into the sweep directory."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from depthsweep.analysis import verdict as judge
from depthsweep.paper import PAPER_ITERATIONS
from depthsweep.runs.metrics import METRIC_COLUMNS, final_errors, metrics_cut_off, read_metrics
from depthsweep.runs.rundir import ERROR_COLUMNS
from depthsweep.runs.sweep import NO_CONFIG, RUN_KEYS, UNSET, runs_table
from depthsweep.training.data import OFFICIAL_TEST_MD5

# Reference errors (%) shown beside ours in summary.md, as (train, test) display strings.
# resnet: test error from He et al. 2016, Table 6 (for 110 the best of 5 runs; mean 6.61).
# plain: read off Fig. 6 (left) at 64k iterations, hence "≈". The paper only says plain-110's
# error is "higher than 60%" and leaves it out of the figure.
PAPER_ERRORS: dict[tuple[str, int], tuple[str, str]] = {
    ("resnet", 20): ("—", "8.75"),
    ("resnet", 32): ("—", "7.51"),
    ("resnet", 44): ("—", "7.17"),
    ("resnet", 56): ("—", "6.97"),
    ("resnet", 110): ("—", "6.43"),
    ("plain", 20): ("≈1.4", "≈9.7"),
    ("plain", 56): ("≈5.9", "≈13.3"),
    ("plain", 110): (">60", "—"),
}

# The standard errors of a run's final errors, from the run alone (runs.metrics.within_run_se and
# test_error_se); aggregate combines them with the spread over seeds.
SE_COLUMNS = ["final_train_error_se", "final_test_error_se"]
SUMMARY_COLUMNS = [
    *["arch", "depth", "seed", "params", "iterations", "status", *ERROR_COLUMNS, *SE_COLUMNS],
    *["macs", "wall_time_s", "first_step_s", "run_dir", "error"],
    *["train_images", "classes", "test_images", "test_md5", "test_official"],
    *["warmup_end", "warmup_end_reason"],
]


COLUMN_TITLES = {
    "final_train_error": "final train error",
    "final_test_error": "final test error",
    "best_test_error": "best test error",
    "test_error_at_best_val": "test error at best val",
}


# A run whose run.json says done but whose metrics.csv ends mid-row: its numbers are not whole.
CUT_OFF = "metrics cut off"


def load_sweep(sweep_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a sweep: (runs, one row per run as `runs.sweep.runs_table` reads it; metrics, all
    metrics rows tagged with their run and variant). A run whose run.json says done but whose
    metrics.csv was cut off mid-row is never reported as done."""
    sweep_dir = Path(sweep_dir)
    runs = runs_table(sweep_dir)
    frames = []
    for i, row in runs.iterrows():
        run_dir = sweep_dir / row["run_dir"]
        if row["status"] == "done" and metrics_cut_off(run_dir):
            runs.loc[i, "status"] = CUT_OFF
        frame = read_metrics(run_dir)
        if frame is not None:
            tags = {key: row[key] for key in ("arch", "depth", "seed", "run_dir", "variant")}
            frames.append(frame.assign(**tags))
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    ids = ["arch", "variant", "depth", "seed", "run_dir"]
    extra = [col for col in metrics.columns if col not in ids + METRIC_COLUMNS]
    # Every known column exists, so callers need not check which ones a run happened to log.
    metrics = metrics.reindex(columns=ids + METRIC_COLUMNS + extra)
    metrics[METRIC_COLUMNS] = metrics[METRIC_COLUMNS].astype(float)
    return runs, metrics


def options_of(frame: pd.DataFrame) -> list[str]:
    """The option columns `load_sweep` added to a runs or summary table."""
    known = {*SUMMARY_COLUMNS, *RUN_KEYS, "run_dir", "variant"}
    return [c for c in frame.columns if c not in known]


def test_error_se(error: float, images: float) -> float:
    """The binomial standard error (points) of a test error (%) measured on `images` images: the
    test set's own sampling noise, a floor for the uncertainty of one run's test error."""
    if not (math.isfinite(error) and images and images > 0) or not 0 <= error <= 100:
        return math.nan
    p = error / 100
    return 100 * math.sqrt(p * (1 - p) / images)


def summarize(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run (the summary.csv table), sorted by arch, depth, seed."""
    by_run = dict(list(metrics.groupby("run_dir")))
    no_metrics = metrics.iloc[:0]
    finals = pd.DataFrame(
        [final_errors(by_run.get(name, no_metrics)) for name in runs["run_dir"]],
        index=runs.index,
    )
    # Target iterations from run.json give way to the iterations actually reached.
    summary = pd.concat([runs.drop(columns="iterations"), finals], axis=1)
    ints = ["params", "macs", "iterations", "warmup_end", "train_images", "classes", "test_images"]
    summary = summary.astype(dict.fromkeys(ints, "Int64"))
    summary["final_test_error_se"] = [
        test_error_se(e, n) if pd.notna(n) else math.nan
        for e, n in zip(summary["final_test_error"], summary["test_images"], strict=True)
    ]
    options = options_of(runs)
    columns = ["arch", *options, *SUMMARY_COLUMNS[1:], "variant"]
    return summary[columns].sort_values(["variant", "depth", "seed"], ignore_index=True)


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds of each error column per variant (arch and the options that
    tell runs apart) and depth, and the SE of the final errors' means (`verdict.seed_se`): only
    seeds are averaged. Failed and cut-off runs left out."""
    options = options_of(summary)
    kept = summary[~summary["status"].isin(["failed", CUT_OFF])]
    grouped = kept.groupby(["variant", "depth"], sort=False)
    table = grouped[ERROR_COLUMNS].agg(["mean", "std"])
    table.columns = [f"{col}_{stat}" for col, stat in table.columns]
    for col in ("final_train_error", "final_test_error"):
        table[f"{col}_se"] = [
            judge.seed_se(g[col].dropna(), g.loc[g[col].notna(), f"{col}_se"])
            for _, g in grouped[[col, f"{col}_se"]]
        ]
    for i, col in enumerate(["arch", *options]):
        table.insert(i, col, grouped[col].first())
    table.insert(len(options) + 1, "n", grouped.size())
    table.insert(len(options) + 2, "params", grouped["params"].first())
    table.insert(len(options) + 3, "macs", grouped["macs"].first())
    table["iterations"] = grouped["iterations"].max()
    # A comprehension, not groupby.apply: that returns a frame, not a column, when no run is kept.
    test_sets = grouped[["test_images", "test_md5", "test_official"]]
    table["test_set"] = [test_set_label(runs) for _, runs in test_sets]
    return table.reset_index().sort_values(["variant", "depth"], ignore_index=True)


def test_set_label(runs: pd.DataFrame) -> str:
    """What these runs' test errors were measured on; 'official' only for the official
    10,000-image test_batch, the one the paper's test errors come from."""
    sets = runs.drop_duplicates()
    if len(sets) > 1:
        return "mixed test sets"
    images, md5, official = sets.iloc[0]
    if pd.isna(md5):
        return "unknown (run.json predates test-set records)"
    if bool(official):
        return "official"
    return f"{int(images):,} images, md5 {md5[:8]}… (not official)"


def mixed_options(summary: pd.DataFrame) -> list[str]:
    """The options in which the plain and resnet runs the verdict compares differ, beyond what
    an arch alone has (its arch.* node may differ between the archs, never within one), and
    runs whose options are unknown: the verdict judges the two under one configuration only."""
    compared = summary[(summary["status"] == "done") & judge.judged(summary)]
    mixed = []
    for option in options_of(summary):
        values = compared[option].fillna(UNSET)
        if option.startswith("arch."):
            differs = bool((values.groupby(compared["arch"]).nunique() > 1).any())
        else:
            differs = values.nunique() > 1
        if option == NO_CONFIG and compared[option].notna().any():
            mixed.append(f"{NO_CONFIG} (missing in some: their options are unknown)")
        elif differs:
            mixed.append(option)
    return mixed


def by_depth(summary: pd.DataFrame) -> pd.DataFrame:
    """`aggregate` over the finished runs alone: the means and SEs the verdict judges,
    error_vs_depth draws and by_depth.csv holds. An infinite error (which makes the verdict
    undetermined anyway) is kept out of the means."""
    done = summary[(summary["status"] == "done") & ~np.isinf(summary["final_train_error"])]
    return aggregate(done)


def decide(summary: pd.DataFrame, table: pd.DataFrame | None = None) -> judge.Verdict:
    """The verdict on a sweep's summary, from its finished runs (`table`: their `by_depth`, if
    the caller has it), with the numbers it used (see depthsweep.analysis.verdict)."""
    table = by_depth(summary) if table is None else table
    return judge.decide(summary, table, mixed_options(summary))


def verdict(summary: pd.DataFrame) -> str:
    """The verdict as one paragraph naming the numbers it used."""
    return decide(summary).sentence


def console_table(summary: pd.DataFrame) -> str:
    """The end-of-sweep table for a terminal: one line per run in under 100 columns, errors
    rounded as summary.md rounds them, '—' for what a run does not have (summary.csv has it all)."""
    shown = {
        "variant": "run",
        "depth": "depth",
        "seed": "seed",
        "status": "status",
        "iterations": "iters",
        "final_train_error": "train %",
        "final_test_error": "test %",
        "wall_time_s": "time s",
    }
    table = summary[list(shown)].rename(columns=shown).astype(object)
    for col, fmt in [("train %", "{:.2f}"), ("test %", "{:.2f}"), ("time s", "{:.0f}")]:
        table[col] = [fmt.format(v) if pd.notna(v) else "—" for v in table[col]]
    table["iters"] = [f"{int(v):,}" if pd.notna(v) else "—" for v in table["iters"]]
    # Options by their last name (schedule.optimizer.lr=0.05 -> lr=0.05), so that runs that differ
    # late in a long label stay apart within 40 characters.
    short = [re.sub(r"[\w.]+\.(\w+)=", r"\1=", v) for v in table["run"]]
    table["run"] = [v if len(v) <= 40 else v[:39] + "…" for v in short]
    return table.to_string(index=False)


def _mean_pm(mean: float, spread: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.2f}" if pd.isna(spread) else f"{mean:.2f} ± {spread:.2f}"


def to_markdown(
    summary: pd.DataFrame, table: pd.DataFrame | None = None, judged: judge.Verdict | None = None
) -> str:
    """summary.md: the per-(arch, depth) table (`table`: the summary's `aggregate`, if the caller
    has it), failed and running runs, the verdict (`judged`: `decide`'s, if the caller has it)."""
    table = aggregate(summary) if table is None else table
    options = options_of(summary)
    shown = list(ERROR_COLUMNS)
    if table["test_error_at_best_val_mean"].isna().all():  # no run held out a validation split
        shown.remove("test_error_at_best_val")
    lines = [
        "# Sweep summary",
        "",
        "Errors in %. Final errors: mean ± SE over seeds (the standard error of the mean; with one",
        "seed, the run's own noise: window-to-window for training, binomial for test; the verdict",
        "and error_vs_depth use the same numbers). Best errors: mean over seeds. Failed runs",
        "excluded. Paper: He et al. 2016, Table 6 (resnet test error) and Fig. 6 read-offs at 64k",
        "iterations (plain), shown only beside runs of the paper's 64,000 iterations, and its test",
        "error only beside runs on the official 10,000-image test_batch (MD5",
        f"{OFFICIAL_TEST_MD5}); anything else is not comparable with it.",
        "'best test error' is the minimum over evaluations: chosen on the test set, so optimistic.",
        "",
        "| "
        + " | ".join(["arch", *options, "depth", "n", "params", "MACs"])
        + " | "
        + " | ".join(COLUMN_TITLES[c] for c in shown)
        + " | test set | paper train | paper test |",
        "|---|"
        + "---|" * len(options)
        + "---:|---:|---:|---:|"
        + "---:|" * len(shown)
        + "---|---:|---:|",
    ]
    for row in table.to_dict("records"):
        paper_train, paper_test = PAPER_ERRORS.get((row["arch"], row["depth"]), ("—", "—"))
        full = pd.notna(row["iterations"]) and row["iterations"] == PAPER_ITERATIONS
        if not full and paper_train != "—":
            paper_train = "not comparable"
        if (row["test_set"] != "official" or not full) and paper_test != "—":
            paper_test = "not comparable"
        params = "—" if pd.isna(row["params"]) else f"{row['params']:,}"
        macs = "—" if pd.isna(row["macs"]) else f"{row['macs'] / 1e6:.1f}M"  # per image
        errors = [_mean_pm(row[f"{c}_mean"], row.get(f"{c}_se")) for c in shown]
        opts = ["—" if pd.isna(row[o]) else row[o] for o in options]
        cells = [row["arch"], *opts, row["depth"], row["n"], params, macs, *errors]
        cells += [row["test_set"], paper_train, paper_test]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    warm = summary[summary["warmup_end"].notna()]
    if len(warm):
        lines += ["", "Warm-up (schedule.warmup):", ""]
        lines += [
            f"- {r.run_dir}: ended at iteration {r.warmup_end} ({r.warmup_end_reason})"
            for r in warm.itertuples()
        ]
    failed = summary[summary["status"].isin(["failed", CUT_OFF])]
    if len(failed):
        lines += ["", "Failed runs (left out above):", ""]
        # Collapse whitespace: a multi-line traceback would break the markdown list.
        errors = ["(no message)" if pd.isna(e) else " ".join(str(e).split()) for e in failed.error]
        errors = [
            CUT_OFF if s == CUT_OFF else e for s, e in zip(failed.status, errors, strict=True)
        ]
        lines += [f"- {name}: {e}" for name, e in zip(failed.run_dir, errors, strict=True)]
    running = summary[summary["status"].isin(["running", "interrupted"])]
    if len(running):
        lines += ["", "Still running or interrupted (included above with their current numbers):"]
        lines += [""]
        steps = [
            "nothing logged yet" if pd.isna(i) else f"at iteration {i}" for i in running.iterations
        ]
        lines += [f"- {name}: {s}" for name, s in zip(running.run_dir, steps, strict=True)]
    sentence = (judged or decide(summary)).sentence
    return "\n".join([*lines, "", sentence, ""])
