"""The verdict as a statistical test: a table of cases that would fool a fixed-tolerance rule,
each built as a summary table (one row per run) and judged by `summaries.decide`; then the same
on real run directories."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from helpers import train_tiny
from scipy import stats

from depthsweep.analysis import summaries as analysis
from depthsweep.analysis import verdict
from depthsweep.analysis.verdict import Cell

NAN, INF = math.nan, math.inf


def summary(plain: dict, resnet: dict, se: float = 0.2, **extra_columns) -> pd.DataFrame:
    """One finished run per seed: {depth: final train error, or a list of one per seed}; every
    run's own within-run SE is `se`."""
    rows = [
        {
            "arch": arch,
            "depth": depth,
            "seed": seed,
            "status": "done",
            "final_train_error": error,
            "final_train_error_se": se,
            "run_dir": f"arch={arch},depth={depth},seed={seed}",
        }
        for arch, errors in [("plain", plain), ("resnet", resnet)]
        for depth, per_seed in errors.items()
        for seed, error in enumerate(per_seed if isinstance(per_seed, list) else [per_seed])
    ]
    frame = pd.DataFrame(rows).reindex(columns=[*analysis.SUMMARY_COLUMNS, "variant"])
    frame["variant"] = frame["arch"]
    for name, values in extra_columns.items():  # option columns, e.g. a schedule.iterations
        frame.insert(1, name, values)
    return frame


def seeds(mean: float, spread: float = 0.0, n: int = 3) -> list[float]:
    """n seeds around `mean`, `spread` apart (std `spread` for n = 3)."""
    return [mean + spread * k for k in np.linspace(-1, 1, n)]


DEPTHS = (20, 32, 44, 56, 110)
# He et al. 2016, Fig. 6 at 64k iterations: plain-20 ≈ 1.4% and plain-56 ≈ 5.9% are read off the
# figure, plain-110 is "higher than 60%". plain-32/-44 and every resnet value are illustrative
# (resnet's curves end below plain's and fall with depth), as the paper gives no numbers.
PAPER_PLAIN = dict(zip(DEPTHS, [1.4, 2.5, 4.0, 5.9, 62.0], strict=True))
PAPER_RESNET = dict(zip(DEPTHS, [1.3, 0.9, 0.7, 0.5, 0.2], strict=True))
FLAT = dict.fromkeys(DEPTHS, 5.0)
RISING_PLAIN = dict(zip(DEPTHS, [2.0, 4.0, 6.0, 9.0, 20.0], strict=True))


def paper_sweep() -> pd.DataFrame:
    """The paper's numbers at three seeds (plain's 0.2 apart, resnet's 0.1), runs' own SE 0.05."""
    return summary(
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        se=0.05,
    )


CASES = {
    # name: (plain, resnet, within-run se, outcome, a fragment of the sentence)
    "the paper's numbers, 3 seeds": (
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "reproduced",
        "Degradation reproduced: plain's train error rises with depth (plain-56 − plain-20 = "
        "+4.50 points",
    ),
    "the paper's numbers, 1 seed": (  # the runs' own noise alone judged nothing reliably
        PAPER_PLAIN,
        PAPER_RESNET,
        0.05,
        "inconclusive",
        "plain-56 vs plain-20 untested: one seed at plain-56 and plain-20",
    ),
    "flat resnet, 3 identical seeds": (  # the old fixed-tolerance rule called this reproduced
        {d: seeds(e, 0.3) for d, e in RISING_PLAIN.items()},
        {d: [e] * 3 for d, e in FLAT.items()},
        0.2,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: the seeds of resnet-20's 3 (5.00%) and resnet-56's 3 "
        "(5.00%) all gave the same error: one draw repeated, not seed-to-seed noise",
    ),
    "the paper's numbers, 3 identical seeds each": (  # one draw, judged on window noise alone
        {d: [e] * 3 for d, e in PAPER_PLAIN.items()},
        {d: [e] * 3 for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "What would settle it: seeds that differ at plain-20, plain-32, plain-44, plain-56, "
        "plain-110, resnet-20, resnet-32, resnet-44, resnet-56, resnet-110, whose seeds all gave "
        "the same error",
    ),
    "a middle plain depth of one seed, collapsed": (  # it might be the 85: nothing supported
        {**{d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}, 32: 85.0},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "plain's trend with depth is untested (plain-56 − plain-20 = +4.50 points, 95% CI "
        "[+4.05, +4.95], p = 5.2e-06; plain-110 − plain-56 = +56.10 points, 95% CI [+55.65, "
        "+56.55], p = 2.2e-10; but unchecked plain-32 vs plain-20: one seed at plain-32; "
        "plain-56 vs plain-32: one seed at plain-32; error ∝ depth^k, k = +1.49, 95% CI [-2.90, "
        "+5.88]). What would settle it: a second seed at plain-32 (seed=0,1).",
    ),
    "flat resnet with seed noise": (
        {d: seeds(e, 0.3) for d, e in RISING_PLAIN.items()},
        {d: seeds(e, 0.5) for d, e in FLAT.items()},
        0.2,
        "inconclusive",
        "What would settle it: more seeds",
    ),
    "a small creep up": (  # 0.05 points per depth, measured precisely: resnet does not fall
        {d: seeds(e, 0.3) for d, e in RISING_PLAIN.items()},
        {d: seeds(5.0 + 0.05 * i, 0.01) for i, d in enumerate(DEPTHS)},
        0.005,
        "not reproduced",
        "NOT reproduced: resnet's train error does not fall with depth (resnet-20 − resnet-56 = "
        "-0.15 points",
    ),
    "a 2-point rise under 1-point seed noise": (  # not significant the other way either
        {d: seeds(e, 1.0) for d, e in RISING_PLAIN.items()},
        {d: seeds(5.0 + 0.5 * i, 1.0) for i, d in enumerate(DEPTHS)},
        0.2,
        "inconclusive",
        "resnet's trend with depth is unclear",
    ),
    "a wild seed hiding a 7-point rise": (  # the old δ grew to 11 points and hid the rise
        {d: seeds(e, 0.3) for d, e in RISING_PLAIN.items()},
        {
            20: seeds(2.0, 0.3),
            32: [3.0, 3.2, 21.0],
            44: seeds(5.0, 0.3),
            56: seeds(7.0, 0.3),
            110: seeds(9.0, 0.3),
        },
        0.2,
        "not reproduced",
        "Seeds far from the others (kept, and named): resnet-32 seed 2 (21.00; the "
        "others 3.00, 3.20; p = 2.3e-09)",
    ),  # fmt: skip
    "a collapsed shallowest resnet": (  # one failed depth must not carry resnet's trend either
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {20: seeds(80.0, 0.5), **{d: seeds(2.0, 0.1) for d in DEPTHS[1:]}},
        0.05,
        "inconclusive",
        "plain-20 lies below resnet-20 (the shallowest ResNet trained worse than the plain net of "
        "its depth, where a shortcut costs nothing: a fall from it is a failed run's, not "
        "depth's)",
    ),
    "resnet-20 a little above plain-20": (  # under FAILED_RATIO times it: no failed run
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {**{d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, 20: seeds(2.0, 0.1)},
        0.05,
        "reproduced",
        "resnet's train error falls with depth (resnet-20 − resnet-56 = +1.50 points",
    ),
    "resnet-20 twice plain-20's near the floor": (  # 1.1 points: no failed run
        {**{d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}, 20: seeds(0.9, 0.05)},
        {**{d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, 20: seeds(2.0, 0.05)},
        0.02,
        "reproduced",
        "resnet's train error falls with depth (resnet-20 − resnet-56 = +1.50 points",
    ),
    "a plain-20 of one seed": (  # the check against it cannot be made: not made
        {**{d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}, 20: [1.4]},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "Supported: resnet's train error falls with depth",
    ),
    "plain decisively out of order": (  # more seeds would not settle it
        {d: seeds(e, 0.2) for d, e in zip(DEPTHS, (2.0, 85.0, 3.0, 4.0, 60.0), strict=True)},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "What would settle it: for depths out of order (plain-56 below plain-32, p = 5e-11), those "
        "runs' curves looked at first (did one fail to train?)",
    ),
    "plain alone": (  # its trend judged, resnet's and the gap said to be missing
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {},
        0.05,
        "inconclusive",
        "resnet's trend is not tested: it needs ≥ 3 depths 20–110, the deepest ≥ 56 (has none)",
    ),
    "resnet alone": (  # its fall untested: no plain-20 to show that resnet-20 trained
        {},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "but unchecked plain-20 vs resnet-20: plain was not trained at depth 20 (a failed "
        "resnet-20 would carry the fall)",
    ),
    "two depths only, plain-110 collapsed": (
        {20: seeds(2.0, 0.3), 110: seeds(89.9, 0.3)},
        {20: seeds(1.8, 0.3), 110: seeds(1.0, 0.3)},
        0.2,
        "inconclusive",
        "plain's trend is not tested: it needs ≥ 3 depths 20–110, the deepest ≥ 56 (has 20, 110)",
    ),
    "a flat plain net whose deepest run collapsed": (  # one point must not carry the trend
        {20: seeds(2.0, 0.3), 56: seeds(2.1, 0.3), 110: seeds(80.0, 0.3)},
        {20: seeds(2.0, 0.3), 56: seeds(1.5, 0.3), 110: seeds(1.2, 0.3)},
        0.2,
        "inconclusive",
        "plain's trend with depth is unclear (plain-56 − plain-20 = +0.10 points",
    ),
    "the issue's flat plain 20-56 and collapsed 110, 2 seeds": (  # the power law said: rises
        {20: [1.9, 2.1], 32: [2.0, 2.2], 44: [1.9, 2.1], 56: [2.1, 2.3], 110: [84.0, 86.0]},
        {d: seeds(e, 0.1, n=2) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "plain's trend with depth is unclear (plain-56 − plain-20 = +0.20 points",
    ),
    "plain falling from 20 to 56, then collapsed": (  # said to rise every time by the old rule
        {
            20: seeds(2.4, 0.05),
            32: seeds(2.2, 0.05),
            44: seeds(2.0, 0.05),
            56: seeds(1.8, 0.05),
            110: seeds(80.0, 0.5),
        },
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.02,
        "not reproduced",
        "NOT reproduced: plain's train error does not rise with depth (plain-56 − plain-20 = "
        "-0.60 points",
    ),  # fmt: skip
    "no resnet as deep as 56": (
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {20: seeds(1.3, 0.1), 32: seeds(0.9, 0.1), 44: seeds(0.7, 0.1)},
        0.05,
        "inconclusive",
        "What would settle it: train resnet at ≥ 3 depths 20–110, the deepest ≥ 56",
    ),
    "resnet above plain at the deepest depth": (
        {20: seeds(1.0, 0.1), 56: seeds(3.0, 0.1), 110: seeds(6.0, 0.1)},
        {20: seeds(9.0, 0.1), 56: seeds(8.0, 0.1), 110: seeds(7.0, 0.1)},
        0.05,
        "not reproduced",
        "resnet's is not below plain's at depth 110 (plain-110 − resnet-110 = -1.00 points",
    ),
    "plain and resnet share only depth 20": (  # both train well there: no evidence of (3)
        {20: seeds(1.4, 0.1), 32: seeds(2.5, 0.1), 56: seeds(5.9, 0.1)},
        {20: seeds(1.3, 0.1), 44: seeds(0.7, 0.1), 110: seeds(0.2, 0.05)},
        0.05,
        "inconclusive",
        "plain and resnet share no depth ≥ 56 (shared: 20). What would settle it: train plain "
        "and resnet at one depth ≥ 56",
    ),
    "one seed at some depths": (
        {d: seeds(e, 0.2) if d != 110 else e for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "What would settle it: a second seed at plain-110 (seed=0,1)",
    ),
    "every resnet at 0.0": (  # a floor: nothing can fall below it, so nothing is refuted
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: [0.0] * 3 for d in DEPTHS},
        0.0,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: resnet-20 and resnet-56 are at the floor (0.00% and "
        "0.00%, both ≤ 1%)",
    ),
    "every resnet near the floor, rising": (  # a few mistakes' order, not the claim's
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.15, 0.2, 0.3, 0.35, 0.4), strict=True)},
        0.01,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: resnet-20 and resnet-56 are at the floor (0.15% and "
        "0.35%, both ≤ 1%)",
    ),
    "every resnet at 0.0, no power law fitted": (  # log(0): not an interval of [0, 0]
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: [0.0] * 3 for d in DEPTHS},
        0.0,
        "inconclusive",
        "error ∝ depth^k not fitted: resnet-20, resnet-32, resnet-44, resnet-56, resnet-110 at "
        "the floor)",
    ),
    "resnet rising across the floor's edge": (  # 0.45% against 0.55%: a few last mistakes
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.45, 0.5, 0.5, 0.55, 0.55), strict=True)},
        0.01,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: resnet-20 and resnet-56 are at the floor (0.45% and "
        "0.55%, both ≤ 1%)",
    ),
    "resnet falling across the floor's edge": (  # ... neither way
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.55, 0.5, 0.5, 0.45, 0.45), strict=True)},
        0.01,
        "inconclusive",
        "resnet-20 vs resnet-110 untested: resnet-20 and resnet-110 are at the floor (0.55% and "
        "0.45%, both ≤ 1%)",
    ),
    "plain's depths between the compared ones fall": (  # 20 < 56 < 110, but 32 and 44 below 20
        {
            20: seeds(2.0, 0.05),
            32: seeds(0.6, 0.05),
            44: seeds(0.6, 0.05),
            56: seeds(2.3, 0.05),
            110: seeds(80.0, 0.5),
        },  # fmt: skip
        {d: seeds(e + 3, 0.1) for d, e in PAPER_RESNET.items()},  # 2.3 above plain-20: no failure
        0.02,
        "inconclusive",
        "but out of order plain-32 − plain-20 = -1.40 points, 95% CI [-1.51, -1.29], p of the "
        "opposite = 2.2e-06: plain-32 lies below plain-20; plain-44 − plain-20",
    ),
    "a resnet depth between the compared ones rises": (  # 56 and 110 beat 20, 32 does not
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {
            20: seeds(4.3, 0.1),
            32: seeds(6.0, 0.1),
            44: seeds(3.7, 0.1),
            56: seeds(3.5, 0.1),
            110: seeds(3.2, 0.1),
        },  # fmt: skip
        0.05,
        "inconclusive",
        "resnet-20 lies below resnet-32",
    ),
    "a plain depth between the compared ones collapsed": (  # 20 < 56 < 110, but 32 above both
        {d: seeds(e, 0.2) for d, e in zip(DEPTHS, (2.0, 85.0, 3.0, 4.0, 60.0), strict=True)},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "inconclusive",
        "plain-56 lies below plain-32",
    ),
    "the deepest resnet above the middle one": (  # 56 and 110 beat 20, but 110 is worse than 56
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1) for d, e in zip(DEPTHS, (5.0, 3.0, 2.0, 1.0, 4.0), strict=True)},
        0.05,
        "inconclusive",
        "resnet-56 lies below resnet-110",
    ),
    "a resnet depth between the compared ones below the middle one": (  # 32 beats 56 and 110
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1) for d, e in zip(DEPTHS, (5.0, 1.0, 3.0, 3.0, 2.5), strict=True)},
        0.05,
        "inconclusive",
        "resnet-32 lies below resnet-56",
    ),
    "two seeds far apart": (  # neither is the odd one, but the pair is named
        {d: seeds(e, 0.2, 2) for d, e in PAPER_PLAIN.items()},
        {**{d: seeds(e + 3, 0.1, 2) for d, e in PAPER_RESNET.items()}, 56: [1.5, 20.0]},
        0.05,
        "inconclusive",
        "Seeds far from the others (kept, and named): resnet-56's two seeds (1.50 and 20.00: far "
        "apart for the arch's seed noise at its other depths, p = 9.4e-07)",
    ),
    "a shallow resnet at the floor, the deeper ones far above it": (  # no floor effect: refuted
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.05) for d, e in zip(DEPTHS, (0.4, 2.0, 4.0, 6.0, 15.0), strict=True)},
        0.01,
        "not reproduced",
        "NOT reproduced: resnet's train error does not fall with depth",
    ),
    "every resnet rising near the floor, none at it": (  # 0.51 against 0.55: no cliff at 0.5
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.005) for d, e in zip(DEPTHS, (0.51, 0.52, 0.52, 0.55, 0.56), strict=True)},
        0.002,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: resnet-20 and resnet-56 are at the floor (0.51% and "
        "0.55%, both ≤ 1%)",
    ),
    "every resnet rising by under a point from near the floor": (  # its last mistakes' order
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.6, 1.1, 1.2, 1.3, 1.4), strict=True)},
        0.01,
        "inconclusive",
        "resnet-20 vs resnet-56 untested: resnet-20 below resnet-56 by 0.70 points with "
        "resnet-20 near the floor (0.60% ≤ 1%): a reversal under 1 point there is the order of "
        "their last few mistakes",
    ),
    "plain falling, a middle depth out of order too": (  # said as more against, not "but"
        {d: seeds(e, 0.1) for d, e in zip(DEPTHS, (9.0, 4.0, 8.0, 6.0, 3.0), strict=True)},
        {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()},
        0.05,
        "not reproduced",
        "; and out of order plain-32 − plain-20 = -5.00 points",
    ),
    "a middle resnet out of order by tenths near the floor": (  # a check that stops nothing
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (2.0, 0.6, 1.5, 1.2, 0.5), strict=True)},
        0.01,
        "reproduced",
        "resnet's train error falls with depth (resnet-20 − resnet-56 = +0.80 points, 95% CI "
        "[+0.75, +0.85], p = 5.2e-07; resnet-20 − resnet-110 = +1.50 points, 95% CI [+1.45, "
        "+1.55], p = 4.2e-08; near the floor, not counted: resnet-32 below resnet-56 by 0.60 "
        "points",  # said, so that the support past it is seen
    ),
    "resnet reversed by exactly a point from near the floor": (  # 1.4 - 0.4 in floating point
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.4, 1.0, 1.2, 1.4, 1.6), strict=True)},
        0.01,
        "not reproduced",
        "NOT reproduced: resnet's train error does not fall with depth (resnet-20 − resnet-56 = "
        "-1.00 points",
    ),
    "resnet straddling the 1% line by hundredths": (  # 0.98 against 1.02: not refuted
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.01) for d, e in zip(DEPTHS, (0.98, 0.97, 0.96, 1.02, 0.96), strict=True)},
        0.005,
        "inconclusive",
        "a task the nets do not fit perfectly (fewer iterations or more training images): "
        "resnet-110, resnet-20 at the floor",  # not resnet-56, at 1.02 above it
    ),
    "resnet rising by over a point from near the floor": (  # ... while a clear rise is refuted
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.6, 1.1, 1.2, 1.7, 1.9), strict=True)},
        0.01,
        "not reproduced",
        "NOT reproduced: resnet's train error does not fall with depth (resnet-20 − resnet-56 = "
        "-1.10 points",
    ),
    "identical seeds, no run's own noise known": (  # SE 0: no test can be made, nor passed
        {d: [e] * 3 for d, e in PAPER_PLAIN.items()},
        {d: [e] * 3 for d, e in PAPER_RESNET.items()},
        NAN,
        "inconclusive",
        "plain-56 vs plain-20 untested: the seeds of plain-56's 3 (5.90%) and plain-20's 3 "
        "(1.40%) all gave the same error",
    ),
    "every resnet-110 seed at 0.0, plain-110 far above": (  # agreeing at the floor: no repeat
        {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
        {**{d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, 110: [0.0] * 3},
        0.05,
        "reproduced",
        "plain-110 − resnet-110 = +62.00 points",
    ),
    "two seeds a depth, no run's own noise known": (  # their spread alone is the SE: enough
        {d: seeds(e, 0.2, 2) for d, e in PAPER_PLAIN.items()},
        {d: seeds(e, 0.1, 2) for d, e in PAPER_RESNET.items()},
        NAN,
        "reproduced",
        "plain-56 − plain-20 = +4.50 points",
    ),
    "depth 8 is no evidence": (  # counting depth 8, resnet would rise from 8 to 20
        {8: seeds(1.0, 0.1), **{d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}},
        {8: seeds(0.1, 0.01), **{d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}},
        0.05,
        "reproduced",
        "plain 20: 1.40",
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_verdict_cases(name):
    plain, resnet, se, outcome, fragment = CASES[name]
    got = analysis.decide(summary(plain, resnet, se=se))
    assert (got.outcome, name) == (outcome, name)
    assert fragment in got.sentence
    assert got.sentence.startswith(verdict.OUTCOMES[outcome] + ": ")
    assert " 8: " not in got.sentence  # never a depth below 20


def test_runs_that_repeat_a_seed_are_named_and_not_judged():
    """Two runs of one seed (a sweep run twice into one analysis) are one draw, not two."""
    runs = summary({d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()},
                   {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, se=0.05)  # fmt: skip
    assert analysis.decide(runs).outcome == "reproduced"
    again = runs[(runs["arch"] == "plain") & (runs["depth"] == 56)].assign(run_dir="again")
    got = analysis.decide(pd.concat([runs, again.iloc[:1]], ignore_index=True))
    assert got.outcome == "undetermined"
    assert got.sentence.startswith(
        "Verdict undetermined: runs that repeat an arch, depth and seed: plain-56 seed 0 "
        "(arch=plain,depth=56,seed=0, again)."
    )


def test_no_plain_or_resnet_deep_enough_says_why():
    got = analysis.decide(summary({8: 30.0, 14: 35.0}, {8: 29.0, 14: 28.0}))
    assert got.outcome == "undetermined"
    assert "(plain at 8, 14; resnet at 8, 14). Smaller nets check the pipeline" in got.sentence


@pytest.mark.parametrize(
    "bad, shown", [(NAN, "nan"), (INF, "inf"), (-INF, "-inf"), (150.0, "150.0"), (-0.5, "-0.5")]
)
def test_a_finished_run_with_no_error_rate_makes_the_verdict_undetermined(bad, shown):
    frame = summary(PAPER_PLAIN, {**PAPER_RESNET, 56: [0.5, bad]}, se=0.05)
    got = analysis.decide(frame)
    assert got.outcome == "undetermined"
    assert f"arch=resnet,depth=56,seed=1 ({shown})" in got.sentence


def test_an_interval_on_the_wrong_side_short_of_refuting_says_so():
    """resnet-56 above resnet-20 at p = 0.02: its 95% interval excludes 0 on the wrong side, yet
    refuting takes p < 0.025 / 5 here; the part is open, and its words say why."""
    cells = [Cell("resnet", 20, 3, 10.0, 0.1), Cell("resnet", 56, 3, 10.41, 0.1)]
    part = verdict.trend_part("resnet", [*cells, Cell("resnet", 110, 3, 5.0, 0.1)], 0.025 / 5)
    step = part.tests[0]
    assert (part.state, step.state) == ("open", "open") and step.high < 0
    assert 0.025 / 5 < step.p_against < 0.025
    assert (
        f"p of the opposite = {step.p_against:.2g}, short of refuting (0.025 / the comparisons "
        "planned)" in part.reason
    )


def test_a_depth_with_an_unfinished_run_is_compared_with_nothing():
    """A failed (diverged) seed is no missing value: plain-110's two others would still rise, but
    the comparison is left untested, and the failure named."""
    frame = paper_sweep()
    frame.loc[frame.run_dir == "arch=plain,depth=110,seed=0", "status"] = "failed"
    got = analysis.decide(frame)
    assert got.outcome == "inconclusive"
    assert (
        "plain-110 vs plain-56 untested: runs that did not finish (failed, or not yet done) at "
        "plain-110 (1 of 3)" in got.sentence
    )
    assert "the runs at plain-110 finished (resume the sweep)" in got.sentence
    assert "Left out, not finished: arch=plain,depth=110,seed=0 (failed)." in got.sentence
    plain110 = next(p for p in got.points if (p["arch"], p["depth"]) == ("plain", 110))
    assert (plain110["n"], plain110["unfinished"]) == (2, 1)
    assert plain110["mean"] == pytest.approx(62.1)  # the finished seeds', shown


def test_a_depth_whose_every_run_failed_still_decides_which_depths_are_compared():
    """Every resnet-110 diverged: resnet-20/44/56 alone would show "falls" and the gap would move
    to 56; the paper's depths stay 20/56/110, and what involves resnet-110 is untested."""
    frame = paper_sweep()
    frame.loc[(frame.arch == "resnet") & (frame.depth == 110), "status"] = "failed"
    got = analysis.decide(frame)
    assert got.outcome == "inconclusive"
    resnet, gap = got.parts[1], got.parts[2]
    assert [(c.higher, c.lower) for c in resnet.tests] == [
        ("resnet-20", "resnet-56"), ("resnet-20", "resnet-110")
    ]  # fmt: skip
    assert (resnet.state, resnet.tests[1].state, gap.state) == ("untested", "untested", "untested")
    assert gap.depths == [110] and "resnet-110 (3 of 3)" in gap.reason
    assert "the runs at resnet-110 finished (resume the sweep)" in got.sentence
    assert "a second seed at" not in got.sentence  # unfinished, not one seed
    assert "resnet 20: " in got.sentence and "110: none finished." in got.sentence


def test_a_middle_depth_with_a_failed_run_leaves_the_trend_untested():
    """plain-32's failed seed might have diverged to 85%: plain 20 < 56 < 110 alone is no rise
    with depth while one depth cannot be placed, so the part is untested, never supported."""
    frame = paper_sweep()
    frame.loc[frame.run_dir == "arch=plain,depth=32,seed=1", "status"] = "failed"
    got = analysis.decide(frame)
    plain = got.parts[0]
    assert [t.state for t in plain.tests] == ["supported", "supported"]
    assert (plain.state, got.outcome) == ("untested", "inconclusive")
    assert [c.state for c in plain.checks[:2]] == ["untested", "not out of order"]
    assert (
        "but unchecked plain-32 vs plain-20: runs that did not finish (failed, or not yet done) "
        "at plain-32 (1 of 3)" in plain.reason
    )
    assert "the runs at plain-32 finished (resume the sweep)" in got.sentence
    assert plain.fit_depths == [20, 44, 56, 110]  # k: on the depths whose runs all finished


def test_a_check_at_the_floor_does_not_stop_a_trend():
    """resnet-56 against resnet-110 at 0.5% and 0.2%: the order of a few last mistakes, neither
    evidence for the trend nor against it; both deeper nets beat resnet-20, so it is supported."""
    resnet = {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}
    got = analysis.decide(summary({d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}, resnet, 0.05))
    part = got.parts[1]
    (last,) = [c for c in part.checks if (c.higher, c.lower) == ("resnet-56", "resnet-110")]
    assert (last.state, last.at_floor) == ("untested", True)
    assert last.difference == pytest.approx(0.3) and last.p < 0.025  # its numbers, kept
    assert part.state == "supported" and got.outcome == "reproduced"


def test_a_plain_net_the_resnet_check_cannot_use_asks_for_nothing_more():
    """plain-20 of one seed, plain at two depths: FAILED_ANCHOR's test cannot be made, but
    resnet-20 is nowhere near far above plain-20's one value, so resnet's trend is judged, and
    nothing asks for a second plain-20 seed for it."""
    plain = {20: [1.4], 110: seeds(62.0, 0.2)}
    got = analysis.decide(summary(plain, {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, 0.05))
    assert got.parts[1].state == "supported"
    assert "a second seed at plain-20" not in got.sentence
    (cross,) = [c for c in got.parts[1].checks if c.higher == "plain-20"]
    assert cross.state == "not out of order"  # resnet-20's 1.3 is no failed run beside 1.4
    assert cross.reason.endswith("untested (one seed at plain-20)")
    assert not verdict.unplaced(cross)


def test_an_arch_with_no_finished_run_names_its_runs():
    """Every resnet failed: the depths are there, the runs are not; named, with what to do, and
    plain's trend judged all the same."""
    frame = summary(PAPER_PLAIN, PAPER_RESNET, se=0.05)
    frame.loc[frame.arch == "resnet", "status"] = [
        "failed",
        "failed",
        "running",
        "failed",
        "failed",
    ]
    got = analysis.decide(frame)
    assert got.outcome == "inconclusive"
    assert [p.state for p in got.parts] == ["untested", "untested", "untested"]  # one seed each
    assert "Left out, not finished: arch=resnet,depth=20,seed=0 (failed), " in got.sentence
    assert "resnet-20 vs resnet-56 untested: runs that did not finish" in got.sentence
    assert "(resume the sweep)" in got.sentence and "Smaller nets" not in got.sentence
    frame.loc[frame.arch == "plain", "status"] = "failed"  # nothing finished at all: named
    got = analysis.decide(frame)
    assert got.outcome == "undetermined"
    assert got.sentence.startswith(
        "Verdict undetermined: no plain or resnet run at depths 20–110 finished: "
        "arch=plain,depth=20,seed=0 (failed)"
    )
    assert "Resume the sweep" in got.sentence and "Smaller nets" not in got.sentence


def test_k_is_fitted_only_on_three_depths_whose_runs_all_finished():
    frame = paper_sweep()
    frame.loc[(frame.arch == "plain") & (frame.depth.isin([32, 44, 110])), "status"] = "failed"
    plain = analysis.decide(frame).parts[0]
    assert math.isnan(plain.estimate)  # two depths left: no line with an interval
    assert "not fitted: fewer than 3 depths whose runs all finished" in plain.reason
    frame.loc[(frame.arch == "plain") & (frame.depth == 32), "status"] = "done"
    plain = analysis.decide(frame).parts[0]
    assert math.isfinite(plain.low) and plain.low < plain.estimate < plain.high


def test_comparisons_at_the_floor_ask_for_a_task_not_fitted_perfectly_naming_both_sides():
    resnet = {d: seeds(e, 0.02) for d, e in zip(DEPTHS, (0.45, 0.5, 0.5, 0.55, 0.6), strict=True)}
    got = analysis.decide(summary({d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}, resnet))
    assert got.outcome == "inconclusive"
    assert (
        "a task the nets do not fit perfectly (fewer iterations or more training images): "
        "resnet-110, resnet-20, resnet-56 at the floor" in got.sentence
    )


def test_an_outlier_seed_is_named_with_two_depths_too():
    """The noise it is judged by is pooled with the arch's other depth, not its own depth's SD,
    which the outlier inflates."""
    resnet = {20: [5.0, 5.1, 30.0], 56: [3.0, 3.1, 3.2]}
    got = analysis.decide(summary({20: seeds(2.0, 0.1), 56: seeds(6.0, 0.1)}, resnet))
    (far,) = got.outliers  # verdict.json keeps the test's numbers, and its words
    # p: the larger of the points' (2.1e-06) and the log scale's
    assert far["said"] == "resnet-20 seed 2 (30.00; the others 5.00, 5.10; p = 8.6e-06)"
    assert far["p_points"] == pytest.approx(2.1e-06, rel=0.05) and far["p"] == far["p_log"]
    assert (far["arch"], far["depth"], far["seed"], far["test"]) == ("resnet", 20, 2, "t")
    assert far["values"] == [5.0, 5.1, 30.0] and far["p"] < far["level"]
    # pooled over resnet-56's three and resnet-20's other two (SD 0.09, 3 dof), never below the
    # runs' own window noise (se 0.2)
    assert far["dof"] == 3 and far["noise_sd"] == pytest.approx(0.2)


def test_mixed_options_make_the_verdict_undetermined():
    frame = summary(PAPER_PLAIN, PAPER_RESNET, se=0.05)
    frame.insert(1, "schedule.iterations", ["6000"] * 5 + ["5000"] * 5)
    frame["variant"] = frame["arch"] + " (schedule.iterations=" + frame["schedule.iterations"] + ")"
    got = analysis.decide(frame)
    assert got.outcome == "undetermined"
    assert "differ in schedule.iterations, not only in their arch" in got.sentence


def test_each_comparison_is_a_one_sided_welch_test_kept_as_data():
    """plain-56 vs plain-20 by hand: the difference of the means, the SE from the two seed SEs,
    Welch-Satterthwaite's dof, Student's t; every number in verdict.json."""
    plain = {20: [1.2, 1.4, 1.9], 32: seeds(2.5, 0.2), 44: seeds(4.0, 0.2), 56: [5.0, 6.1, 6.6],
             110: seeds(62.0, 2.0)}  # fmt: skip
    got = analysis.decide(summary(plain, {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, 0.05))
    assert [p.name for p in got.parts] == ["plain trend", "resnet trend", "resnet below plain"]
    first = got.parts[0].tests[0]
    assert (first.higher, first.lower) == ("plain-56", "plain-20")
    a, b = np.var([5.0, 6.1, 6.6], ddof=1) / 3, np.var([1.2, 1.4, 1.9], ddof=1) / 3
    dof = (a + b) ** 2 / (a**2 / 2 + b**2 / 2)
    t = (np.mean([5.0, 6.1, 6.6]) - np.mean([1.2, 1.4, 1.9])) / math.sqrt(a + b)
    assert first.se == pytest.approx(math.sqrt(a + b)) and first.dof == pytest.approx(dof)
    assert first.p == pytest.approx(stats.t.sf(t, dof))
    assert first.high - first.difference == pytest.approx(stats.t.ppf(0.975, dof) * first.se)
    assert first.state == "supported" and got.parts[0].state == "supported"
    gap = got.parts[2]
    assert gap.depths == [110] and gap.estimate == pytest.approx(62.0 - 0.2)
    data = got.to_dict()
    assert data["alpha"] == 0.025 and data["parts"][0]["tests"][0]["p"] == pytest.approx(first.p)
    assert {"higher", "lower", "difference", "se", "dof", "low", "high", "p", "p_against"} <= set(
        data["parts"][1]["tests"][0]
    )
    # what refuting took, each check's own state (never "supported": checks decide no part),
    # and the depths each k was fitted on
    assert (data["planned"], data["refute_alpha"]) == (5, pytest.approx(0.025 / 5))
    states = {c["state"] for p in data["parts"] for c in p["checks"]}
    assert states <= {"out of order", "not out of order", "untested"} and states
    assert [p["fit_depths"] for p in data["parts"]] == [list(DEPTHS), [], []]  # resnet: floor


def test_refuting_takes_bonferroni_over_the_comparisons():
    """A fall of resnet that is significant at 2.5% one-sided but not at 2.5% / 5 leaves the
    part open, not refuted: 'NOT reproduced' is said of a true claim at most 2.5% of the time."""
    plain = {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}
    cells = [verdict.Cell("plain", d, 3, float(np.mean(v)), 0.1) for d, v in plain.items()]
    # resnet-20 below resnet-56 by 2.9 SEs (t with 4 dof: p ≈ 0.022 against the claim)
    resnet = {20: 2.0, 32: 2.0, 44: 2.0, 56: 2.0 + 2.9 * 0.1 * math.sqrt(2), 110: 1.5}
    cells += [verdict.Cell("resnet", d, 3, m, 0.1) for d, m in resnet.items()]
    parts = verdict.judge_cells(cells)
    first = parts[1].tests[0]
    assert verdict.ALPHA / 5 < first.p_against < verdict.ALPHA
    assert first.state == "open" and parts[1].state == "open"
    assert verdict.outcome_of(parts) == "inconclusive"


def test_power_law_is_an_unweighted_fit_with_t_on_depths_minus_two():
    depths = np.array(DEPTHS, dtype=float)
    zigzag = 2 * depths**1.5 * np.array([1, 1.2, 0.9, 1.1, 1])
    cells = [
        verdict.Cell("plain", int(d), 3, float(m), 0.1) for d, m in zip(depths, zigzag, strict=True)
    ]
    k, low, high = verdict.power_law(cells)
    x, y = np.log(depths), np.log(zigzag)
    slope, intercept = np.polyfit(x, y, 1)
    scatter = math.sqrt(np.sum((y - intercept - slope * x) ** 2) / 3)
    se = scatter / math.sqrt(((x - x.mean()) ** 2).sum())
    assert k == pytest.approx(slope) and high - k == pytest.approx(stats.t.ppf(0.975, 3) * se)
    assert low < 1.5 < high


def test_k_interval_is_never_narrower_than_the_means_own_noise():
    """Means that lie on a line (here flat, every depth's seeds at 8/10/12) leave no residual:
    the interval comes from their SEs instead, not a zero-width "95% CI"."""
    cells = [verdict.Cell("plain", d, 3, 10.0, 2 / math.sqrt(3)) for d in DEPTHS]
    k, low, high = verdict.power_law(cells)
    x = np.log(DEPTHS)
    half = stats.t.ppf(0.975, 3) * (2 / math.sqrt(3) / 10) / math.sqrt(((x - x.mean()) ** 2).sum())
    assert k == pytest.approx(0, abs=1e-12)
    assert (low, high) == pytest.approx((-half, half))


def test_short_schedules_are_said():
    plain = {d: seeds(e, 0.2) for d, e in PAPER_PLAIN.items()}
    frame = summary(plain, {d: [e] * 3 for d, e in FLAT.items()}, se=0.05)
    frame["iterations"] = 6000
    got = analysis.decide(frame)
    assert got.iterations == 6000
    assert "These runs trained 6,000 iterations, the paper 64,000" in got.sentence
    frame = summary(plain, {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, se=0.05)
    frame["iterations"] = 6000
    got = analysis.decide(frame)
    assert got.outcome == "reproduced"
    assert "Shown on 6,000 iterations a run (the paper: 64,000)." in got.sentence
    frame["iterations"] = 64000
    assert "iterations a run" not in analysis.decide(frame).sentence
    frame["iterations"] = 96000
    assert "These runs trained 96,000 iterations, longer than the paper's 64,000" in (
        analysis.decide(frame).sentence
    )
    rising = {d: seeds(1.0 + d / 50, 0.1) for d in DEPTHS}  # deeper resnets still behind
    frame = summary(plain, rising, se=0.05)
    frame["iterations"] = 6000
    got = analysis.decide(frame)
    assert got.outcome == "not reproduced"
    assert "These runs trained 6,000 iterations, the paper 64,000" in got.sentence
    assert "deeper ResNets catch up late in training, so what is open or refuted here may hold" in (
        got.sentence
    )
    falling = {d: seeds(8.0 - d / 20, 0.1) for d in DEPTHS}  # plain refuted, resnet supported
    frame = summary(falling, {d: seeds(e, 0.1) for d, e in PAPER_RESNET.items()}, se=0.05)
    frame["iterations"] = 6000
    got = analysis.decide(frame)
    assert got.outcome == "not reproduced" and got.parts[1].state == "supported"
    assert "the paper 64,000: what is open or refuted here may hold" in got.sentence
    frame["iterations"] = NAN
    got = analysis.decide(frame)
    assert got.iterations is None
    assert "The runs' schedule is not recorded: whether they trained the paper's 64,000" in (
        got.sentence
    )


def test_seed_se_is_floored_by_each_runs_own_noise():
    assert verdict.seed_se([5.0, 5.0, 5.0], [0.3, 0.3, 0.3]) == pytest.approx(0.3 / math.sqrt(3))
    assert verdict.seed_se([4.0, 5.0, 6.0], [0.1] * 3) == pytest.approx(1 / math.sqrt(3))
    assert verdict.seed_se([5.0], [0.25]) == 0.25
    assert math.isnan(verdict.seed_se([5.0], [NAN]))
    assert verdict.seed_se([4.0, 6.0], [NAN, NAN]) == pytest.approx(1.0)  # spread alone


@pytest.fixture(scope="module")
def one_configuration(cifar_root, tmp_path_factory):
    """A real plain and a real resnet run of depth 20 under one config."""
    same = tmp_path_factory.mktemp("same")
    for arch in ("plain", "resnet"):
        train_tiny(same / f"arch={arch}", cifar_root, f"arch={arch}", "depth=20")
    return same


def test_plain_and_resnet_of_one_configuration_on_real_run_directories(one_configuration):
    """Compared, though the resnet's warm-up (what its arch file sets) is not the plain's."""
    got = analysis.decide(analysis.summarize(*analysis.load_sweep(one_configuration)))
    assert got.outcome == "inconclusive"  # one depth each: only the configs are checked here
    assert "train plain at ≥ 3 depths" in got.sentence


def _set_in_run_json(run_dir, **values):
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(info | values))


@pytest.mark.parametrize(
    "resnet, change, named",
    [
        (["schedule.iterations=5"], None, "schedule.iterations"),
        # as on a GPU: trained through the CUDA graph (run.json's resolved value; was a crash)
        ([], lambda d: _set_in_run_json(d, cuda_graph=True), "cuda_graph"),
        ([], lambda d: _set_in_run_json(d, precision="bf16-mixed"), "trainer.precision"),
        # a warm-up that is not what the resnet arch sets (the exemption is for its own value)
        (["schedule.warmup.from_depth=20"], None, "schedule.warmup.from_depth"),
        # a run whose options are unknown is compared with nothing
        ([], lambda d: (d / "config.yaml").unlink(), "config.yaml (missing in some"),
    ],
)
def test_plain_and_resnet_of_two_configurations_on_real_run_directories(
    one_configuration, cifar_root, tmp_path, resnet, change, named
):
    mixed = tmp_path / "mixed"
    shutil.copytree(one_configuration / "arch=plain", mixed / "arch=plain")
    if resnet:
        train_tiny(mixed / "arch=resnet", cifar_root, "arch=resnet", "depth=20", *resnet)
    else:
        shutil.copytree(one_configuration / "arch=resnet", mixed / "arch=resnet")
    if change:
        change(mixed / "arch=resnet")
    got = analysis.decide(analysis.summarize(*analysis.load_sweep(mixed)))
    assert got.outcome == "undetermined"
    assert f"differ in {named}" in got.sentence
    assert "not only in their arch" in got.sentence


def paper_like(n: int = 3) -> tuple[dict, dict]:
    """The paper's numbers, n seeds each (plain 0.2 apart, resnet 0.1)."""
    plain = {d: seeds(e, 0.2, n) for d, e in PAPER_PLAIN.items()}
    return plain, {d: seeds(e, 0.1, n) for d, e in PAPER_RESNET.items()}


def test_two_nets_at_chance_are_not_ordered():
    """plain-56 and plain-110 both collapsed to guessing (~90% on ten classes): 0.4 points
    between them is which class each guesses, not "plain does not rise"; untested, named, and
    the fix suggested."""
    plain, resnet = paper_like()
    plain |= {56: [90.2, 90.25, 90.3], 110: [89.8, 89.85, 89.9]}
    got = analysis.decide(summary(plain, resnet, se=0.02))
    assert (got.outcome, got.parts[0].state) == ("inconclusive", "untested")
    (step,) = [c for c in got.parts[0].tests if c.higher == "plain-110"]
    assert step.state == "untested" and step.reason.startswith(verdict.AT_CHANCE)
    assert step.p_against < 0.001  # the numbers kept: as a test it would have refuted
    assert "a recipe that trains plain-56, plain-110 above chance" in got.sentence
    assert "At chance (at or above 85%, a net that learned nothing errs on 90%" in got.sentence
    assert "plain-56 (90.2%), plain-110 (89.9%)" in got.sentence


def test_one_net_at_chance_refutes_nothing():
    """resnet-110 at chance (no warm-up, say) against a resnet-20 and a plain-110 that trained:
    a run that did not train, named, with the fix; not "NOT reproduced" on two parts. The same
    for a plain-20 at chance below a plain-56 that trained."""
    plain, resnet = paper_like()
    resnet[110] = [89.6, 90.0, 90.4]
    got = analysis.decide(summary(plain, resnet, se=0.05))
    assert got.outcome == "inconclusive", got.sentence
    assert [p.state for p in got.parts] == ["supported", "untested", "untested"]
    for part in got.parts[1:]:
        (lone,) = [c for c in part.tests if c.lower == "resnet-110"]
        assert lone.reason.startswith(verdict.LONE_AT_CHANCE) and lone.p_against < 1e-4
    assert "a recipe that trains resnet-110 above chance" in got.sentence
    assert "resnet-110 (90.0%)" in got.sentence

    plain, resnet = paper_like()
    plain[20] = [89.6, 90.0, 90.4]
    got = analysis.decide(summary(plain, resnet, se=0.05))
    assert got.outcome == "inconclusive" and got.parts[0].state == "untested", got.sentence
    assert "a recipe that trains plain-20 above chance" in got.sentence


def test_a_net_at_chance_still_supports_and_99_percent_is_at_chance():
    """plain-110 at chance above plain-56 is the claim (110 barely trains); and a net at 99%,
    worse than guessing, learned no more than one at 90%."""
    plain, resnet = paper_like()
    plain[110] = [98.9, 99.0, 99.1]
    got = analysis.decide(summary(plain, resnet, se=0.05))
    assert got.outcome == "reproduced", got.sentence
    assert "At chance (at or above 85%" in got.sentence and "plain-110 (99.0%)" in got.sentence


def test_depths_beyond_110_are_shown_not_judged():
    """plain-164 within noise of plain-110 (both barely train) is a plateau beyond the paper's
    range: the claim is judged on 20-110, as the paper's, and the deeper nets are named."""
    plain, resnet = paper_like()
    plain[164], resnet[164] = [60.6, 60.7, 60.8], [0.3, 0.4, 0.5]
    got = analysis.decide(summary(plain, resnet, se=0.05))
    assert got.outcome == "reproduced", got.sentence
    assert [c.higher for c in got.parts[0].tests] == ["plain-56", "plain-110"]
    assert got.parts[2].depths == [110]
    assert "Not judged, beyond the paper's deepest (110): plain-164, resnet-164" in got.sentence
    assert all(p["depth"] <= 110 for p in got.points)


def test_chance_follows_the_runs_classes():
    """On two classes a net that learned nothing errs 50% of the time: that is the ceiling there
    (the column run.json records), and 50% on ten classes is no ceiling."""
    plain, resnet = paper_like()
    plain |= {56: [50.2, 50.25, 50.3], 110: [49.8, 49.85, 49.9]}
    frame = summary(plain, resnet, se=0.02)
    frame["classes"] = 2
    two = analysis.decide(frame)
    assert two.parts[0].tests[1].reason.startswith(verdict.AT_CHANCE)
    ten = analysis.decide(summary(plain, resnet, se=0.02))
    assert (ten.outcome, ten.parts[0].tests[1].state) == ("not reproduced", "refuted")


def test_seeds_that_agree_at_chance_are_not_called_one_draw():
    """Seeds that all guess one class agree to the digit: no sign of a seed that does not reach
    the runs, and plain-110 at chance above plain-56 is the paper's degradation, named."""
    plain, resnet = paper_like()
    got = analysis.decide(summary(plain | {110: [90.0] * 3}, resnet, se=0.02))
    assert got.outcome == "reproduced"
    assert verdict.SAME_SEEDS not in got.sentence
    assert "did it train at all?): plain-110 (90.0%)." in got.sentence
    both = analysis.decide(summary(plain | {56: [30.0] * 3, 110: [90.0] * 3}, resnet, se=0.02))
    assert "seeds that differ at plain-56, whose seeds" in both.sentence  # not plain-110


def test_a_failed_resnet_20_without_a_plain_20_to_check_it_carries_nothing():
    """resnet 80/2/2/2/2 where plain-20 was not trained, or has one seed: whether resnet-20
    failed cannot be checked, so resnet's fall is untested (not supported), saying what would
    check it."""
    plain, _ = paper_like()
    failed = {d: seeds(e, 0.2) for d, e in zip(DEPTHS, [80, 2, 2, 2, 2], strict=True)}
    untrained = analysis.decide(summary({d: e for d, e in plain.items() if d != 20}, failed))
    assert untrained.parts[1].state == "untested"
    assert "plain was not trained at depth 20 (a failed resnet-20 would carry" in untrained.sentence
    assert "plain-20 (≥ 2 seeds), to check that resnet-20 trained" in untrained.sentence
    one = analysis.decide(summary(plain | {20: [1.4]}, failed))
    assert one.parts[1].state == "untested"
    assert "a second seed at plain-20" in one.sentence


def test_a_shallowest_resnet_at_chance_carries_nothing_beside_a_plain_net_at_chance():
    """Both 20-layer nets guessing: the cross-arch check cannot tell resnet-20 failed, but a fall
    from a net at chance is no evidence; resnet's trend is not supported."""
    plain, _ = paper_like()
    resnet = {d: seeds(e, 0.1) for d, e in zip(DEPTHS, [90, 2, 2, 2, 2], strict=True)}
    got = analysis.decide(summary(plain | {20: seeds(89.5, 0.1)}, resnet))
    assert got.parts[1].state == "untested"
    (cross,) = [c for c in got.parts[1].checks if c.higher == "plain-20"]
    assert cross.reason.startswith(verdict.AT_CHANCE)


def test_runs_of_different_lengths_are_judged_on_the_shortest():
    """A table whose resnet runs trained 2,000 iterations, plain's 64,000: the schedule said is
    the shortest, and the difference is said."""
    frame = summary(*paper_like(), se=0.05)
    frame["iterations"] = [64_000 if a == "plain" else 2_000 for a in frame.arch]
    got = analysis.decide(frame)
    assert got.iterations == 2_000
    assert "Shown on 2,000 iterations a run (the paper: 64,000)." in got.sentence
    assert "The finished runs differ in length, 2,000 to 64,000 iterations" in got.sentence


def test_a_comparison_left_untested_by_an_unfinished_run_keeps_its_numbers():
    """plain-110's third seed still running: the comparison is untested, but verdict.json keeps
    the test on the two finished seeds."""
    frame = summary(*paper_like(), se=0.05)
    frame.loc[frame.run_dir == "arch=plain,depth=110,seed=2", "status"] = "running"
    got = analysis.decide(frame)
    (step,) = [c for c in got.parts[0].tests if c.higher == "plain-110"]
    assert step.state == "untested" and step.reason.startswith("runs that did not finish")
    assert step.difference == pytest.approx(62.0 - 0.1 - 5.9)  # seeds 61.8 and 62.0 against 5.9
    assert step.p < 0.01  # Hsu's 1 degree of freedom: 2 seeds against 3
