"""The configurations tried for a CPU Figure 6, side by side, from their sweep directories:
`python -m experiments.frontier SWEEP_DIR... [--out FILE]`.

One row per sweep: its knobs (arch.width, data.resolution, data.limit, schedule.iterations,
data.batch_size, fuse, trainer.precision as trained, resnet's schedule.warmup.from_depth, from its
runs' config.yaml and run.json), its seeds and depths, its minutes (from the sweep's `time.txt`, the
wall time of its command), each arch's final training error by depth (mean over seeds), each
trend's state and effect size with its interval, and the verdict: all from the verdict of
`experiments.analyze` on the sweep's files.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf

from depthsweep.analysis.summaries import by_depth, decide, load_sweep, summarize
from depthsweep.runs.rundir import read_config

# column: (option, its value where a run's config predates it)
KNOBS = {
    "width": ("arch.width", 16),
    "size": ("data.resolution", 32),
    "images": ("data.limit", None),
    "iterations": ("schedule.iterations", None),
    "batch": ("data.batch_size", None),
    "fuse": ("fuse", 1),  # runs trained as one network (fuse=K), 1 before it existed
}


def minutes(sweep: Path) -> str:
    """The wall time of the sweep's command, from its time.txt (`time`'s output), in minutes."""
    path = sweep / "time.txt"
    found = re.search(r"real\s+(\d+)m([\d.]+)s", path.read_text()) if path.is_file() else None
    return f"{int(found[1]) + float(found[2]) / 60:.1f}" if found else "—"


def row(sweep: Path) -> list[str]:
    """One sweep as the table's cells."""
    summary = summarize(*load_sweep(sweep))
    table = by_depth(summary)
    verdict = decide(summary, table)
    first = sweep / summary["run_dir"].iloc[0]
    cfg = read_config(first)
    knobs = [str(OmegaConf.select(cfg, key, default=old)) for key, old in KNOBS.values()]
    precision = json.loads((first / "run.json").read_text()).get("precision", "?")
    resnet = summary.loc[summary["arch"] == "resnet", "run_dir"]
    warmup = (
        str(OmegaConf.select(read_config(sweep / resnet.iloc[0]), "schedule.warmup.from_depth"))
        if len(resnet)
        else "—"
    )
    seeds = summary.groupby(["arch", "depth"])["seed"].nunique().min()
    cells = []
    for arch in ("plain", "resnet"):
        rows = table[table["arch"] == arch].sort_values("depth")
        cells.append(" / ".join(f"{r.final_train_error_mean:.1f}" for r in rows.itertuples()))
    parts = []
    for part in verdict.parts[:2]:  # each trend: its state, and k with its interval if known
        k = "" if math.isnan(part.estimate) else f", k {part.estimate:+.2f}"
        ci = "" if math.isnan(part.low) else f" [{part.low:+.2f}, {part.high:+.2f}]"
        parts.append(f"{part.state}{k}{ci}")
    parts += ["—"] * (2 - len(parts))  # an undetermined verdict judges no trend
    depths = "/".join(str(d) for d in sorted(summary["depth"].unique()))
    return [sweep.name, *knobs, precision, warmup, str(seeds), depths, minutes(sweep), *cells,
            *parts, verdict.outcome]  # fmt: skip


HEADER = [
    "sweep", *KNOBS, "precision", "resnet warm-up from depth", "seeds", "depths", "minutes",
    "plain train error by depth", "resnet train error by depth", "plain rises", "resnet falls",
    "verdict",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweeps", nargs="+", type=Path)
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row(s)) + " |" for s in args.sweeps]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
