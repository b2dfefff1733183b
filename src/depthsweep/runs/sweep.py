"""A sweep's runs as one table: each run's identity from its run.json, the options that tell runs
of one arch apart (from their config.yaml), and the variant each run belongs to. The summaries and
the diagnostics group runs by this variant, so that only seeds are ever averaged."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from depthsweep.runs.rundir import (
    CONFIG,
    RUN_JSON,
    find_runs,
    flat_config,
    read_config,
    read_info,
    result_config,
)

# How a run actually trained, from run.json, over the config's "auto" (a GPU run and a CPU run of
# one config differ here).
RESOLVED_KEYS = {"precision": "trainer.precision", "cuda_graph": "cuda_graph"}
RUN_KEYS = [  # read from each run.json
    *["arch", "depth", "seed", "params", "macs", "iterations"],
    *["status", "error", "first_step_s", "warmup_end", "warmup_end_reason"],
    *["train_images", "test_images", "test_md5", "test_official", *RESOLVED_KEYS],
]
# Never options of their own: the tables' rows already are per arch, depth and seed.
IDENTITY_KEYS = {"arch_name", "arch._target_", "depth", "seed"}
# What choosing an arch sets besides the arch node itself (conf/arch/): its warm-up recipe. Plain
# and resnet may differ here and still be one configuration for the verdict.
ARCH_SET_KEYS = {"schedule.warmup.from_depth"}


class NoRunsError(ValueError):
    """The sweep directory is missing or holds no readable run."""


def _read_run(run_dir: Path, sweep_dir: Path) -> dict | None:
    """The run's identity from run.json, or None (with a warning) if it can't be read."""
    try:
        info = read_info(run_dir)
        row = {key: info.get(key) for key in RUN_KEYS}
        missing = [key for key in ("arch", "depth", "seed", "status") if row[key] is None]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except (OSError, ValueError, AttributeError) as exc:
        warnings.warn(f"skipping {run_dir / RUN_JSON}: {exc}", stacklevel=4)
        return None
    return row | {"run_dir": run_dir.relative_to(sweep_dir).as_posix()}


def runs_table(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per readable run of a sweep (or of one run directory): RUN_KEYS, `run_dir`
    (relative to `sweep_dir`), one column per differing option (`differing_options`) and
    `variant`. Runs are found by `rundir.find_runs`, at any depth below the sweep directory."""
    sweep_dir = Path(sweep_dir)
    expected = "expected a sweep directory with one subdirectory per run, each holding run.json"
    if not sweep_dir.is_dir():
        raise NoRunsError(f"{sweep_dir} does not exist; {expected}")
    found = find_runs(sweep_dir)
    subdirs = [] if found == [sweep_dir] else sorted(sweep_dir.iterdir())
    for d in (d for d in subdirs if d.is_dir() and d.name[0] != "."):
        if not any(d == r or d in r.parents for r in found):  # say so, rather than ignore it
            warnings.warn(f"skipping {d / RUN_JSON}: not found, not a run", stacklevel=3)
    rows = [row for run_dir in found if (row := _read_run(run_dir, sweep_dir)) is not None]
    if not rows:
        raise NoRunsError(f"no readable runs in {sweep_dir}; {expected}")
    runs = pd.DataFrame(rows, columns=[*RUN_KEYS, "run_dir"]).astype({"depth": int, "seed": int})
    options = differing_options(sweep_dir, runs)
    runs = pd.concat([runs, options], axis=1)
    runs["variant"] = _variants(runs, list(options.columns))
    return runs


def differing_options(sweep_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """One column per result-changing option whose value differs between runs of one arch (a
    schedule.iterations, an arch.zero_init_residual, a cuda_graph), as the runs' config.yaml
    say, or between runs of different archs outside what the arch itself sets: the summaries
    group by them, so that only seeds are ever averaged, and the verdict sees them."""
    configs = []
    for name in runs["run_dir"]:
        path = sweep_dir / name / CONFIG
        configs.append(
            flat_config(result_config(read_config(sweep_dir / name))) if path.is_file() else {}
        )
    flat = pd.DataFrame(configs, index=runs.index).drop(columns=IDENTITY_KEYS, errors="ignore")
    for key, option in RESOLVED_KEYS.items():
        if runs[key].notna().any():
            flat[option] = runs[key].where(runs[key].notna(), flat.get(option))
    text = flat.astype(str)  # lists and None compare as text
    within = [k for k in flat.columns if (text[k].groupby(runs["arch"]).nunique() > 1).any()]
    across = [
        k
        for k in flat.columns
        if text[k].nunique() > 1 and not k.startswith("arch.") and k not in ARCH_SET_KEYS
    ]
    differing = [k for k in flat.columns if k in within or k in across]
    return flat[differing].astype(str).where(flat[differing].notna())


def _variants(runs: pd.DataFrame, options: list[str]) -> pd.Series:
    """The arch, with the options that tell its runs apart, e.g. 'resnet (cuda_graph=true)'."""

    def label(row: pd.Series) -> str:
        set_ = [f"{k}={row[k]}" for k in options if pd.notna(row[k])]
        return f"{row['arch']} ({', '.join(set_)})" if set_ else row["arch"]

    return runs.apply(label, axis=1) if len(runs) else pd.Series(dtype=str)
