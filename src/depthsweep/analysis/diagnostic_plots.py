"""Figures of the diagnostics in `depthsweep.analysis.diagnostics`, from their long tables.

Every table has the run's `variant` (the group the summaries put it in: the arch, with the options
that tell its runs apart), `depth` and `seed`; seeds are averaged. Colours follow depth, the same
in every panel of a figure. Built on `matplotlib.figure.Figure` with the Agg canvas: headless, no
pyplot figure registry.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from depthsweep.analysis.plots import arch_order

LINESTYLES = ("--", "-", ":", "-.")  # per variant where variants share a panel; plain dashed


def _colours(df: pd.DataFrame) -> dict[int, str]:
    return {d: f"C{i % 10}" for i, d in enumerate(sorted(df["depth"].unique()))}


def _panels(n: int, rows: int = 1, width: float = 5, height: float = 3.8) -> np.ndarray:
    fig = Figure(figsize=(width * n, height * rows), layout="constrained")
    return fig.subplots(rows, n, squeeze=False)  # Axes, shape (rows, n)


def _at_step(grads: pd.DataFrame, which: str | int) -> pd.DataFrame:
    """Each run's rows at its first or last logged step, or at the logged step nearest `which`."""
    per_run = grads.groupby("run")["step"]
    if which == "first":
        target = per_run.transform("min")
    elif which == "last":
        target = per_run.transform("max")
    else:
        dist = (grads["step"] - int(which)).abs()
        nearest = grads["step"].where(dist == dist.groupby(grads["run"]).transform("min"))
        target = nearest.groupby(grads["run"]).transform("min")  # a tie: the earlier step
    return grads[grads["step"] == target]


def grad_flow(grads: pd.DataFrame, steps: Sequence[str | int] = ("first", "last")) -> Figure:
    """Gradient norm vs conv layer index (forward order): a row per chosen iteration ('first' is
    the gradient at initialisation), a panel per variant, a line per depth."""
    variants, colours = arch_order(grads["variant"].unique()), _colours(grads)
    axes = _panels(len(variants), rows=len(steps))
    for row, which in zip(axes, steps, strict=True):
        at = _at_step(grads, which)
        for ax, variant in zip(row, variants, strict=True):
            for depth, rows in at[at["variant"] == variant].groupby("depth"):
                curve = rows.groupby("layer")["grad_norm"].mean()
                step = int(rows["step"].max())
                label = f"{variant}-{depth} (iter {step})"
                ax.plot(curve.index, curve.to_numpy(), color=colours[depth], label=label)
                # A log axis drops zeros, yet an exactly-zero gradient (a zero-initialised
                # branch at iteration 1) is the finding: mark it on the bottom edge.
                zeros = curve.index[curve.to_numpy() == 0]
                bottom = ax.get_xaxis_transform()  # x in data, y in axes fraction
                ax.plot(zeros, [0.02] * len(zeros), "v", color=colours[depth], transform=bottom)
            title = {"first": "at initialisation", "last": "last logged"}.get(
                which, f"iteration ≈{which}"
            )
            ax.set(title=f"{variant}, {title}", yscale="log", xlabel="conv layer (input → output)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize="small")
        row[0].set_ylabel("‖∂loss/∂W‖₂  (▼: exactly 0)")
    return axes[0][0].figure


def layer_responses(resp: pd.DataFrame) -> Figure:
    """Std of the 3x3 layers' responses (He et al. 2016, Fig. 7): by layer index, and sorted by
    magnitude. Colour: depth; line style: variant."""
    variants, colours = arch_order(resp["variant"].unique()), _colours(resp)
    ((by_layer, by_size),) = _panels(2)
    for style, variant in zip(LINESTYLES * 4, variants, strict=False):
        for depth, rows in resp[resp["variant"] == variant].groupby("depth"):
            std = rows.groupby("layer")["std"].mean()
            kw = {"color": colours[depth], "ls": style, "label": f"{variant}-{depth}"}
            by_layer.plot(std.index, std.to_numpy(), **kw)
            by_size.plot(range(len(std)), std.sort_values(ascending=False).to_numpy(), **kw)
    by_layer.set(xlabel="layer index (original)", ylabel="std of response", title="by layer")
    by_size.set(xlabel="layer index (sorted by magnitude)", title="sorted")
    for ax in (by_layer, by_size):  # layers are counted: no tick between two of them
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_layer.legend(fontsize="small")
    return by_layer.figure


def lesion(les: pd.DataFrame) -> Figure:
    """Test error with one block deleted vs its index (Veit et al. 2016); dotted: no lesion.
    Gaps are plain blocks that change shape and so cannot be deleted."""
    variants, colours = arch_order(les["variant"].unique()), _colours(les)
    (row,) = _panels(len(variants))
    for ax, variant in zip(row, variants, strict=True):
        for depth, rows in les[les["variant"] == variant].groupby("depth"):
            err = rows.groupby("block")["error"].mean()
            c = colours[depth]
            ax.plot(
                err.index, err.to_numpy(), marker="o", ms=3, color=c, label=f"{variant}-{depth}"
            )
            ax.axhline(rows["baseline_error"].mean(), color=c, ls=":")
        blocks = les.loc[les["variant"] == variant, "block"]  # every block, deletable or not
        ax.set(title=variant, xlabel="deleted block", ylim=(0, 100))
        ax.set_xlim(blocks.min() - 0.5, blocks.max() + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        intact = Line2D([], [], color="grey", ls=":", label="no block deleted")
        ax.legend(handles=[*ax.get_legend_handles_labels()[0], intact], fontsize="small")
    row[0].set_ylabel("test error (%)")
    return row[0].figure


def zero_init(curves: pd.DataFrame) -> Figure:
    """Training curves with and without zero-initialised residual branches, a panel per
    (arch, depth) that has both; train dashed, test solid (the paper's convention)."""
    both = curves.groupby(["arch", "depth"])["zero_init"].transform("nunique") == 2
    curves = curves[both]
    keys = [
        (arch, depth)
        for arch in arch_order(curves["arch"].unique())
        for depth in sorted(curves.loc[curves["arch"] == arch, "depth"].unique())
    ]
    (row,) = _panels(len(keys), width=4.5)
    for ax, (arch, depth) in zip(row, keys, strict=True):
        runs = curves[(curves["arch"] == arch) & (curves["depth"] == depth)]
        for colour, (zi, rows) in zip(("C0", "C3"), runs.groupby("zero_init"), strict=True):
            for kind, style in (("train", "--"), ("test", "-")):
                col = f"{kind}_error"
                if col not in rows:
                    continue
                curve = rows.groupby("step")[col].mean().dropna()
                label = f"{'zero-init' if zi else 'default'} {kind}"
                ax.plot(curve.index, curve.to_numpy(), color=colour, ls=style, label=label)
        ax.set(title=f"{arch}-{depth}", xlabel="iterations")
        ax.legend(fontsize="small")
    row[0].set_ylabel("error (%)")
    return row[0].figure
