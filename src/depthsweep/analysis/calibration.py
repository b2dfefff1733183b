"""How often the verdict errs, by Monte Carlo: sweeps drawn from a known truth and judged exactly
as a real sweep is.

A truth gives each (arch, depth) its true final training error (%); a draw gives each of `seeds`
runs that error plus normal seed-to-seed noise of SD `seed_sd` (points; one SD for all, or one per
depth), clipped to 0-100 as an error rate is, and a within-run SE `within_se` for every run. The
cells (mean and `verdict.seed_se`, as `summaries.aggregate` computes them for by_depth.csv) go to
`verdict.judge_cells`, the verdict's own decision. The rates: how often each part was supported or
refuted, and each outcome. `experiments.calibrate` writes the table of SCENARIOS; the suite checks
the false rates (tests/test_calibration.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from depthsweep.analysis.verdict import ARCHS, Cell, judge_cells, outcome_of, seed_se
from depthsweep.paper import PAPER_DEPTHS

DEPTHS = PAPER_DEPTHS
Truth = Mapping[str, Mapping[int, float]]  # arch -> depth -> true final training error (%)

# He et al. 2016, Fig. 6 at 64k iterations: plain-20 ≈ 1.4% and plain-56 ≈ 5.9% read off the
# figure, plain-110 "higher than 60%"; plain-32/-44 and resnet's are illustrative (resnet's curves
# end below plain's and fall with depth), as the paper gives no numbers.
PAPER: Truth = {
    "plain": dict(zip(DEPTHS, [1.4, 2.5, 4.0, 5.9, 62.0], strict=True)),
    "resnet": dict(zip(DEPTHS, [1.3, 0.9, 0.7, 0.5, 0.2], strict=True)),
}
FLAT: Truth = {arch: dict.fromkeys(DEPTHS, 2.0) for arch in ARCHS}
# The cases: one collapsed depth must not carry plain's trend.
COLLAPSED: Truth = {
    "plain": dict(zip(DEPTHS, [2.0, 2.0, 2.0, 2.0, 85.0], strict=True)),
    "resnet": FLAT["resnet"],
}
# The issue's own numbers: plain-56 is 0.2 points above plain-20, so "plain rises" is true, by
# less than a seed SD, and its rate is power on that rise: the IUT asks for each step to rise
# significantly, with no minimum size.
RISING_A_LITTLE_THEN_COLLAPSED: Truth = {
    "plain": dict(zip(DEPTHS, [2.0, 2.1, 2.0, 2.2, 85.0], strict=True)),
    "resnet": FLAT["resnet"],
}
FALLING_THEN_COLLAPSED: Truth = {
    "plain": dict(zip(DEPTHS, [2.4, 2.2, 2.0, 1.8, 80.0], strict=True)),
    "resnet": FLAT["resnet"],
}
# Each trend's one deciding comparison null and the other clearly true (an intersection-union
# test's least favourable case), run with seed SD 6x at 56 (`SCENARIOS`), as plain-56's seeds
# scattered ~6x plain-38's in the CPU Figure 6's 2,250-iteration sweep (5.96 vs 0.96 points,
# figure6_cpu_2250_amd): Welch's test with two very unequal sides, at 20%,
# away from the floor, where clipping would change the noise.
ONE_STEP_NULL: Truth = {
    "plain": dict(zip(DEPTHS, [20.0, 20.0, 20.0, 20.0, 85.0], strict=True)),
    "resnet": dict(zip(DEPTHS, [20.0, 20.0, 20.0, 20.0, 10.0], strict=True)),
}
# resnet-20 failed to train (80%) and the deeper ResNets are flat: one depth carrying resnet's
# fall, caught by its check against plain-20 (verdict.FAILED_ANCHOR).
COLLAPSED_RESNET_20: Truth = {
    "plain": PAPER["plain"],
    "resnet": dict(zip(DEPTHS, [80.0, 2.0, 2.0, 2.0, 2.0], strict=True)),
}
# Every net at 20%: each part at the limit of its claim, away from the floor; with the deep
# depths' seeds noisier (`SCENARIOS`), Welch's test refutes above its level.
FLAT_20: Truth = {arch: dict.fromkeys(DEPTHS, 20.0) for arch in ARCHS}
# A claim that holds with effects of about one seed SD: what the verdict can see at few seeds.
SMALL: Truth = {
    "plain": dict(zip(DEPTHS, [2.0, 2.2, 2.4, 2.6, 3.0], strict=True)),
    "resnet": dict(zip(DEPTHS, [2.0, 1.8, 1.6, 1.4, 1.2], strict=True)),
}


def draw_cells(
    truth: Truth,
    seeds: int | Mapping[int, int],
    seed_sd: float | Mapping[int, float],
    within_se: float,
    rng: np.random.Generator,
) -> list[Cell]:
    """One sweep drawn from `truth`: each (arch, depth)'s mean and SE over `seeds` runs (a
    number, or one per depth)."""
    cells = []
    for arch in ARCHS:
        for depth, error in truth[arch].items():
            sd = seed_sd[depth] if isinstance(seed_sd, Mapping) else seed_sd
            n = seeds[depth] if isinstance(seeds, Mapping) else seeds
            values = np.clip(error + sd * rng.standard_normal(n), 0.0, 100.0)
            se = seed_se(values, np.full(n, within_se))
            sd = float(values.std(ddof=1)) if n > 1 else np.nan
            cells.append(Cell(arch, depth, n, float(values.mean()), se, sd=sd))
    return cells


def rates(
    truth: Truth,
    seeds: int | Mapping[int, int],
    seed_sd: float | Mapping[int, float],
    within_se: float = 0.05,
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """The share of `draws` sweeps in which each part was supported and refuted, and each
    outcome was reached: keys like 'plain trend supported', 'outcome reproduced'."""
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for _ in range(draws):
        parts = judge_cells(draw_cells(truth, seeds, seed_sd, within_se, rng))
        for key in [f"{p.name} {p.state}" for p in parts] + [f"outcome {outcome_of(parts)}"]:
            counts[key] = counts.get(key, 0) + 1
    parts = ["plain trend", "resnet trend", "resnet below plain"]
    keys = [f"{p} {s}" for p in parts for s in ("supported", "refuted")]
    keys += [f"outcome {o}" for o in ("reproduced", "not reproduced", "inconclusive")]
    return {key: counts.get(key, 0) / draws for key in keys}


# name: (truth, what the rates are: the claim false (false supported) or true (power), the seed
# SD at some depths as a multiple of the others')
SCENARIOS: dict[str, tuple[Truth, str, Mapping[int, float]]] = {
    "flat": (FLAT, "all false: every 'supported' is a false one", {}),
    "flat, seed SD 3x at 110": (FLAT, "all false, the deepest depth noisier", {110: 3}),
    "plain 20-56 flat, 110 collapsed": (COLLAPSED, "plain's rise carried by one depth", {}),
    "plain 2.0/2.1/2.0/2.2, 110 collapsed": (
        RISING_A_LITTLE_THEN_COLLAPSED,
        "plain rises 0.2 points from 20 to 56: 'plain rises' is power on that, not a false rate",
        {},
    ),
    "plain falling, 110 collapsed": (FALLING_THEN_COLLAPSED, "plain falls from 20 to 56", {}),
    "one step of each trend null, seed SD 6x at 56": (
        ONE_STEP_NULL,
        "both trends false by one comparison, Welch's hardest case: the gap alone is true",
        {56: 6},
    ),
    "resnet-20 collapsed, deeper resnets flat": (
        COLLAPSED_RESNET_20,
        "resnet's fall carried by one failed depth",
        {},
    ),
    "flat at 20%, seed SD 20x at 56 and 110": (
        FLAT_20,
        "every part at its limit: 'refuted' is a true claim's false refutation",
        {56: 20, 110: 20},
    ),
    "paper-like (resnet illustrative)": (PAPER, "all true: 'reproduced' is the power", {}),
    "effects of one seed SD": (SMALL, "all true, small: 'reproduced' is the power", {}),
}


def table(
    seeds: tuple[int, ...] = (2, 3, 5), sds: tuple[float, ...] = (0.2, 0.4), draws: int = 2000
) -> pd.DataFrame:
    """Every scenario at every number of seeds and seed SD: one row each, with its rates."""
    rows = []
    for name, (truth, meaning, noisier) in SCENARIOS.items():
        for n in seeds:
            for sd in sds:
                noise = {depth: sd * noisier.get(depth, 1) for depth in DEPTHS}
                got = rates(truth, n, noise, draws=draws)
                rows.append({"scenario": name, "seeds": n, "seed_sd": sd, **got, "what": meaning})
    return pd.DataFrame(rows)
