"""Seeds far from the others, named in the verdict's sentence: runs to look at, deciding nothing.

Each (arch, depth)'s seeds are judged against the arch's seed-to-seed noise, pooled over its
depths (each depth's scatter about its own mean: the depths' errors differ, their noise is taken
to be one), since two or three seeds at one depth cannot say alone what is far:
- at a depth with >= 3 seeds, each seed against the mean of the others, a prediction-interval t
  test: (x - mean of the others) / (s * sqrt(1 + 1 / others)), s pooled over the arch's depths
  with the seed left out, on the pooled degrees of freedom;
- at a depth with 2 seeds, neither can be called the odd one, so the pair is tested: their
  variance against the pooled variance of the arch's other depths, an F test on (1, pooled dof).
A seed (pair) is named where its two-sided p (the F test's upper tail) is below OUTLIER_ALPHA
divided by the number of such tests in the sweep (Bonferroni), so with equal normal seed noise at
most OUTLIER_ALPHA of sweeps name anything, however many depths and seeds (measured:
tests/test_outliers.py). A fixed "5 SDs from the others' median" named a seed in 13-23% of
sweeps without one at 2-3 seeds: an SD from two values is often far too small. The noise is
never below the runs' own window noise (their SE's root mean square) nor, for a seed, the
scatter of its depth's other seeds: seed noise is not equal across depths in practice (the CPU
Figure 6's SDs run 0.5-4.3 points), and pooled alone it named a seed in 16-20% of such sweeps
at 3-5 seeds; with this floor, 9-12% at 2-5 seeds, and 7-9% named on both scales (below)
(tests/test_outliers.py; a pair, at 2 seeds, has no scatter of its own to set against): a name
is a run to look at.

Seed noise also grows with the error (a plain-110 at 62% beside a plain-20 at 1.4%): pooled in
points, the noisy depth is judged by the quiet depths' SD, and an ordinary plain-110 seed was
named in 41% / 76% of sweeps at 3 / 2 seeds with SDs a share of the error, 17-20% with
binomial-shaped SDs. So each test is made twice, on the points and on log(error + LOG_OFFSET),
where noise in proportion to the error (plus a point) is equal at every depth, and a seed is
named only where both name it: its p is the larger of the two (an intersection-union test: at
most OUTLIER_ALPHA of sweeps where either scale's noise is equal across depths). Measured with
the paper's errors: results/verdict_calibration/outliers_scaled_noise.txt. The price is power:
a seed far off on one scale only is not named; a seed 10 SDs off is named in 87-89% of sweeps
at 3 seeds with equal noise, 55-88% at the paper's resnet errors (0.2-1.3%, seed SD 0.1),
measured in tests/test_outliers.py and results/verdict_calibration/outliers_offset.txt. The log
scale's floor is the window noise at the arch's highest error (the smallest share of an error the
runs' own noise allows). Nothing is tested where the arch has no pooled degree of freedom left or
no noise at all (seeds that all agree).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

OUTLIER_ALPHA = 0.05  # the chance, with equal seed noise, that a sweep names any seed or pair
NO_NOISE = 1e-9  # points: an SD below this is seeds that agree, no scale to judge by
# points added before the log: below about a point, seed differences are the last few mistakes,
# as large at 0.1% as at 0.5%, not a share of the error. With 0.1, a resnet-110 at 0.0-0.2% took
# the log scale's pooled SD to 0.3 and hid a resnet-20 seed 40 SDs off; at the paper's resnet
# errors (0.2-1.3%, seed SD 0.1) a resnet-20 seed 10 SDs off was named in 6% of sweeps, with 1 in
# 55% (0.5: 30%; 2: 79%, but 7.4% of sweeps named an ordinary seed with noise 10% of the error):
# results/verdict_calibration/outliers_offset.txt.
LOG_OFFSET = 1.0

Cells = Mapping[int, Sequence[float]]  # depth -> the seeds' final training errors (%)


def _pooled(cells: Cells, leave_out: int | None = None, seed: int | None = None):
    """(SS, dof): the sum of squares of the arch's seeds about their depth's mean and its degrees
    of freedom, without depth `leave_out` (seed=None) or without its `seed`-th value."""
    ss, dof = 0.0, 0
    for depth, values in cells.items():
        x = np.asarray(values, float)
        if depth == leave_out:
            if seed is None:
                continue
            x = np.delete(x, seed)
        if len(x) > 1:
            ss += float(np.sum((x - x.mean()) ** 2))
            dof += len(x) - 1
    return ss, dof


def tests(cells: Cells, own_noise: float = 0.0) -> list[dict]:
    """Every test of one arch, each with its numbers: depth, seed_index (None for a pair), test
    ("t" for a seed against the others, "F" for a pair), statistic, dof, noise_sd (the seed SD
    it was judged against, points), p (two-sided; the F test's upper tail). `own_noise`: the
    runs' own window noise (points), a floor on the pooled SD."""
    made = []
    for depth, values in cells.items():
        x = np.asarray(values, float)
        if len(x) == 2:
            ss, dof = _pooled(cells, leave_out=depth)
            if dof:
                var = max(ss / dof, own_noise**2)
                if var >= NO_NOISE**2:
                    f = float(np.var(x, ddof=1)) / var
                    made.append(dict(depth=depth, seed_index=None, test="F", statistic=f,
                                     dof=dof, noise_sd=math.sqrt(var),
                                     p=float(stats.f.sf(f, 1, dof))))  # fmt: skip
        elif len(x) >= 3:
            for i in range(len(x)):
                others = np.delete(x, i)
                ss, dof = _pooled(cells, leave_out=depth, seed=i)
                # Never below the depth's own others' scatter: seed noise differs by depth
                sd = max(math.sqrt(ss / dof), own_noise, float(np.std(others, ddof=1)))
                if sd < NO_NOISE:
                    continue
                t = (x[i] - others.mean()) / (sd * math.sqrt(1 + 1 / len(others)))
                p = float(2 * stats.t.sf(abs(t), dof))
                made.append(dict(depth=depth, seed_index=i, test="t", statistic=float(t),
                                 dof=dof, noise_sd=sd, p=p))  # fmt: skip
    return made


def both_scales(cells: Cells, own_noise: float = 0.0) -> list[dict]:
    """`tests` on the points and on log(error + LOG_OFFSET), paired: each with the points' numbers
    (statistic, noise_sd in points, p_points), the log scale's (log_statistic, log_noise_sd,
    p_log) and p, the larger of the two. A test that one scale cannot make is not made."""
    logs = {d: np.log(np.asarray(x, float) + LOG_OFFSET) for d, x in cells.items()}
    top = max(float(np.mean(x)) for x in cells.values()) if cells else 0.0
    on_log = {
        (t["depth"], t["seed_index"]): t
        for t in tests(logs, own_noise / (top + LOG_OFFSET))  # the window noise, as a share
    }
    paired = []
    for t in tests(cells, own_noise):
        other = on_log.get((t["depth"], t["seed_index"]))
        if other is not None:
            paired.append({**t, "p_points": t["p"], "log_statistic": other["statistic"],
                           "log_noise_sd": other["noise_sd"], "p_log": other["p"],
                           "p": max(t["p"], other["p"])})  # fmt: skip
    return paired


def far(cells: Mapping[str, Cells], noise: Mapping[str, float]) -> list[dict]:
    """The tests (as `both_scales` gives them, with their arch) of every arch's `cells` (arch ->
    depth -> seeds) whose p is below `level`: OUTLIER_ALPHA / `tests_made`, the tests of the
    sweep. `noise`: each arch's runs' own window noise."""
    made = [
        {"arch": arch, **test} for arch, of_arch in cells.items()
        for test in both_scales(of_arch, noise[arch])
    ]  # fmt: skip
    level = OUTLIER_ALPHA / len(made) if made else math.nan
    return [{**test, "tests_made": len(made), "level": level} for test in made
            if test["p"] < level]  # fmt: skip


def named(runs: pd.DataFrame) -> list[dict]:
    """The seeds (pairs) far from the others: `far`'s tests with the seed (None for a pair), the
    depth's values and `said`, the test in words with its p. `runs`: finished runs with arch,
    depth, seed, final_train_error and its within-run SE (final_train_error_se)."""
    cells, noise, frames = {}, {}, {}
    for arch, of_arch in runs.groupby("arch", sort=True):
        frames[arch] = {int(d): g for d, g in of_arch.groupby("depth", sort=True)}
        cells[arch] = {d: g["final_train_error"].to_numpy(float) for d, g in frames[arch].items()}
        own = of_arch["final_train_error_se"].to_numpy(float)
        own = own[np.isfinite(own)]
        noise[arch] = math.sqrt(float(np.mean(own**2))) if len(own) else 0.0
    found = []
    for test in far(cells, noise):
        arch, depth, i, p = test["arch"], test["depth"], test["seed_index"], test["p"]
        x, cell = cells[arch][depth], frames[arch][depth]
        if i is None:
            said = (
                f"{arch}-{depth}'s two seeds ({x[0]:.2f} and {x[1]:.2f}: far apart for the "
                f"arch's seed noise at its other depths, p = {p:.2g})"
            )
        else:
            rest = ", ".join(f"{v:.2f}" for v in np.delete(x, i))
            said = (
                f"{arch}-{depth} seed {cell['seed'].iloc[i]} ({x[i]:.2f}; the others {rest}; "
                f"p = {p:.2g})"
            )
        seed = None if i is None else int(cell["seed"].iloc[i])
        found.append({**test, "seed": seed, "values": [float(v) for v in x], "said": said})
    return found
