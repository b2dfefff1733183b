"""Figures of a sweep: He et al. 2016, Fig. 6 (error vs iterations) and error vs depth.

Figures are built from `matplotlib.figure.Figure`, not pyplot: no GUI backend or global figure
registry is involved, so this runs headless and a dropped figure is simply garbage-collected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from depthsweep.analysis.summaries import aggregate, by_depth
from depthsweep.files import atomic_write

STYLES = {"train": "--", "test": "-"}  # the paper's convention: dashed train, solid test


def arch_order(variants: Iterable[str]) -> list[str]:
    """plain and resnet first (the paper's comparison), then other archs; a variant ('resnet
    (cuda_graph=true)') sorts with its arch."""
    first = {"plain": 0, "resnet": 1}
    return sorted(set(variants), key=lambda v: (first.get(v.split(" ")[0], 2), v))


def describe(summary: pd.DataFrame, table: pd.DataFrame | None = None) -> str:
    """What a sweep's runs trained on and for how long, and which test set: a figure's subtitle
    (`table`: the summary's `aggregate`, if the caller has it)."""

    def span(values: pd.Series, unit: str) -> str:
        values = sorted({int(v) for v in values.dropna()})
        if not values:  # not recorded (run.json predates the record)
            return ""
        low, high = values[0], values[-1]
        return f"{low:,} {unit}" if low == high else f"{low:,}–{high:,} {unit}"

    sets = sorted(set((aggregate(summary) if table is None else table)["test_set"]))
    test = sets[0] if len(sets) == 1 else "mixed test sets"
    trained = " on ".join(
        s
        for s in (
            span(summary["iterations"], "iterations"),
            span(summary["train_images"], "images"),
        )
        if s
    )
    return f"{trained}; test set: {test}" if trained else f"test set: {test}"


def figure6(
    metrics: pd.DataFrame, ylim: tuple[float, float] | None = None, subtitle: str | None = None
) -> Figure:
    """One panel per variant (arch and the options that tell runs apart): train (dashed) and test
    (solid) error vs iterations, seed-averaged.
    `ylim` None: from 0 to just above the highest curve (the paper's Fig. 6 uses 0-20).
    `subtitle`: what the runs are (`describe`)."""
    archs = arch_order(metrics["variant"].dropna().unique())
    # One colour per depth across all panels, so plain-56 and resnet-56 match.
    colours = {d: f"C{i % 10}" for i, d in enumerate(sorted(metrics["depth"].dropna().unique()))}
    fig = Figure(figsize=(5 * max(len(archs), 1), 4), layout="constrained")
    axes = fig.subplots(1, max(len(archs), 1), sharey=True, squeeze=False)[0]
    for ax, arch in zip(axes, archs, strict=False):
        of_arch = metrics[metrics["variant"] == arch]
        for depth, rows in of_arch.groupby("depth"):
            for kind, style in STYLES.items():
                curve = rows.groupby("step")[f"{kind}_error"].mean().dropna()
                ax.plot(curve.index, curve.to_numpy(), ls=style, color=colours[depth])
        depths = sorted(of_arch["depth"].unique())
        name = of_arch["arch"].iloc[0]  # the panel's title names the options, if any
        handles = [Line2D([], [], color=colours[d], label=f"{name}-{d}") for d in depths]
        handles += [Line2D([], [], color="grey", ls=s, label=k) for k, s in STYLES.items()]
        ax.legend(handles=handles, fontsize="small")
        ax.set(title=arch, xlabel="iterations")
    axes[0].set(ylabel="error (%)")
    axes[0].set_ylim(*(ylim or (0, None)))
    title = "Training (dashed) and test (solid) error vs iterations, as He et al. 2016, Fig. 6"
    fig.suptitle(f"{title}\n{subtitle}" if subtitle else title, fontsize="medium")
    return fig


def error_vs_depth(
    summary: pd.DataFrame, table: pd.DataFrame | None = None, subtitle: str | None = None
) -> Figure:
    """Final train (dashed) and test (solid) error vs depth per variant, finished runs; bars: ±
    the SE of each mean (`summaries.by_depth`, the numbers the verdict uses; `table`, if the
    caller has it). `subtitle`: what the runs are (`describe`)."""
    table = by_depth(summary) if table is None else table
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for i, arch in enumerate(arch_order(table["variant"].unique())):
        rows = table[table["variant"] == arch]
        for kind, style in STYLES.items():
            col = f"final_{kind}_error"
            ax.errorbar(
                rows["depth"],
                rows[f"{col}_mean"],
                yerr=rows[f"{col}_se"],
                ls=style,
                color=f"C{i % 10}",
                marker="o",
                capsize=3,
                label=f"{arch} {kind}",
            )
    ax.set(
        xlabel="depth (layers)", ylabel="final error (%)", xticks=sorted(table["depth"].unique())
    )
    ax.set_ylim(bottom=0)
    if len(table):
        ax.legend()
    title = "Final error vs depth, ± its standard error"
    sub = subtitle if subtitle is not None else describe(summary) if len(summary) else ""
    ax.set_title(f"{title}\n{sub}" if sub else title, fontsize="small")
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> list[Path]:
    """Write `path` as .png and .svg (any suffix of `path` is replaced), atomically: every figure
    of the package, this module's and diagnostic_plots', goes through here."""
    paths = [Path(path).with_suffix(".png"), Path(path).with_suffix(".svg")]
    # A fixed hash salt and no timestamps make a rerun write byte-identical files.
    with matplotlib.rc_context({"svg.hashsalt": "depthsweep"}):
        for target, metadata in zip(paths, ({"Software": None}, {"Date": None}), strict=True):
            fmt = target.suffix[1:]
            atomic_write(
                target,
                lambda tmp, fmt=fmt, md=metadata: fig.savefig(tmp, format=fmt, metadata=md),
            )
    return paths
