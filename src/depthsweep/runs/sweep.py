"""A sweep's runs as one table: each run's identity from its run.json, the options that tell runs
of one arch apart (from their config.yaml), and the variant each run belongs to. The summaries and
the diagnostics group runs by this variant, so that only seeds are ever averaged."""

from __future__ import annotations

import os
import warnings
from functools import cache
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from depthsweep import CONF_DIR
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
# one config differ here): run.json key -> config key.
RESOLVED_KEYS = {"precision": "trainer.precision", "cuda_graph": "cuda_graph"}
RUN_KEYS = [  # read from each run.json, columns of the runs table
    *["arch", "depth", "seed", "params", "macs", "iterations"],
    *["status", "error", "first_step_s", "warmup_end", "warmup_end_reason"],
    *["train_images", "classes", "test_images", "test_md5", "test_official"],
]
# Never options of their own: the tables' rows already are per arch, depth and seed.
IDENTITY_KEYS = {"arch_name", "arch._target_", "depth", "seed"}
# What choosing an arch sets besides the arch node itself (conf/arch/): its warm-up recipe. Plain
# and resnet may differ here and still be one configuration for the verdict, as long as each
# run has what its arch's file sets.
ARCH_SET_KEYS = {"schedule.warmup.from_depth"}
# The option column of runs that have no config.yaml (made by hand, or by an old version): their
# options are unknown, so they are a variant of their own, and the verdict compares them with
# nothing.
NO_CONFIG = "config.yaml"
UNSET = "<unset>"  # a key a run's config does not have (plain has no arch.shortcut)


@cache  # read once per arch and key, not once per run
def arch_sets(arch: str, key: str) -> str | None:
    """What conf/arch/<arch>.yaml sets `key` to, as a run's config.yaml value reads as text; None
    for an arch this checkout has no file for (not plain or resnet: the verdict never compares
    it, so its runs are taken at their word)."""
    path = CONF_DIR / "arch" / f"{arch}.yaml"
    return str(OmegaConf.select(OmegaConf.load(path), key)) if path.is_file() else None


MULTIRUN_YAML = "multirun.yaml"  # Hydra's record of a sweep, in its directory


class NoRunsError(ValueError):
    """The sweep directory is missing or holds no readable run."""


def check_one_sweep(path: Path, runs: list[Path]) -> None:
    """`runs` (found below `path`) are one sweep's: a NoRunsError where `path` is no sweep
    directory (no multirun.yaml) but its runs lie in sweep directories below it (multirun/, a
    home directory): their runs would be pooled into one summary, written into `path`."""
    if (path / MULTIRUN_YAML).is_file():
        return
    below = {s for r in runs for s in r.parents if path in s.parents}  # not path's own parents
    sweeps = sorted(s for s in below if (s / MULTIRUN_YAML).is_file())
    if sweeps:
        shown = ", ".join(str(s) for s in sweeps[:5]) + (", ..." if len(sweeps) > 5 else "")
        raise NoRunsError(
            f"{path} is no sweep directory, but holds {len(sweeps)} below it ({shown}): name "
            f"one, e.g. python -m experiments.analyze {sweeps[0]}"
        )


def _read_run(run_dir: Path, sweep_dir: Path) -> dict | None:
    """The run's identity from run.json, or None (with a warning) if it can't be read."""
    try:
        info = read_info(run_dir)
        row = {key: info.get(key) for key in [*RUN_KEYS, *RESOLVED_KEYS]}
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
    check_one_sweep(sweep_dir, found)
    subdirs = [] if found == [sweep_dir] else sorted(sweep_dir.iterdir())
    for d in (d for d in subdirs if d.is_dir() and d.name[0] != "."):
        if not any(d == r or d in r.parents for r in found):  # say so, rather than ignore it
            warnings.warn(f"skipping {d / RUN_JSON}: not found, not a run", stacklevel=3)
    rows = [row for run_dir in found if (row := _read_run(run_dir, sweep_dir)) is not None]
    if not rows:
        raise NoRunsError(f"no readable runs in {sweep_dir}; {expected}")
    runs = pd.DataFrame(rows, columns=[*RUN_KEYS, *RESOLVED_KEYS, "run_dir"])
    runs = runs.astype({"depth": int, "seed": int})
    options = differing_options(sweep_dir, runs)
    runs = runs.drop(columns=list(RESOLVED_KEYS))  # folded into the options they resolve
    runs = pd.concat([runs, options], axis=1)
    runs["variant"] = _variants(runs, list(options.columns))
    return runs


def differing_options(sweep_dir: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """One column per result-changing option whose value differs between runs of one arch (a
    schedule.iterations, an arch.zero_init_residual, a cuda_graph), as the runs' config.yaml
    say, or between runs of different archs outside the arch node (and outside ARCH_SET_KEYS
    while every run has what its arch's file sets there): the summaries group by them, so that
    only seeds are ever averaged, and the verdict sees them. Values as text, NaN where a run's
    config lacks the key; a NO_CONFIG column ("missing") where some runs have no config.yaml."""
    configs: list[dict | None] = []
    for name in runs["run_dir"]:
        recorded = (sweep_dir / name / CONFIG).is_file()
        configs.append(
            flat_config(result_config(read_config(sweep_dir / name))) if recorded else None
        )
    keys = [k for c in configs if c for k in c if k not in IDENTITY_KEYS]
    # Compared as text, built from the dicts: a DataFrame of them would turn None into NaN (and
    # ints into floats beside it), and astype(str) writes NaN as 'nan' in pandas 2 but keeps it
    # in pandas 3. A run without config.yaml takes part in no comparison (None).
    text = pd.DataFrame(
        {k: [None if c is None else str(c[k]) if k in c else UNSET for c in configs] for k in keys},
        index=runs.index,
        dtype=object,
    )
    for key, option in RESOLVED_KEYS.items():
        resolved = [None if pd.isna(v) else str(v) for v in runs[key]]
        text[option] = [
            r if r is not None else t
            for r, t in zip(resolved, text.get(option, resolved), strict=True)
        ]
    arch_default = all(
        text.at[i, k] is None or arch_sets(arch, k) in (None, text.at[i, k])
        for k in ARCH_SET_KEYS & set(text.columns)
        for i, arch in runs["arch"].items()
    )
    exempt = ARCH_SET_KEYS if arch_default else set()
    within = [k for k in text.columns if (text[k].groupby(runs["arch"]).nunique() > 1).any()]
    across = [
        k
        for k in text.columns
        if text[k].nunique() > 1 and not k.startswith("arch.") and k not in exempt
    ]
    options = text[[k for k in text.columns if k in within or k in across]]
    options = options.where(options.notna() & (options != UNSET))
    if any(c is None for c in configs):
        options[NO_CONFIG] = ["missing" if c is None else None for c in configs]
    return options


def _variants(runs: pd.DataFrame, options: list[str]) -> pd.Series:
    """The arch, with the options that tell its runs apart, e.g. 'resnet (cuda_graph=true)'."""

    def label(row: pd.Series) -> str:
        set_ = [f"{k}={row[k]}" for k in options if pd.notna(row[k])]
        return f"{row['arch']} ({', '.join(set_)})" if set_ else row["arch"]

    return runs.apply(label, axis=1) if len(runs) else pd.Series(dtype=str)
