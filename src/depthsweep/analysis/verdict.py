"""The verdict: the paper's claim (He et al. 2016, Fig. 6) judged as a statistical test.

The claim, as the project states it: on the same recipe, (1) plain nets' training error rises
with depth, (2) ResNets' falls with depth, (3) at the deepest depth both were trained at, which
must be >= DEEP_DEPTH, the ResNet's is below the plain net's. Each part is an estimate with a 95%
interval:

- (1) and (2): the exponent k of a power law, error ∝ depth^k, fitted over the depths >=
  MIN_DEPTH by weighted least squares of log(error) on log(depth), each depth weighted by 1 / its
  SE^2 on that scale (SE / mean). A power law because errors grow and shrink by factors: plain's
  run from 1.4% to over 60% between 20 and 110 layers in the paper, a straight line in points
  fits neither that nor ResNets' 2% to 0.5%. If the points scatter about the line more than their
  SEs allow (reduced chi-square above 1: seed-to-seed variation a single seed cannot show, or a
  shape no power law has), the SE of k is scaled up by sqrt(chi2 / dof); the interval uses
  Student's t with depths - 2 degrees of freedom, so three depths give a wide one.
  A trend needs >= MIN_DEPTHS depths including one >= DEEP_DEPTH, so no two points (one collapsed
  deep run) can carry it.
- (3): the difference of the two means at that depth, SE sqrt(SE_plain^2 + SE_resnet^2), t with
  Welch-Satterthwaite's degrees of freedom where both have >= 2 seeds (their SEs may differ), else
  n_plain + n_resnet - 2 (normal where that is 0: one seed each).

A part is supported when its interval lies on the claim's side of zero, refuted when it lies
wholly on the other side (zero included), else open. Any part refuted: "NOT reproduced"; all
supported: "Degradation reproduced"; else "Inconclusive", saying what evidence would settle it.
"Undetermined" where the input cannot be judged at all: a finished run with a training error that
is NaN, infinite or outside 0-100, or plain and resnet runs whose configs differ in more than
the arch (`mixed_options`, found by `analysis.load_sweep`).

The SE of each (arch, depth) mean comes from `analysis.aggregate`: over seeds, floored by the
runs' own within-run noise (see `analysis.within_run_se`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from depthsweep.files import plain_data

# The claim is about depths 20 to 110; depth 8 is a smoke-test size, no evidence.
MIN_DEPTH = 20
MIN_DEPTHS = 3  # depths >= MIN_DEPTH an arch needs for its trend to be tested
DEEP_DEPTH = 56  # ... one of them at least this deep
LEVEL = 0.95  # of every interval
ARCHS = ("plain", "resnet")
DIRECTION = {"plain": +1, "resnet": -1}  # the claim: plain's error rises, resnet's falls

OUTCOMES = {
    "reproduced": "Degradation reproduced",
    "not reproduced": "NOT reproduced",
    "inconclusive": "Inconclusive",
    "undetermined": "Verdict undetermined",
}


@dataclass
class Part:
    """One part of the claim: its estimate, interval and state."""

    name: str  # "plain trend", "resnet trend", "resnet below plain"
    state: str  # "supported", "refuted", "open" (interval spans zero), "untested"
    estimate: float = math.nan  # the exponent k of error ∝ depth^k, or points (plain - resnet)
    low: float = math.nan
    high: float = math.nan
    depths: list[int] = field(default_factory=list)
    reason: str = ""  # the part in words, numbers included


@dataclass
class Verdict:
    outcome: str  # a key of OUTCOMES
    sentence: str
    parts: list[Part] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)  # arch, depth, n, mean, se of what was used

    def to_dict(self) -> dict:
        """As plain data for verdict.json: NaN (not estimated) becomes None."""
        return plain_data(asdict(self))


def _quantile(dof: float) -> float:
    """The two-sided LEVEL quantile: Student's t with `dof`, normal where dof is 0 or less."""
    tail = (1 + LEVEL) / 2
    return float(stats.norm.ppf(tail) if dof < 1 else stats.t.ppf(tail, dof))


def _state(low: float, high: float, sign: int) -> str:
    """Where [low, high] lies relative to zero, in the claim's direction `sign`."""
    low, high = (low, high) if sign > 0 else (-high, -low)
    return "supported" if low > 0 else "refuted" if high <= 0 else "open"


# Errors (%) below this are taken as this on the log scale: one mistake in 10,000 images.
ERROR_FLOOR = 0.01


def trend(points: pd.DataFrame) -> tuple[float, float, float]:
    """(k, low, high): the exponent of error ∝ depth^k fitted to `mean` (%) at `depth`, weighted
    by 1 / (`se` / `mean`)^2, with its interval. A point whose se is 0 or unknown gets the largest
    known one of the others (a point of unknown noise never weighs most); with none known the
    weights are equal and the scatter alone sets the interval."""
    x = np.log(points["depth"].to_numpy(float))
    mean = np.maximum(points["mean"].to_numpy(float), ERROR_FLOOR)
    y = np.log(mean)
    se = points["se"].to_numpy(float) / mean
    known = se[np.isfinite(se) & (se > 0)]
    se = np.where(np.isfinite(se) & (se > 0), se, known.max() if len(known) else 1.0)
    w = 1 / se**2
    xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    dof = len(x) - 2
    chi2 = np.sum(w * (y - (ym + slope * (x - xm))) ** 2)
    scale = math.sqrt(max(1.0, chi2 / dof)) if len(known) else math.sqrt(chi2 / dof)
    half = _quantile(dof) * scale / math.sqrt(sxx)
    return float(slope), float(slope - half), float(slope + half)


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def _trend_part(arch: str, points: pd.DataFrame) -> Part:
    depths = [int(d) for d in points["depth"]]
    need = f"≥ {MIN_DEPTHS} depths ≥ {MIN_DEPTH} including one ≥ {DEEP_DEPTH}"
    if len(depths) < MIN_DEPTHS or max(depths, default=0) < DEEP_DEPTH:
        have = ", ".join(map(str, depths)) or "none"
        return Part(
            f"{arch} trend", "untested", depths=depths,
            reason=f"{arch}'s trend is not tested: it needs {need} (has {have})",
        )  # fmt: skip
    slope, low, high = trend(points)
    state = _state(low, high, DIRECTION[arch])
    word = {"supported": "rises" if DIRECTION[arch] > 0 else "falls"}.get(state)
    if state == "refuted":
        word = "does not rise" if DIRECTION[arch] > 0 else "does not fall"
    fit = (
        f"error ∝ depth^k, k = {_fmt(slope)}, 95% CI [{_fmt(low)}, {_fmt(high)}]; "
        f"×{2**slope:.2f} per doubling of depth"
    )
    if word is None:  # open
        reason = f"{arch}'s trend with depth is unclear ({fit}; the interval includes 0)"
    else:
        reason = f"{arch}'s train error {word} with depth ({fit})"
    return Part(f"{arch} trend", state, slope, low, high, depths, reason)


def _gap_dof(p: pd.Series, r: pd.Series) -> float:
    """Degrees of freedom of the gap's t: Welch-Satterthwaite where both means have >= 2 seeds,
    else the pooled n_plain + n_resnet - 2."""
    a, b = p["se"] ** 2, r["se"] ** 2
    if min(p["n"], r["n"]) < 2 or a + b == 0:
        return p["n"] + r["n"] - 2
    return (a + b) ** 2 / (a**2 / (p["n"] - 1) + b**2 / (r["n"] - 1))


def _gap_part(plain: pd.DataFrame, resnet: pd.DataFrame) -> Part:
    shared = sorted(set(plain.index) & set(resnet.index))
    deep = [d for d in shared if d >= DEEP_DEPTH]
    if not deep:  # at 20 both nets train well: the claim is about the deep ones
        have = ", ".join(map(str, shared)) or "none"
        return Part(
            "resnet below plain", "untested", depths=shared,
            reason=f"plain and resnet share no depth ≥ {DEEP_DEPTH} (shared: {have})",
        )  # fmt: skip
    d = deep[-1]
    p, r = plain.loc[d], resnet.loc[d]
    gap = p["mean"] - r["mean"]
    se = math.hypot(p["se"], r["se"])
    if not math.isfinite(se):
        return Part(
            "resnet below plain", "untested", gap, depths=[d],
            reason=f"at depth {d} plain's or resnet's error has no noise estimate",
        )  # fmt: skip
    half = _quantile(_gap_dof(p, r)) * se
    state = _state(gap - half, gap + half, +1)
    interval = f"95% CI [{_fmt(gap - half)}, {_fmt(gap + half)}]"
    where = {"supported": "below", "refuted": "not below", "open": "not clearly below"}[state]
    reason = f"resnet's is {where} plain's at depth {d} (plain − resnet {_fmt(gap)}, {interval})"
    return Part("resnet below plain", state, gap, gap - half, gap + half, [d], reason)


def _settle(parts: list[Part], points: pd.DataFrame) -> str:
    """What more evidence would settle an inconclusive verdict."""
    hints = []
    for p in parts:
        if p.state == "untested" and p.name.endswith("trend"):
            hints.append(
                f"train {p.name.split()[0]} at ≥ {MIN_DEPTHS} depths ≥ {MIN_DEPTH} "
                f"including one ≥ {DEEP_DEPTH}"
            )
    gap = parts[-1]
    if gap.state == "untested" and math.isnan(gap.estimate):  # no shared depth deep enough
        hints.append(f"train plain and resnet at one depth ≥ {DEEP_DEPTH}")
    elif gap.state == "untested":  # a gap, but no noise estimate for it
        hints.append(
            f"at depth {gap.depths[0]}, more seeds or longer runs (an SE needs ≥ 3 windows "
            "logged at the final learning rate)"
        )
    if any(p.state == "open" for p in parts):
        seeds = int(points["n"].min()) if len(points) else 0
        hints.append(
            f"more seeds (now {seeds} at the fewest depth) to narrow the intervals, "
            "or a longer schedule, if the deeper nets are still catching up"
        )
    return "; ".join(hints)


def _describe(points: pd.DataFrame) -> str:
    per_arch = []
    for arch in ARCHS:
        rows = points[points["arch"] == arch]
        cells = [
            f"{r.depth}: {r.mean:.2f} ± {r.se:.2f} ({r.n})" if math.isfinite(r.se)
            else f"{r.depth}: {r.mean:.2f} ± ? ({r.n})"
            for r in rows.itertuples()
        ]  # fmt: skip
        per_arch.append(f"{arch} {', '.join(cells) or 'none'}")
    return (
        f"Final train error (%, mean ± SE (seeds), finished runs at depth ≥ {MIN_DEPTH}): "
        + "; ".join(per_arch)
        + "."
    )


def judged(frame: pd.DataFrame) -> pd.Series:
    """Which rows (runs, or a table's arch and depth) the claim is about: plain or resnet, at a
    depth >= MIN_DEPTH."""
    return frame["arch"].isin(ARCHS) & (frame["depth"] >= MIN_DEPTH)


def bad_values(summary: pd.DataFrame) -> list[str]:
    """Finished plain/resnet runs at the verdict's depths whose final training error is no
    error rate at all (NaN, infinite, outside 0-100): named, never dropped."""
    done = summary[(summary["status"] == "done") & judged(summary)]
    error = done["final_train_error"].astype(float)
    bad = done[~(error.between(0, 100))]  # NaN and ±inf fall outside too
    return [f"{r.run_dir} ({r.final_train_error})" for r in bad.itertuples()]


def decide(summary: pd.DataFrame, table: pd.DataFrame, mixed: list[str]) -> Verdict:
    """The verdict on a sweep: `summary` (one row per run), `table` (analysis.aggregate: mean,
    SE and n per variant and depth), `mixed` (options in which plain and resnet runs differ)."""
    bad = bad_values(summary)
    if bad:
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: finished runs whose final train error is not an error "
            f"rate (NaN, infinite or outside 0–100): {', '.join(bad)}. Check their metrics.csv.",
        )
    if mixed:
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: the plain and resnet runs differ in "
            f"{', '.join(mixed)}, not only in their arch; the verdict compares the two under one "
            "configuration (sweep them apart, or analyse each configuration's runs apart).",
        )
    used = table[judged(table)]  # groups of finished runs: n >= 1
    points = pd.DataFrame(
        {
            "arch": used["arch"],
            "depth": used["depth"].astype(int),
            "n": used["n"].astype(int),
            "mean": used["final_train_error_mean"].astype(float),
            "se": used["final_train_error_se"].astype(float),
        }
    ).sort_values(["arch", "depth"], ignore_index=True)
    by_arch = {a: points[points["arch"] == a].set_index("depth", drop=False) for a in ARCHS}
    if any(by_arch[a].empty for a in ARCHS):
        have = "; ".join(
            f"{a} at {', '.join(map(str, sorted(set(summary.loc[summary.arch == a, 'depth']))))}"
            for a in ARCHS
            if (summary["arch"] == a).any()
        )
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: the claim compares plain and resnet nets at depths ≥ "
            f"{MIN_DEPTH} (20 to 110 in the paper), and this sweep has no finished runs of both "
            f"there ({have or 'no plain or resnet runs'}). Smaller nets check the pipeline, "
            f"they are no evidence: sweep plain and resnet at ≥ {MIN_DEPTHS} depths from "
            f"{MIN_DEPTH}, one ≥ {DEEP_DEPTH} (experiment=figure6).",
            points=points.to_dict("records"),
        )
    parts = [_trend_part(a, by_arch[a]) for a in ARCHS]
    parts.append(_gap_part(by_arch["plain"], by_arch["resnet"]))
    states = [p.state for p in parts]
    if "refuted" in states:
        outcome, shown = "not reproduced", [p for p in parts if p.state == "refuted"]
    elif all(s == "supported" for s in states):
        outcome, shown = "reproduced", parts
    else:
        outcome, shown = "inconclusive", [p for p in parts if p.state != "supported"]
    sentence = f"{OUTCOMES[outcome]}: " + "; ".join(p.reason for p in shown) + "."
    if outcome == "inconclusive":
        settle = _settle(parts, points)
        sentence += f" What would settle it: {settle}." if settle else ""
    if outcome != "reproduced":
        supported = [p.reason for p in parts if p.state == "supported"]
        sentence += f" Supported: {'; '.join(supported)}." if supported else ""
    left_out = summary[judged(summary) & (summary["status"] != "done")]
    if len(left_out):
        names = [f"{r.run_dir} ({r.status})" for r in left_out.itertuples()]
        sentence += f" Left out, not finished: {', '.join(names)}."
    if len(points) and points["n"].max() == 1:
        sentence += (
            " One seed per depth: each SE is the run's own window-to-window noise, a floor that "
            "leaves out seed-to-seed variation."
        )
    elif (points["n"] == 1).any():
        lone = [f"{r.arch}-{r.depth}" for r in points[points["n"] == 1].itertuples()]
        sentence += (
            f" One seed at {', '.join(lone)}: its SE is the run's own window-to-window noise, a "
            "floor that leaves out seed-to-seed variation."
        )
    records = points.to_dict("records")
    return Verdict(outcome, f"{sentence} {_describe(points)}", parts, records)
