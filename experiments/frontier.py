"""The configurations tried for a CPU Figure 6, side by side, from their sweep directories:
`python -m experiments.frontier SWEEP_DIR... [--out FILE]`.

One row per sweep: its knobs (arch.width, data.resolution, data.limit, schedule.iterations,
data.batch_size, fuse, the peak lr as trained (metrics.csv: with schedule.lr_scales_with_batch it
follows the batch), trainer.precision as trained, each arch's schedule.warmup.from_depth, from its
runs' config.yaml, metrics.csv and run.json), its seeds and depths, what its nets and training cost
(params and multiply-adds per image by depth, from `torch.utils.flop_counter` via summary.csv, and
the forward multiply-adds of all its training steps: each run's per-image count x batch x
iterations, summed; a backward pass costs about twice its forward), its minutes (from the sweep's
`time.txt`, the wall time of its command), each arch's final training error by depth (mean over
seeds), each part of the claim (plain rises, resnet falls, resnet below plain) as the verdict
decides it, and the verdict: all from the verdict of `experiments.analyze` on the sweep's files.
A part's cell is its state, then the comparisons that decide it (each a difference of mean final
training errors in points, the claim's side positive, its 95% interval and one-sided p: a part is
supported when every one is; a depth out of order, after "but", stops it), then,
for a trend, the exponent k of error ∝ depth^k with its interval, an effect size that decides
nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from depthsweep.analysis.summaries import by_depth, decide, load_sweep, summarize
from depthsweep.analysis.verdict import Comparison, Part, unplaced
from depthsweep.files import atomic_write_text
from depthsweep.runs.rundir import read_config
from depthsweep.runs.sweep import NoRunsError
from experiments.exits import interruptible

# column: (option, its value where a run's config predates it)
KNOBS = {
    "width": ("arch.width", 16),
    "size": ("data.resolution", 32),
    "images": ("data.limit", None),
    "iterations": ("schedule.iterations", None),
    "batch": ("data.batch_size", None),
    "fuse": ("fuse", 1),  # runs trained as one network: run.json's fused_with, with itself
}


def minutes(sweep: Path) -> str:
    """The wall time of the sweep's command, from its time.txt (`time`'s output), in minutes."""
    path = sweep / "time.txt"
    found = re.search(r"real\s+(\d+)m([\d.]+)s", path.read_text()) if path.is_file() else None
    return f"{int(found[1]) + float(found[2]) / 60:.1f}" if found else "—"


def peak_lr(metrics: pd.DataFrame, run_dir: str) -> str:
    """The highest lr a run trained at (`load_sweep`'s metrics rows of `run_dir`), "—" where
    none is logged."""
    lr = metrics.loc[metrics["run_dir"] == run_dir, "lr"]
    return f"{lr.max():g}" if lr.notna().any() else "—"


def costs(summary: pd.DataFrame, batch: object) -> list[str]:
    """Params (thousands) and multiply-adds per image (millions) by depth, and the forward
    multiply-adds of every run's training steps, summed (10^12; "—" without a batch size)."""
    per_depth = summary.groupby("depth")[["params", "macs"]].first().sort_index()
    params = " / ".join(f"{p / 1e3:.1f}" for p in per_depth["params"])
    macs = " / ".join(f"{m / 1e6:.1f}" for m in per_depth["macs"])
    if not isinstance(batch, int):
        return [params, macs, "—"]
    total = (summary["macs"] * summary["iterations"]).sum() * batch
    return [params, macs, f"{total / 1e12:.1f}"]


def _named(test: Comparison) -> str:
    """A comparison's name: its depths (56−20) within an arch, its runs across archs."""
    higher, lower = test.higher.rpartition("-"), test.lower.rpartition("-")
    same_arch = higher[0] == lower[0]
    return f"{higher[2]}−{lower[2]}" if same_arch else f"{test.higher} − {test.lower}"


def _interval(test: Comparison) -> str:
    return f"{test.difference:+.1f} [{test.low:+.1f}, {test.high:+.1f}]"


def decided(part: Part) -> str:
    """A part of the verdict as a cell: its state, its comparisons (or why it has none), and a
    trend's k."""
    shown = []
    for test in part.tests:
        if test.state == "untested":  # why
            shown.append(f"{_named(test)} ({test.reason or test.state})")
        else:
            shown.append(f"{_named(test)} {_interval(test)} p {test.p:.2g}")
    for check in part.checks:  # a depth out of order, or not placed: what stopped support
        if check.state == "out of order":
            shown.append(f"but {_named(check)} {_interval(check)} p against {check.p_against:.2g}")
        elif unplaced(check):
            shown.append(f"but {_named(check)} unchecked ({check.reason})")
    if part.name != "resnet below plain" and not math.isnan(part.estimate):
        ci = "" if math.isnan(part.low) else f" [{part.low:+.2f}, {part.high:+.2f}]"
        shown.append(f"k {part.estimate:+.2f}{ci}")
    if not shown and part.reason:  # a part with no comparison (too few depths): why
        said = part.reason.partition(" is not tested: ")  # a trend's: what it needs
        shown.append(said[2] or part.reason)
    return f"{part.state}: {'; '.join(shown)}" if shown else part.state


def warmup_depth(sweep: Path, summary: pd.DataFrame, arch: str) -> str:
    """`arch`'s schedule.warmup.from_depth from its first run's config ("—": none, or no runs):
    each arch's own, as an experiment may set plain's too (figure6_cpu does)."""
    runs = summary.loc[summary["arch"] == arch, "run_dir"]
    if not len(runs):
        return "—"
    depth = OmegaConf.select(read_config(sweep / runs.iloc[0]), "schedule.warmup.from_depth")
    return "—" if depth is None else str(depth)


def row(sweep: Path) -> list[str]:
    """One sweep as the table's cells."""
    runs, metrics = load_sweep(sweep)
    summary = summarize(runs, metrics)
    table = by_depth(summary)
    verdict = decide(summary, table)
    first_run = summary["run_dir"].iloc[0]
    first = sweep / first_run
    cfg = read_config(first)
    knobs = {col: OmegaConf.select(cfg, key, default=old) for col, (key, old) in KNOBS.items()}
    info = json.loads((first / "run.json").read_text())
    precision = info.get("precision", "?")
    knobs["fuse"] = len(info.get("fused_with") or []) + 1  # as trained: K-where-avx512 resolved
    warmup = " / ".join(warmup_depth(sweep, summary, arch) for arch in ("plain", "resnet"))
    seeds = summary.groupby(["arch", "depth"])["seed"].nunique().min()
    cells = []
    for arch in ("plain", "resnet"):
        rows = table[table["arch"] == arch].sort_values("depth")
        cells.append(" / ".join(f"{r.final_train_error_mean:.1f}" for r in rows.itertuples()))
    parts = [decided(part) for part in verdict.parts]
    parts += ["—"] * (3 - len(parts))  # an undetermined verdict judges no part
    depths = "/".join(str(d) for d in sorted(summary["depth"].unique()))
    return [sweep.name, *map(str, knobs.values()), peak_lr(metrics, first_run), precision, warmup,
            str(seeds), depths,
            *costs(summary, knobs["batch"]), minutes(sweep), *cells, *parts,
            verdict.outcome]  # fmt: skip


HEADER = [
    "sweep", *KNOBS, "peak lr", "precision", "warm-up from depth (plain / resnet)",
    "seeds", "depths",
    "params by depth (k)", "MACs per image by depth (M)", "training MACs, forward (10^12)",
    "minutes",
    "plain train error by depth", "resnet train error by depth", "plain rises", "resnet falls",
    "resnet below plain", "verdict",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print the table (and write it to --out); exit status 2 when a directory holds no runs or
    --out cannot be written (one line, nothing written)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", type=Path)
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    try:
        lines += ["| " + " | ".join(row(s)) + " |" for s in args.sweeps]
    except NoRunsError as e:  # a missing or empty directory, as experiments.analyze says it
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = "\n".join(lines) + "\n"
    if args.out:
        try:
            atomic_write_text(args.out, text)  # a full disk leaves the old table, not half
        except OSError as e:  # a missing folder, a read-only one, a full disk
            print(f"error: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(interruptible(main))
