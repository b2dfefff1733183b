"""A sweep's runs as tables: one row per run, seed means per (arch, depth), the verdict, and the
summary.md text. `report.analyze` writes them and the figures into the sweep directory."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from depthsweep.runs.metrics import (
    ERROR_COLUMNS,
    METRIC_COLUMNS,
    final_errors,
    metrics_cut_off,
    read_metrics,
)
from depthsweep.runs.sweep import RUN_KEYS, runs_table
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

SUMMARY_COLUMNS = [
    *["arch", "depth", "seed", "params", "iterations", "status", *ERROR_COLUMNS],
    *["macs", "wall_time_s", "first_step_s", "run_dir", "error"],
    *["test_images", "test_md5", "test_official", "warmup_end", "warmup_end_reason"],
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
        frame = read_metrics(run_dir, METRIC_COLUMNS)
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
    ints = ["params", "macs", "iterations", "warmup_end", "test_images"]
    summary = summary.astype(dict.fromkeys(ints, "Int64"))
    options = options_of(runs)
    columns = ["arch", *options, *SUMMARY_COLUMNS[1:], "variant"]
    return summary[columns].sort_values(["variant", "depth", "seed"], ignore_index=True)


def aggregate(summary: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of each error column per variant (arch and the options that tell
    runs apart) and depth: only seeds are averaged. Failed and cut-off runs left out."""
    options = options_of(summary)
    kept = summary[~summary["status"].isin(["failed", CUT_OFF])]
    grouped = kept.groupby(["variant", "depth"], sort=False)
    table = grouped[ERROR_COLUMNS].agg(["mean", "std"])
    table.columns = [f"{col}_{stat}" for col, stat in table.columns]
    for i, col in enumerate(["arch", *options]):
        table.insert(i, col, grouped[col].first())
    table.insert(len(options) + 1, "n", grouped.size())
    table.insert(len(options) + 2, "params", grouped["params"].first())
    table.insert(len(options) + 3, "macs", grouped["macs"].first())
    table["test_set"] = grouped[["test_images", "test_md5", "test_official"]].apply(test_set_label)
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


# The paper's claim (Fig. 6) is about depths 20 to 110; depth 8 is a smoke-test size, no evidence.
MIN_DEPTH = 20
# Differences within the tolerance δ (percentage points) count as no difference: δ is the larger
# of MIN_TOLERANCE, a floor for single-seed sweeps, and STD_FACTOR times the largest seed std.
MIN_TOLERANCE = 0.3
STD_FACTOR = 2


def _largest_rise(errors: pd.Series) -> tuple[int, int, float]:
    """(shallower depth, deeper depth, rise) of the largest rise between any two depths."""
    rises = errors - errors.cummin()
    deep = rises.idxmax()
    return errors.loc[:deep].idxmin(), deep, rises[deep]


# Each condition gives ("pass" | "fail" | "tie", the reason in words).
def _plain_degrades(plain: pd.Series, delta: float) -> tuple[str, str]:
    shallow, deep, fall = _largest_rise(-plain)
    if fall > delta:
        return (
            "fail",
            f"plain's train error falls by {fall:.2f} points from depth {shallow} to {deep}",
        )
    # The rise must reach each of the two deepest depths (the deepest, if only two): one
    # collapsed run at the deepest depth must not carry the verdict alone.
    first, rises = plain.index[0], plain.iloc[1:].iloc[-2:] - plain.iloc[0]
    if rises.min() > delta:
        deepest = " and ".join(map(str, rises.index))
        return "pass", f"plain's train error rises by more than δ from depth {first} to {deepest}"
    worst = rises.idxmin()
    return (
        "tie",
        f"plain's train error changes by only {rises[worst]:+.2f} points "
        f"from depth {first} to {worst}",
    )


def _resnet_does_not_degrade(resnet: pd.Series, delta: float) -> tuple[str, str]:
    shallow, deep, rise = _largest_rise(resnet)
    if rise > delta:
        return (
            "fail",
            f"resnet's train error rises by {rise:.2f} points from depth {shallow} to {deep}",
        )
    return "pass", "resnet's rises by no more than δ between any two depths"


def _resnet_below_plain(plain: pd.Series, resnet: pd.Series, delta: float) -> tuple[str, str]:
    """Judged at the deepest depth both have: the paper's claim is about deep nets; at 20 layers
    plain and residual nets train about equally well (and a short run's noise is larger)."""
    gap = (plain - resnet).dropna()  # at the depths both have
    if gap.empty:
        return "tie", "plain and resnet share no depth to compare"
    deepest = gap.index[-1]
    if gap[deepest] < -delta:
        return (
            "fail",
            f"resnet's train error is {-gap[deepest]:.2f} points above plain's at depth {deepest}",
        )
    if gap[deepest] > delta:
        return "pass", f"resnet's is {gap[deepest]:.2f} points below plain's at depth {deepest}"
    return "tie", f"resnet's is only {gap[deepest]:+.2f} points below plain's at depth {deepest}"


def _by_depth(errors: pd.Series) -> str:
    return ", ".join(f"{depth}: {error:.2f}%" for depth, error in errors.items())


def decide(summary: pd.DataFrame) -> tuple[str, str]:
    """(outcome, sentence) of `verdict`; outcome is "reproduced", "not reproduced",
    "inconclusive" or "undetermined"."""
    used = summary[(summary["status"] == "done") & (summary["depth"] >= MIN_DEPTH)]
    used = used.dropna(subset=["final_train_error"])
    compared = used[used["arch"].isin(["plain", "resnet"])]
    mixed = [o for o in options_of(summary) if compared[o].astype(str).nunique() > 1]
    if mixed:
        return "undetermined", (
            f"Verdict undetermined: the plain and resnet runs differ in {', '.join(mixed)}; "
            "the verdict compares the two under one configuration (analyse each apart)."
        )
    stats = {
        arch: used[used["arch"] == arch].groupby("depth")["final_train_error"].agg(["mean", "std"])
        for arch in ("plain", "resnet")
    }
    plain, resnet = stats["plain"]["mean"], stats["resnet"]["mean"]
    if min(len(plain), len(resnet)) < 2:
        have = [f"{arch} at {', '.join(map(str, s.index)) or 'none'}" for arch, s in stats.items()]
        return "undetermined", (
            f"Verdict undetermined: need plain and resnet at ≥2 depths ≥ {MIN_DEPTH} each, "
            f"with finished runs; have {' and '.join(have)}."
        )
    largest_std = max(s["std"].fillna(0).max() for s in stats.values())  # one seed: std NaN
    delta = max(MIN_TOLERANCE, STD_FACTOR * largest_std)
    checks = [
        _plain_degrades(plain, delta),
        _resnet_does_not_degrade(resnet, delta),
        _resnet_below_plain(plain, resnet, delta),
    ]
    # Any fail decides; else any tie; else all passed. Name the conditions that decided.
    states = {state for state, _ in checks}
    state = "fail" if "fail" in states else "tie" if "tie" in states else "pass"
    outcome, head = {
        "fail": ("not reproduced", "NOT reproduced"),
        "tie": ("inconclusive", "Inconclusive"),
        "pass": ("reproduced", "Degradation reproduced"),
    }[state]
    reasons = "; ".join(reason for s, reason in checks if s == state)
    return outcome, (
        f"{head}: {reasons}. Final train error (%, seed mean, finished runs "
        f"at depth ≥ {MIN_DEPTH}): plain {_by_depth(plain)}; resnet {_by_depth(resnet)}; "
        f"tolerance δ = {delta:.2f} points (the larger of {MIN_TOLERANCE} and {STD_FACTOR} × "
        f"the largest seed std, {largest_std:.2f})."
    )


def verdict(summary: pd.DataFrame) -> str:
    """Does plain's training error rise with depth while resnet's does not, and is resnet's
    below plain's? One paragraph naming the numbers it used; see `decide` for the outcome."""
    return decide(summary)[1]


def _mean_std(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def to_markdown(summary: pd.DataFrame) -> str:
    """summary.md: the per-(arch, depth) table, failed and running runs, the verdict."""
    table = aggregate(summary)
    options = options_of(summary)
    shown = list(ERROR_COLUMNS)
    if table["test_error_at_best_val_mean"].isna().all():  # no run held out a validation split
        shown.remove("test_error_at_best_val")
    lines = [
        "# Sweep summary",
        "",
        "Errors in %, mean ± std over seeds, failed runs excluded. Paper: He et al. 2016,",
        "Table 6 (resnet test error) and Fig. 6 read-offs at 64k iterations (plain). The paper's",
        "test error is shown only beside runs on the official 10,000-image test_batch (MD5",
        f"{OFFICIAL_TEST_MD5}); any other test set's errors are not comparable with it.",
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
        if row["test_set"] != "official" and paper_test != "—":
            paper_test = "not comparable"
        params = "—" if pd.isna(row["params"]) else f"{row['params']:,}"
        macs = "—" if pd.isna(row["macs"]) else f"{row['macs'] / 1e6:.1f}M"  # per image
        errors = [_mean_std(row[f"{c}_mean"], row[f"{c}_std"]) for c in shown]
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
    return "\n".join([*lines, "", verdict(summary), ""])
