"""The verdict: the paper's claim (He et al. 2016, Fig. 6) judged by the paper's own comparisons.

The claim, as the project states it: on one recipe, (1) plain nets' training error rises with
depth, (2) ResNets' falls with depth, (3) at the deepest depth both were trained at, which must be
>= DEEP_DEPTH, the ResNet's is below the plain net's.

Why comparisons of depths, not a fitted trend. A power law fitted to the depth means (the earlier
verdict) is carried by its most extreme point: a flat plain 20-56 with a collapsed plain-110 came
out "rising" in 96-99.7% of draws, and weights taken from SEs that two seeds estimate swing ~100x,
so its nominal 2.5% false rate was 6-7% at two seeds. A rank trend test (Jonckheere-Terpstra)
needs no SE but still lets one collapsed depth weigh in every pair it is part of (a flat 20-56
and a collapsed 110 are in order in all of 110's pairs) and with two seeds at three depths it
cannot reach 2.5% unless every seed is in order. So each part is the paper's own comparisons,
each a one-sided Welch t-test of two depths' mean final training errors, combined as an
intersection-union test (IUT): a part is supported only when every one of its comparisons is.

- (1) plain rises: plain-m > plain-s and plain-d > plain-m, with s the shallowest depth >=
  MIN_DEPTH, d the deepest (>= DEEP_DEPTH) and m the deepest between them (the paper's 20, 56,
  110). Each step must rise on its own, so no single depth, collapsed or not, carries the part.
- (2) resnet falls: resnet-m < resnet-s and resnet-d < resnet-s: both deeper nets beat the
  shallow one (the paper's claim; its ResNet-56 and -110 are within noise of each other).
- (3) resnet-D < plain-D at the deepest depth D >= DEEP_DEPTH that both were trained at.
- The other orders decide no part, but can stop one: a trend whose comparisons are all
  supported is only open where a depth lies out of order at one-sided p < ALPHA (`checks`): a
  depth c between s and m (the paper's 32 and 44) outside the two (plain-c below plain-s or above
  plain-m, resnet-c above resnet-s or below resnet-m), or resnet-d above resnet-m (plain-d above
  plain-m is a comparison). The error does not then rise (fall) with depth, whatever the anchors
  say: plain 2/85/3/4/60 or resnet 5/3/2/1/4 at 20-110 are no trend (the sentence says to look
  at those runs before adding seeds). One more check is across archs: resnet-s far above
  plain-s (`FAILED_ANCHOR`: resnet 80/2/2/2/2 is one failed depth, not a fall); where its test
  cannot be made, a resnet-s not far above plain-s's mean, nor at chance, passes it. A check
  that cannot be made (a depth with one seed, a run that did not finish, plain not trained at
  resnet's shallowest depth) leaves the part untested, never supported: the depth it cannot
  place might be the 85, the resnet-s it cannot check the 80. Only ever withholding support,
  these checks cannot raise a false rate.

Each comparison's difference is in points, its SE sqrt(SE_a^2 + SE_b^2) from the two means' SEs
(`seed_se`: over seeds, never below the runs' own noise), with Welch-Satterthwaite's degrees of
freedom where both have as many seeds and Hsu's (the fewer seeds - 1) where not; it needs >= 2
seeds on both sides (with one, the seed-to-seed noise is unknown, and the runs' own window noise
alone made a true gap of 0 "significant" either way 90% of the time), and every run of both
finished: a depth with a failed (diverged) or unfinished run is compared with nothing, since its
finished seeds alone would hide the failure (and the depth is still chosen as the paper's depths
are, from all the runs at depths MIN_DEPTH to MAX_DEPTH, so that dropping it cannot move a
comparison).

- Supported: the one-sided p of the claim is below ALPHA (its 95% interval lies on the claim's
  side). The IUT needs no correction: a part, and "reproduced", are falsely supported at most
  ALPHA of the time with equal seed noise, and up to ~3.2% with two or three seeds a side and
  one side's seed SD 6-20x the other's, where Welch's degrees of freedom are too many (measured:
  `analysis.calibration`, tests/test_calibration.py, results/verdict_calibration/); with unequal
  seed counts Welch's reached 4.3% (2 seeds against 3, the two-seed side 6x noisier), hence
  Hsu's there.
- Refuted: the one-sided p of the opposite is below ALPHA / K, K the comparisons planned (two
  per arch with enough depths, plus the gap; Bonferroni, counted before any is tested), so "NOT
  reproduced" is said of a true claim at most ALPHA of the time with equal seed noise, however
  many are made; with the deep depths' seeds 20x noisier, Welch's test at ALPHA / K rejects up to
  twice too often and it reached 3.3-3.5% at two seeds (results/verdict_calibration/, "flat at
  20%"; tests/test_calibration.py bounds it).
- Untested: too few depths or seeds, a run that did not finish, seeds that all gave the same
  error above the floor and below chance (one draw repeated, not noise: a seed that does not
  reach the runs; at the floor, 0.0 three times is every seed fitting every image, at chance
  every seed guessing one class), or a floor effect:
  where both sides are at or near the floor (error <= NEAR_FLOOR), their order is that of a few
  last mistakes, so the comparison is neither supported nor refuted (a floor-bound check does
  not stop a part: the order of two nets that both fit 99% of their images is no trend). One
  side near the floor and the other above it is tested, but a reversal there refutes (or puts a
  check out of order) only from NEAR_FLOOR points up: a shallow ResNet at 0.4% and a deep one at
  6% is a clear refutation, 0.98 against 1.02 is the order of their last mistakes, untested at
  the floor. A significant difference in the claim's direction is support as anywhere (1.3
  against 0.5): a floor can keep a deeper net from falling further, it cannot make it fall.
  Likewise at the ceiling: both sides at chance (`CHANCE_MARGIN`), two nets that learned
  nothing, whose order is which class each guesses; and one side at chance where the test would
  refute: a run that did not train refutes nothing (it can support: plain-110 barely trains).
- A part is refuted if any comparison is, supported if all are, untested if any is untested, else
  open. Any part refuted: "NOT reproduced"; all supported: "Degradation reproduced"; else
  "Inconclusive", saying what would settle it.

The exponent k of error ∝ depth^k is kept as the effect size of (1) and (2): an unweighted fit of
log(mean) on log(depth) over the arch's depths, with Student's t on depths - 2 degrees of freedom
(the residual scatter floored by the means' SEs); it describes, it decides nothing, and is not
estimated where a mean is at the floor (its log is then the count of a few last mistakes, or
minus infinity). "Undetermined" where the input cannot be judged: a finished run whose training
error is NaN, infinite or outside 0-100, plain and resnet runs whose configs differ in more than
the arch (`mixed_options`, found by `analysis.load_sweep`), runs that repeat an arch, depth and
seed (copies of one draw would pass for seeds that agree), or no finished plain or resnet run at
depths MIN_DEPTH to MAX_DEPTH at all; with one arch's runs only, its part is judged and the
others say what they lack. The sentence says when the schedule was shorter than the paper's (the
shortest run's, saying so where runs differ), names the depths at chance (did they train at
all?), the depths beyond MAX_DEPTH it does not judge, seeds far from their depth's others, and a
depth's two seeds far apart (`outliers`: each tested against the arch's pooled seed noise,
in points and on a log scale, Bonferroni over the sweep). A significant rise or fall counts
whatever its size (the IUT has no minimum effect): plain 2.0/2.1/2.0/2.2/85 with a true 0.2-point
rise from 20 to 56 is "rises" when the seeds resolve 0.2 points; k and the comparisons'
intervals say how large it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.special import stdtr, stdtrit  # Student's t CDF and quantile: fast for Monte Carlo

from depthsweep.analysis import outliers
from depthsweep.files import plain_data
from depthsweep.paper import CIFAR_CLASSES, PAPER_ITERATIONS

# The claim is about depths 20 to 110; depth 8 is a smoke-test size, no evidence. Deeper nets
# (164, 1202) are shown in the figures but not judged: with them as the deepest anchor the
# paper's 20 < 56 < 110 would go untested, and plain-164 within noise of a plain-110 that barely
# trains refuted "plain rises" on a plateau beyond the paper's range.
MIN_DEPTH = 20
MAX_DEPTH = 110
MIN_DEPTHS = 3  # depths >= MIN_DEPTH an arch needs for its trend to be tested
DEEP_DEPTH = 56  # ... the deepest of them at least this deep
ALPHA = 0.025  # one-sided: a comparison is supported at p < ALPHA
ARCHS = ("plain", "resnet")
# An error (%) at or below this is at the floor: one mistake in two hundred images, where a
# shallower net has left a deeper one next to nothing to improve on, and the order of two nets is
# that of their last few mistakes on images augmentation makes ambiguous, not of how well they
# train (0.15% against 0.35%, with small SEs, would otherwise refute "resnet falls"); k is not
# fitted through such a mean. A comparison is left untested where both sides are at or near the
# floor (<= NEAR_FLOOR): a net at 0.51% against one at 0.55% is no evidence either way; on the
# CPU Figure 6 the lowest error is resnet-56's 13%.
FLOOR_ERROR = 0.5
NEAR_FLOOR = 2 * FLOOR_ERROR
# The ceiling: a net within this many points of the chance-level error (90% on ten classes) has
# learned next to nothing; it guesses one class, so its error is that class's share of the
# images (88.5-91% on the first 2,000 CIFAR-10 images, whichever class), and its seeds can agree
# to the digit. Two such nets' order is which class each guesses, not depth's: plain 1.4/2.5/4.0
# at 20-44 and 90.2/89.9 at 56/110 refuted "plain rises" on 0.4 points at chance, where plain-56
# and plain-110 are both nets that did not train. A comparison with both sides there is untested.
# Nor does one net at chance refute a comparison with one that trained (resnet-110 at 90% against
# resnet-20 at 18% is a run that did not train at all, which the paper's recipe trains with its
# warm-up: a failure to look at, not depth's order); it can still support one (plain-110 at
# chance above plain-56 is the claim: 110 barely trains), and FAILED_ANCHOR keeps a shallowest
# ResNet at chance from carrying resnet's fall. "At or above": 99% is no better a net than 90%.
CHANCE_MARGIN = 5.0
AT_CHANCE = "both at chance"  # how such a comparison's reason starts
LONE_AT_CHANCE = "at chance"  # ... and one with a single side there that would refute

# An SE below this (points) is no noise estimate: equal seeds give 1e-17 by rounding, not 0, and
# one image in 2,000 is 0.05 points.
NO_NOISE = 1e-9

# Why resnet's trend checks its shallowest net against the plain one of that depth: there a
# shortcut costs nothing (the two train alike at 20 layers), so a shallowest ResNet far worse is
# a run that failed to train, and a fall from it is one failed depth carrying the trend (resnet
# 80/2/2/2/2 at 20-110 was "falls" in 96% of draws). Far: above plain's error at p < ALPHA, more
# than FAILED_RATIO times it and by more than FAILED_MARGIN points, so that a ResNet-20 a few
# points above its plain-20 (a recipe may favour plain nets at 20 layers; near the floor any
# ratio is large) stops nothing. Where the test cannot be made (a plain-20 of one seed, or not
# finished), a ResNet-20 neither that far above plain-20's mean nor at chance passes (a failure's
# gap shows without a test); otherwise, and where plain was not trained at that depth, the check
# is left undone and the trend untested: the ResNet-20 it cannot check might be the 80.
FAILED_RATIO = 2.0
FAILED_MARGIN = 10.0
FAILED_ANCHOR = (
    "the shallowest ResNet trained worse than the plain net of its depth, where a shortcut costs "
    "nothing: a fall from it is a failed run's, not depth's"
)

# Why a comparison with a depth of one seed is untested, said once in a verdict that has one.
ONE_SEED = (
    "With one seed a depth's seed-to-seed noise is unknown, and the run's own window-to-window "
    "noise leaves it out, so no comparison with such a depth is tested."
)

SAME_SEEDS = "the seeds of"  # how an untested comparison's reason starts where seeds all agreed

OUTCOMES = {
    "reproduced": "Degradation reproduced",
    "not reproduced": "NOT reproduced",
    "inconclusive": "Inconclusive",
    "undetermined": "Verdict undetermined",
}


@dataclass(frozen=True)
class Cell:
    """The final training errors of one (arch, depth): their mean and its SE over n seeds."""

    arch: str
    depth: int
    n: int  # finished seeds (their mean and SE; NaN with none)
    mean: float
    se: float
    unfinished: int = 0  # runs of this arch and depth that did not finish: failed or unfinished
    sd: float = math.nan  # the seeds' SD (0: they all gave the same error; NaN: unknown)
    chance: float = 100 * (1 - 1 / CIFAR_CLASSES)  # the error of a net that learned nothing

    @property
    def at_chance(self) -> bool:
        """At or above CHANCE_MARGIN points below the chance-level error: a net that did not
        train."""
        return self.mean >= self.chance - CHANCE_MARGIN

    @property
    def label(self) -> str:
        return f"{self.arch}-{self.depth}"


@dataclass
class Comparison:
    """One of the paper's comparisons: `higher`'s error above `lower`'s, as the claim says."""

    higher: str  # the (arch-depth) whose error the claim puts above the other's
    lower: str
    # "supported", "refuted", "open", "untested"; a trend's check: "out of order" (p_against <
    # ALPHA), "not out of order" or "untested"
    state: str
    difference: float = math.nan  # higher's mean - lower's mean, points: > 0 is the claim
    se: float = math.nan
    dof: float = math.nan
    low: float = math.nan  # 95% interval of the difference
    high: float = math.nan
    p: float = math.nan  # one-sided p of the claim (null: difference <= 0)
    p_against: float = math.nan  # one-sided p of the opposite (null: difference >= 0)
    reason: str = ""  # why untested (or a check across archs not out of order: why)
    at_floor: bool = False  # untested at the floor: both sides near it, or a small reversal there


@dataclass
class Part:
    """One part of the claim: its state, its effect size with an interval, its comparisons."""

    name: str  # "plain trend", "resnet trend", "resnet below plain"
    state: str  # "supported", "refuted", "open", "untested"
    estimate: float = math.nan  # the exponent k of error ∝ depth^k, or points (plain - resnet)
    low: float = math.nan
    high: float = math.nan
    depths: list[int] = field(default_factory=list)
    fit_depths: list[int] = field(default_factory=list)  # the depths k was fitted on
    reason: str = ""  # the part in words, numbers included
    tests: list[Comparison] = field(default_factory=list)
    # A trend's other orders (a depth between s and m against both, resnet-d against resnet-m,
    # resnet-s against plain-s: FAILED_ANCHOR), each as the trend would have it: any out of
    # order, or untested other than at the floor (across archs too), stops support.
    checks: list[Comparison] = field(default_factory=list)


@dataclass
class Verdict:
    outcome: str  # a key of OUTCOMES
    sentence: str
    parts: list[Part] = field(default_factory=list)
    points: list[dict] = field(default_factory=list)  # arch, depth, n, mean, se of what was used
    alpha: float = ALPHA  # each comparison's one-sided level; refuted at alpha / comparisons
    iterations: int | None = None  # the runs' schedule (the paper: PAPER_ITERATIONS)
    # seeds far from the others, each test's numbers and its words (`outliers.named`)
    outliers: list[dict] = field(default_factory=list)
    planned: int | None = None  # the comparisons planned (Bonferroni's count for refuting)
    refute_alpha: float | None = None  # alpha / planned: a comparison is refuted below it

    def to_dict(self) -> dict:
        """As plain data for verdict.json: NaN (not estimated) becomes None."""
        return plain_data(asdict(self))


def seed_se(values: Sequence[float], within: Sequence[float]) -> float:
    """The SE of the mean of one (arch, depth)'s per-seed `values`: over seeds (std / sqrt(n))
    where there are two or more, but never below what the runs' own noise (`within`, each run's
    SE, NaN where unknown: their root mean square) allows for a mean of n runs; for one seed,
    that run's own SE. NaN where neither is known."""
    values, within = np.asarray(values, float), np.asarray(within, float)
    n = len(values)
    own = within[np.isfinite(within)]
    floor = math.sqrt(np.mean(own**2) / n) if len(own) else math.nan
    spread = float(np.std(values, ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    known = [x for x in (spread, floor) if not math.isnan(x)]
    return float(max(known)) if known else math.nan


def power_law(cells: Sequence[Cell]) -> tuple[float, float, float]:
    """(k, low, high): the exponent of error ∝ depth^k, an unweighted least-squares fit of
    log(mean) on log(depth) (every mean above 0), with its 95% interval (t, depths - 2 degrees of
    freedom; NaN with fewer than 3 depths). The means' scatter about the line is floored by their
    own SEs (root mean square, on the log scale: SE / mean): three means that happen to line up
    would otherwise give k an interval of zero width whatever their seeds' spread."""
    x = np.log([c.depth for c in cells])
    y = np.log([c.mean for c in cells])
    slope, intercept = np.polyfit(x, y, 1)
    dof = len(x) - 2
    if dof < 1:
        return float(slope), math.nan, math.nan
    residual = math.sqrt(np.sum((y - intercept - slope * x) ** 2) / dof)
    relative = [c.se / c.mean for c in cells if math.isfinite(c.se)]
    scatter = max(residual, math.sqrt(np.mean(np.square(relative)))) if relative else residual
    half = stdtrit(dof, 1 - ALPHA) * scatter / math.sqrt(np.sum((x - x.mean()) ** 2))
    return float(slope), float(slope - half), float(slope + half)


def welch_dof(a: Cell, b: Cell) -> float:
    """Welch-Satterthwaite's degrees of freedom of the difference of two means."""
    va, vb = a.se**2, b.se**2
    return (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))


def degrees_of_freedom(a: Cell, b: Cell) -> float:
    """Welch's where both have as many seeds; Hsu's (the fewer - 1) where not: with fewer seeds
    on the noisier side Welch's ran to 4.3% at a nominal 2.5% (results/verdict_calibration/
    unequal_seeds.txt)."""
    return welch_dof(a, b) if a.n == b.n else min(a.n, b.n) - 1


def _numbers(higher: Cell, lower: Cell) -> dict:
    """The one-sided Welch test's numbers of `higher`'s mean above `lower`'s, as Comparison
    fields; {} with fewer than two seeds on a side or no noise estimate."""
    se = math.hypot(higher.se, lower.se)
    if min(higher.n, lower.n) < 2 or not (math.isfinite(se) and se >= NO_NOISE):
        return {}
    dof, diff = degrees_of_freedom(higher, lower), higher.mean - lower.mean
    half = float(stdtrit(dof, 1 - ALPHA)) * se
    p, p_against = float(stdtr(dof, -diff / se)), float(stdtr(dof, diff / se))
    return dict(difference=diff, se=se, dof=dof, low=diff - half, high=diff + half, p=p,
                p_against=p_against)  # fmt: skip


def compare(higher: Cell, lower: Cell, refute_alpha: float) -> Comparison:
    """The one-sided Welch test of `higher`'s mean above `lower`'s. Supported at p < ALPHA,
    refuted when the opposite has p < `refute_alpha`; untested where a run of either did not
    finish, with one seed on either side, both at or near the floor, both at chance, seeds that
    all agree, an unknown SE, or where the opposite would refute but is a small reversal near the
    floor or rests on `lower` at chance. An untested comparison keeps the test's numbers where
    there are any (verdict.json): on the finished seeds, where a run did not finish."""
    made = {"higher": higher.label, "lower": lower.label, **_numbers(higher, lower)}
    unfinished = [f"{c.label} ({c.unfinished} of {c.n + c.unfinished})" for c in (higher, lower)
                  if c.unfinished]  # fmt: skip
    if unfinished:  # a diverged run is no missing value: the finished seeds alone would hide it
        why = f"runs that did not finish (failed, or not yet done) at {' and '.join(unfinished)}"
        return Comparison(**made, state="untested", reason=why)
    one = [c.label for c in (higher, lower) if c.n < 2]
    if one:  # see ONE_SEED
        return Comparison(**made, state="untested", reason=f"one seed at {' and '.join(one)}")
    if max(higher.mean, lower.mean) <= NEAR_FLOOR:
        why = (
            f"{higher.label} and {lower.label} are at the floor ({higher.mean:.2f}% and "
            f"{lower.mean:.2f}%, both ≤ {NEAR_FLOOR:g}%)"
        )
        return Comparison(**made, state="untested", reason=why, at_floor=True)
    if higher.at_chance and lower.at_chance:  # see CHANCE_MARGIN
        why = (
            f"{AT_CHANCE}: {higher.label} and {lower.label} ({higher.mean:.2f}% and "
            f"{lower.mean:.2f}%) are at or above {higher.chance - CHANCE_MARGIN:g}% (chance: "
            f"{higher.chance:.0f}%), nets that learned next to nothing, whose order is which "
            "class each guesses"
        )
        return Comparison(**made, state="untested", reason=why)
    # Seeds that agree at 0 agree on fitting every image, at chance on guessing one class;
    # elsewhere they are one draw repeated.
    same = [f"{c.label}'s {c.n} ({c.mean:.2f}%)" for c in (higher, lower)
            if c.sd < NO_NOISE and c.mean > 0 and not c.at_chance]  # fmt: skip
    if same:  # NaN (unknown) is never below: tables without a std
        why = (
            f"{SAME_SEEDS} {' and '.join(same)} all gave the same error: one draw repeated, not "
            "seed-to-seed noise (is the seed reaching the runs?)"
        )
        return Comparison(**made, state="untested", reason=why)
    if "p" not in made:
        why = f"no noise estimate for {higher.label} or {lower.label}"
        return Comparison(**made, state="untested", reason=why)
    p, p_against = made["p"], made["p_against"]
    state = "supported" if p < ALPHA else "refuted" if p_against < refute_alpha else "open"
    if state == "refuted" and lower.at_chance:  # see CHANCE_MARGIN: `higher` is not at chance
        why = (
            f"{LONE_AT_CHANCE}: {lower.label} ({lower.mean:.2f}%, at or above "
            f"{lower.chance - CHANCE_MARGIN:g}%) learned next to nothing against {higher.label} "
            f"({higher.mean:.2f}%): a run that did not train, which refutes nothing"
        )
        return Comparison(**made, state="untested", reason=why)
    reason = _floor_reversal(higher, lower) if state == "refuted" else ""
    return Comparison(**made, state="untested" if reason else state, reason=reason,
                      at_floor=bool(reason))  # fmt: skip


def _floor_reversal(higher: Cell, lower: Cell) -> str:
    """Why a reversal (`higher`'s mean below `lower`'s, significantly) is no evidence against the
    claim, or "": where a side is at or near the floor and the reversal is under NEAR_FLOOR
    points, it is the order of the two nets' last few mistakes (without this, resnet 0.98 against
    1.02 refuted "resnet falls" where 0.98 against 1.00 was at the floor). Support is not held back:
    one side above the floor, a significant difference in the claim's direction is one."""
    reversal = lower.mean - higher.mean
    near = [c for c in (higher, lower) if c.mean <= NEAR_FLOOR]
    if not near or reversal >= NEAR_FLOOR - 1e-9:  # 1.4 - 0.4 is 0.9999999999999999
        return ""
    return (
        f"{higher.label} below {lower.label} by {reversal:.2f} points with {near[0].label} near "
        f"the floor ({near[0].mean:.2f}% ≤ {NEAR_FLOOR:g}%): a reversal under {NEAR_FLOOR:g} "
        "point there is the order of their last few mistakes"
    )


def _across(c: Comparison) -> bool:
    """Whether `c` compares two archs (FAILED_ANCHOR's check), not two depths of one."""
    return c.higher.rpartition("-")[0] != c.lower.rpartition("-")[0]


def unplaced(check: Comparison) -> bool:
    """Whether a trend's `check` could not be made and so stops its support: untested other than
    at the floor (FAILED_ANCHOR's included: the shallowest ResNet it cannot check might be the
    failed one)."""
    return check.state == "untested" and not check.at_floor


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def _said(c: Comparison) -> str:
    """A comparison in words: the difference, its interval and p, or why it is untested."""
    if c.state == "untested":
        return f"{c.higher} vs {c.lower} untested: {c.reason}"
    p = f"p = {c.p:.2g}" if c.state != "refuted" else f"p of the opposite = {c.p_against:.2g}"
    if c.state == "open" and c.p_against < ALPHA:  # its 95% interval lies on the wrong side
        p += (
            f", p of the opposite = {c.p_against:.2g}, short of refuting "
            f"({ALPHA} / the comparisons planned)"
        )
    return (
        f"{c.higher} − {c.lower} = {_fmt(c.difference)} points, "
        f"95% CI [{_fmt(c.low)}, {_fmt(c.high)}], {p}"
    )


def _combined(tests: list[Comparison]) -> str:
    """The intersection-union state of a part from its comparisons'."""
    states = {c.state for c in tests}
    for state in ("refuted", "untested", "open"):
        if state in states:
            return state
    return "supported"


def _anchors(cells: list[Cell]) -> tuple[Cell, Cell, Cell] | None:
    """(s, m, d): the shallowest, the deepest below the deepest, and the deepest depth, or None
    where there are fewer than MIN_DEPTHS depths or the deepest is below DEEP_DEPTH."""
    if len(cells) < MIN_DEPTHS or cells[-1].depth < DEEP_DEPTH:
        return None
    return cells[0], cells[-2], cells[-1]


def trend_part(
    arch: str, cells: list[Cell], refute_alpha: float, plain_at_shallowest: Cell | None = None
) -> Part:
    """Part (1) for plain (rising) or (2) for resnet (falling) from its `cells` by depth;
    `plain_at_shallowest`, for resnet: the plain net at its shallowest depth, if trained."""
    depths = [c.depth for c in cells]
    anchors = _anchors(cells)
    if anchors is None:
        have = ", ".join(map(str, depths)) or "none"
        need = f"≥ {MIN_DEPTHS} depths {MIN_DEPTH}–{MAX_DEPTH}, the deepest ≥ {DEEP_DEPTH}"
        reason = f"{arch}'s trend is not tested: it needs {need} (has {have})"
        return Part(f"{arch} trend", "untested", depths=depths, reason=reason)
    s, m, d = anchors
    rises = arch == "plain"
    if rises:  # each step deeper is worse
        tests = [compare(m, s, refute_alpha), compare(d, m, refute_alpha)]
    else:  # both deeper nets beat the shallowest
        tests = [compare(s, m, refute_alpha), compare(s, d, refute_alpha)]
    between = cells[1:-2]  # the depths between s and m: each must lie between the two
    if rises:  # (higher, lower) as the trend has it
        orders = [(c, s) for c in between] + [(m, c) for c in between]
    else:  # and resnet-d not above resnet-m, which no comparison says
        orders = [(s, c) for c in between] + [(c, m) for c in between] + [(m, d)]
    checks = [check(higher, lower) for higher, lower in orders]
    if not rises:
        checks.append(failed_anchor(plain_at_shallowest, s))
    against = [c for c in checks if c.state == "out of order"]
    unchecked = [c for c in checks if unplaced(c)]
    state = _combined(tests)
    if state == "supported" and against:
        state = "open"
    elif state == "supported" and unchecked:  # the depth it cannot place might be out of order
        state = "untested"
    complete = [c for c in cells if c.n and not c.unfinished]  # the depths the tests can use
    at_floor = [c.label for c in complete if c.mean <= FLOOR_ERROR]
    fitted = len(complete) >= MIN_DEPTHS and not at_floor
    k, low, high = power_law(complete) if fitted else (math.nan,) * 3
    fit_depths = [c.depth for c in complete] if fitted else []
    words = {
        "supported": "rises with depth" if arch == "plain" else "falls with depth",
        "refuted": "does not rise with depth" if arch == "plain" else "does not fall with depth",
        "open": "trend with depth is unclear",
        "untested": "trend with depth is untested",
    }[state]
    fit = f"error ∝ depth^k, k = {_fmt(k)}, 95% CI [{_fmt(low)}, {_fmt(high)}]"
    if at_floor:
        fit = f"error ∝ depth^k not fitted: {', '.join(at_floor)} at the floor"
    elif not fitted:
        fit = f"error ∝ depth^k not fitted: fewer than {MIN_DEPTHS} depths whose runs all finished"
    subject = f"{arch}'s train error" if state in ("supported", "refuted") else f"{arch}'s"
    said = "; ".join(_said(c) for c in tests)
    if against:
        said += (
            "; and out of order " if state == "refuted" else "; but out of order "
        ) + "; ".join(
            f"{c.higher} − {c.lower} = {_fmt(c.difference)} points, 95% CI [{_fmt(c.low)}, "
            f"{_fmt(c.high)}], p of the opposite = {c.p_against:.2g}: "
            f"{c.higher} lies below {c.lower}" + (f" ({FAILED_ANCHOR})" if _across(c) else "")
            for c in against
        )
    mean = {c.label: c.mean for c in [*cells, plain_at_shallowest] if c is not None}
    exempt = [c for c in checks if c.at_floor and max(mean[c.higher], mean[c.lower]) > NEAR_FLOOR]
    if exempt:  # said, so that a trend supported past them is seen to be
        said += "; near the floor, not counted: " + "; ".join(c.reason for c in exempt)
    if unchecked and not against and _combined(tests) == "supported":
        said += "; but unchecked " + "; ".join(
            f"{c.higher} vs {c.lower}: {c.reason}"
            + (f" (a failed {c.lower} would carry the fall)" if _across(c) else "")
            for c in unchecked
        )
    reason = f"{subject} {words} ({said}; {fit})"
    return Part(f"{arch} trend", state, k, low, high, depths, fit_depths, reason, tests, checks)


def check(higher: Cell, lower: Cell) -> Comparison:
    """A trend's other order (`higher` above `lower`, as the trend has it) tested as a comparison
    is, its state "out of order" where the opposite has one-sided p < ALPHA, else "not out of
    order", or "untested" (with its reason)."""
    c = compare(higher, lower, refute_alpha=0.0)  # a check never refutes: its state is set here
    if c.state != "untested":
        c.state = "out of order" if c.p_against < ALPHA else "not out of order"
    reason = _floor_reversal(higher, lower) if c.state == "out of order" else ""
    if reason:
        c.state, c.reason, c.at_floor = "untested", reason, True
    return c


def failed_anchor(plain: Cell | None, resnet: Cell) -> Comparison:
    """FAILED_ANCHOR's check of the shallowest ResNet against the plain net of its depth (None:
    not trained, so unchecked): a `check`, out of order only where the ResNet is far above the
    plain net. A ResNet not far above it, nor at chance, is no failed run even where the test
    cannot be made (a plain net of one seed): a failure's gap shows without one."""
    if plain is None:
        why = f"plain was not trained at depth {resnet.depth}"
        return Comparison(f"plain-{resnet.depth}", resnet.label, "untested", reason=why)
    c = check(plain, resnet)
    far = resnet.mean > max(FAILED_RATIO * plain.mean, plain.mean + FAILED_MARGIN)
    known = math.isfinite(plain.mean) and math.isfinite(resnet.mean)
    untested = c.state == "untested" and not c.at_floor
    if known and not far and not resnet.at_chance and (c.state == "out of order" or untested):
        c.reason = (
            f"{resnet.label} ({resnet.mean:.2f}%) not above {plain.label} ({plain.mean:.2f}%) by "
            f"more than {FAILED_RATIO:g}x and {FAILED_MARGIN:g} points"
            + (f", untested ({c.reason})" if untested else "")
        )
        c.state = "not out of order"  # above it, if at all, not so far as a failed run
    return c


def gap_part(plain: list[Cell], resnet: list[Cell], refute_alpha: float) -> Part:
    """Part (3): resnet below plain at the deepest shared depth >= DEEP_DEPTH."""
    by_depth = {c.depth: c for c in resnet}
    shared = [c for c in plain if c.depth in by_depth]
    deep = [c for c in shared if c.depth >= DEEP_DEPTH]
    if not deep:  # at 20 both nets train well: the claim is about the deep ones
        have = ", ".join(str(c.depth) for c in shared) or "none"
        reason = f"plain and resnet share no depth ≥ {DEEP_DEPTH} (shared: {have})"
        return Part(
            "resnet below plain", "untested", depths=[c.depth for c in shared], reason=reason
        )
    p = deep[-1]
    test = compare(p, by_depth[p.depth], refute_alpha)
    where = {"supported": "below", "refuted": "not below", "open": "not clearly below"}
    if test.state == "untested":
        reason = f"resnet below plain at depth {p.depth} untested: {test.reason}"
    else:
        reason = f"resnet's is {where[test.state]} plain's at depth {p.depth} ({_said(test)})"
    return Part("resnet below plain", test.state, test.difference, test.low, test.high,
                depths=[p.depth], reason=reason, tests=[test])  # fmt: skip


def _by_arch(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    return {a: sorted((c for c in cells if c.arch == a), key=lambda c: c.depth) for a in ARCHS}


def planned(cells: Sequence[Cell]) -> int:
    """The comparisons planned, counted before any is tested: two per arch with enough depths,
    plus the gap (Bonferroni's count: a comparison is refuted at ALPHA / this)."""
    by_arch = _by_arch(cells)
    return sum(2 for a in ARCHS if _anchors(by_arch[a])) + 1


def judge_cells(cells: Sequence[Cell]) -> list[Part]:
    """The three parts of the claim from the (arch, depth) cells at depths 20-110; refuted
    comparisons at ALPHA / `planned`."""
    by_arch = _by_arch(cells)
    refute_alpha = ALPHA / planned(cells)
    plain = {c.depth: c for c in by_arch["plain"]}
    shallowest = by_arch["resnet"][0].depth if by_arch["resnet"] else None
    parts = [
        trend_part("plain", by_arch["plain"], refute_alpha),
        trend_part("resnet", by_arch["resnet"], refute_alpha, plain.get(shallowest)),
    ]
    return [*parts, gap_part(by_arch["plain"], by_arch["resnet"], refute_alpha)]


def outcome_of(parts: Sequence[Part]) -> str:
    states = [p.state for p in parts]
    if "refuted" in states:
        return "not reproduced"
    return "reproduced" if all(s == "supported" for s in states) else "inconclusive"


def _settle(parts: list[Part], cells: Sequence[Cell]) -> str:
    """What more evidence would settle an inconclusive verdict."""
    hints = []
    for p in parts:
        if p.state == "untested" and not p.tests and p.name.endswith("trend"):
            hints.append(
                f"train {p.name.split()[0]} at ≥ {MIN_DEPTHS} depths {MIN_DEPTH}–{MAX_DEPTH}, "
                f"the deepest ≥ {DEEP_DEPTH}"
            )
    if parts[-1].state == "untested" and not parts[-1].tests:
        hints.append(f"train plain and resnet at one depth ≥ {DEEP_DEPTH}")
    tests = [c for p in parts for c in p.tests]
    made = tests + _blocking(parts)  # its tests, and the checks that kept a trend unsupported
    compared = {x for c in made for x in (c.higher, c.lower)}
    lone = [c.label for c in cells if c.n < 2 and not c.unfinished and c.label in compared]
    if lone:
        hints.append(f"a second seed at {', '.join(lone)} (seed=0,1)")
    unfinished = [c.label for c in cells if c.unfinished and c.label in compared]
    if unfinished:
        hints.append(
            f"the runs at {', '.join(unfinished)} finished (resume the sweep), or, where they "
            "failed, their run.json's error understood"
        )
    undrawn = {x for c in made if c.reason.startswith(SAME_SEEDS)
               for x in (c.higher, c.lower)}  # fmt: skip
    same = [c.label for c in cells if c.label in undrawn and c.sd < NO_NOISE and c.mean > 0
            and not c.at_chance]  # fmt: skip
    if same:
        hints.append(
            f"seeds that differ at {', '.join(same)}, whose seeds all gave the same error (check "
            "that the seed reaches the runs: run.json's seed, metrics.csv)"
        )
    labels = {c.label for c in cells}
    untrained = [c for c in made if _across(c) and c.higher not in labels]
    if untrained:  # FAILED_ANCHOR's check, where plain was not trained at that depth
        hints.append(
            f"{', '.join(c.higher for c in untrained)} (≥ 2 seeds), to check that "
            f"{', '.join(c.lower for c in untrained)} trained"
        )
    guessing = {x for c in made if c.reason.startswith((AT_CHANCE, LONE_AT_CHANCE))
                for x in (c.higher, c.lower)}  # fmt: skip
    chance = [c.label for c in cells if c.label in guessing and c.at_chance]  # by arch and depth
    if chance:
        hints.append(
            f"a recipe that trains {', '.join(chance)} above chance (a lower learning rate, or "
            "the warm-up from their depth: schedule.warmup.from_depth)"
        )
    mean = {c.label: c.mean for c in cells}
    floor = sorted(
        {
            x
            for c in tests
            if c.state == "untested" and c.at_floor
            for x in (c.higher, c.lower)
            if mean[x] <= NEAR_FLOOR  # a reversal's other side is above it
        }
    )
    if floor:
        hints.append(
            f"a task the nets do not fit perfectly (fewer iterations or more training images): "
            f"{', '.join(floor)} at the floor"
        )
    against = [c for p in parts for c in p.checks if c.state == "out of order"]
    if against:  # more seeds narrow an interval; they do not reorder depths already clear
        clear = ", ".join(f"{c.higher} below {c.lower}, p = {c.p_against:.2g}" for c in against)
        hints.append(
            f"for depths out of order ({clear}), those runs' curves looked at first (did one "
            "fail to train?), then more seeds or a recipe that trains every depth"
        )
    if any(c.state == "open" for c in tests):
        seeds = min(c.n for c in cells if c.n)
        hints.append(
            f"more seeds (now {seeds} at the fewest depth) to narrow the intervals, "
            "or a longer schedule, if the deeper nets are still catching up"
        )
    return "; ".join(hints)


def _blocking(parts: Sequence[Part]) -> list[Comparison]:
    """The trends' checks that could not be made (other than at the floor): what kept a part whose
    comparisons all held from being supported."""
    return [c for p in parts for c in p.checks if unplaced(c)]


def _describe(cells: Sequence[Cell]) -> str:
    per_arch = []
    for arch in ARCHS:
        shown = [
            f"{c.depth}: {c.mean:.2f} ± {c.se:.2f} ({c.n})" if math.isfinite(c.se)
            else f"{c.depth}: {c.mean:.2f} ± ? ({c.n})" if c.n
            else f"{c.depth}: none finished"
            for c in cells if c.arch == arch
        ]  # fmt: skip
        per_arch.append(f"{arch} {', '.join(shown) or 'none'}")
    return (
        "Final train error (%, mean ± its SE: over seeds and never below the runs' own window "
        "noise, or a lone seed's window noise; finished runs at depths "
        f"{MIN_DEPTH}–{MAX_DEPTH}): " + "; ".join(per_arch) + "."
    )


def judged(frame: pd.DataFrame) -> pd.Series:
    """Which rows (runs, or a table's arch and depth) the claim is about: plain or resnet, at a
    depth from MIN_DEPTH to MAX_DEPTH."""
    return frame["arch"].isin(ARCHS) & frame["depth"].between(MIN_DEPTH, MAX_DEPTH)


def _beyond(summary: pd.DataFrame) -> str:
    """The sentence naming plain and resnet depths beyond MAX_DEPTH, which are not judged."""
    deeper = summary[summary["arch"].isin(ARCHS) & (summary["depth"] > MAX_DEPTH)]
    if deeper.empty:
        return ""
    labels = sorted({(r.arch, int(r.depth)) for r in deeper.itertuples()})
    return (
        f" Not judged, beyond the paper's deepest ({MAX_DEPTH}): "
        f"{', '.join(f'{a}-{d}' for a, d in labels)} (in the figures and the table)."
    )


def bad_values(summary: pd.DataFrame) -> list[str]:
    """Finished plain/resnet runs at the verdict's depths whose final training error is no
    error rate at all (NaN, infinite, outside 0-100): named, never dropped."""
    done = summary[(summary["status"] == "done") & judged(summary)]
    error = done["final_train_error"].astype(float)
    bad = done[~(error.between(0, 100))]  # NaN and ±inf fall outside too
    return [f"{r.run_dir} ({r.final_train_error})" for r in bad.itertuples()]


def repeated_seeds(summary: pd.DataFrame) -> list[str]:
    """Runs of the claim (any status) that share an arch, depth and seed, named: copies of one
    draw, whose agreement would pass for seed-to-seed noise that is not there."""
    runs = summary[judged(summary)]
    keys = ["arch", "depth", "seed"]
    repeated = runs[runs.duplicated(keys, keep=False)]
    return [
        f"{arch}-{depth} seed {seed} ({', '.join(map(str, group['run_dir']))})"
        for (arch, depth, seed), group in repeated.groupby(keys, sort=True)
    ]


def _schedule(iterations: int | None, outcome: str, parts: Sequence[Part]) -> str:
    """What the schedule's length means for the verdict, where it differs from the paper's or is
    unknown. Deeper ResNets' late catching up is said only where a ResNet part is unsupported."""
    if iterations is None:
        return (
            f" The runs' schedule is not recorded: whether they trained the paper's "
            f"{PAPER_ITERATIONS:,} iterations is unknown."
        )
    if iterations == PAPER_ITERATIONS:
        return ""
    if iterations > PAPER_ITERATIONS:
        return (
            f" These runs trained {iterations:,} iterations, longer than the paper's "
            f"{PAPER_ITERATIONS:,}: the figure it compares with ends at {PAPER_ITERATIONS:,}."
        )
    if outcome == "reproduced":
        return f" Shown on {iterations:,} iterations a run (the paper: {PAPER_ITERATIONS:,})."
    late = any(p.state != "supported" for p in parts if not p.name.startswith("plain"))
    why = "deeper ResNets catch up late in training, so " if late else ""
    return (
        f" These runs trained {iterations:,} iterations, the paper {PAPER_ITERATIONS:,}: {why}"
        "what is open or refuted here may hold on the paper's schedule."
    )


def chance_error(summary: pd.DataFrame) -> float:
    """The error (%) of a net that learned nothing on the claim's runs: 100 (1 - 1 / classes),
    with the most classes any of them trained on (CIFAR_CLASSES where run.json predates the
    record; plain and resnet on different classes are `mixed_options` anyway)."""
    runs = summary[judged(summary)]
    classes = pd.to_numeric(runs.get("classes", pd.Series(dtype=float)), errors="coerce")
    return 100 * (1 - 1 / int(classes.max() if classes.notna().any() else CIFAR_CLASSES))


def _cells(finished: pd.DataFrame, unfinished: pd.DataFrame, chance: float) -> list[Cell]:
    """One Cell per (arch, depth) of the claim's runs: the `finished` ones' mean, SE and count
    (a by_depth table's rows), and how many `unfinished` (summary rows) there are."""
    count = unfinished.groupby(["arch", "depth"]).size()
    cells = {
        (r.arch, int(r.depth)): Cell(r.arch, int(r.depth), int(r.n),
                                     float(r.final_train_error_mean), float(r.final_train_error_se),
                                     sd=float(getattr(r, "final_train_error_std", math.nan)),
                                     chance=chance)
        for r in finished.itertuples()
    }  # fmt: skip
    for (arch, depth), k in count.items():
        done = cells.get((arch, int(depth)), Cell(arch, int(depth), 0, math.nan, math.nan))
        cells[arch, int(depth)] = Cell(
            done.arch, done.depth, done.n, done.mean, done.se, int(k), done.sd, chance
        )
    return [cells[key] for key in sorted(cells)]


def decide(summary: pd.DataFrame, table: pd.DataFrame, mixed: list[str]) -> Verdict:
    """The verdict on a sweep: `summary` (one row per run), `table` (analysis.by_depth: mean, SE
    and n per variant and depth of the finished runs), `mixed` (options in which plain and resnet
    runs differ)."""
    bad = bad_values(summary)
    if bad:
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: finished runs whose final train error is not an error "
            f"rate (NaN, infinite or outside 0–100): {', '.join(bad)}. Check their metrics.csv.",
        )
    repeated = repeated_seeds(summary)
    if repeated:
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: runs that repeat an arch, depth and seed: "
            f"{'; '.join(repeated)}. A seed's runs are one draw, not several, and their agreement "
            "would pass for seed-to-seed noise that is not there: keep one of each, or analyse "
            "them apart.",
        )
    if mixed:
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: the plain and resnet runs differ in "
            f"{', '.join(mixed)}, not only in their arch; the verdict compares the two under one "
            "configuration (sweep them apart, or analyse each configuration's runs apart).",
        )
    used = table[judged(table)].sort_values(["arch", "depth"])  # groups of finished runs
    cells = _cells(used, summary[judged(summary) & (summary["status"] != "done")],
                   chance_error(summary))  # fmt: skip
    points = [asdict(c) for c in cells]
    unjudged = [a for a in ARCHS if not any(c.arch == a and c.n for c in cells)]
    none_finished = [a for a in unjudged if any(c.arch == a for c in cells)]
    # With one arch's runs finished, its part is judged and the other's says what it lacks
    if none_finished and len(unjudged) == len(ARCHS):  # runs there, none finished: named
        left_out = summary[judged(summary) & summary["arch"].isin(none_finished)]
        names = [f"{r.run_dir} ({r.status})" for r in left_out.itertuples()]
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: no {' or '.join(none_finished)} run at depths "
            f"{MIN_DEPTH}–{MAX_DEPTH} finished: {', '.join(names)}. Resume the sweep (its command "
            "again) or, where they failed, see the error in their run.json." + _beyond(summary),
            points=points,
        )
    if len(unjudged) == len(ARCHS):  # no finished runs at the claim's depths at all
        have = "; ".join(
            f"{a} at {', '.join(map(str, sorted(set(summary.loc[summary.arch == a, 'depth']))))}"
            for a in ARCHS
            if (summary["arch"] == a).any()
        )
        return Verdict(
            "undetermined",
            f"{OUTCOMES['undetermined']}: the claim compares plain and resnet nets at depths "
            f"{MIN_DEPTH}–{MAX_DEPTH}, the paper's, and this sweep has no finished run of either "
            f"there ({have or 'no plain or resnet runs'}). Smaller nets check the pipeline and "
            "deeper ones extend it, they are not the claim: sweep plain and resnet at "
            f"≥ {MIN_DEPTHS} depths from {MIN_DEPTH} to {MAX_DEPTH}, one ≥ {DEEP_DEPTH} "
            "(experiment=figure6).",
            points=points,
        )
    parts = judge_cells(cells)
    outcome = outcome_of(parts)
    shown = {
        "not reproduced": [p for p in parts if p.state == "refuted"],
        "reproduced": parts,
        "inconclusive": [p for p in parts if p.state != "supported"],
    }[outcome]
    sentence = f"{OUTCOMES[outcome]}: " + "; ".join(p.reason for p in shown) + "."
    if outcome == "inconclusive":
        settle = _settle(parts, cells)
        sentence += f" What would settle it: {settle}." if settle else ""
    if outcome != "reproduced":
        supported = [p.reason for p in parts if p.state == "supported"]
        sentence += f" Supported: {'; '.join(supported)}." if supported else ""
    done = summary[(summary["status"] == "done") & judged(summary)]
    reached = pd.to_numeric(done["iterations"], errors="coerce").dropna()
    iterations = int(reached.min()) if len(reached) else None  # the shortest: see _schedule
    sentence += _schedule(iterations, outcome, parts) + _beyond(summary)
    if len(reached) and reached.max() > reached.min():
        sentence += (
            f" The finished runs differ in length, {int(reached.min()):,} to "
            f"{int(reached.max()):,} iterations: the schedule said here is the shortest, and "
            "depths trained for different lengths compare lengths as well as depths."
        )
    failed = [f"{c.label} ({c.mean:.1f}%)" for c in cells if c.n and c.at_chance]
    if failed:
        sentence += (
            f" At chance (at or above {cells[0].chance - CHANCE_MARGIN:g}%, a net that learned "
            f"nothing errs on {cells[0].chance:.0f}%: did it train at all?): {', '.join(failed)}."
        )
    if any(c.reason.startswith("one seed") for p in parts for c in p.tests + p.checks):
        sentence += f" {ONE_SEED}"
    far = outliers.named(done)
    if far:
        said = "; ".join(o["said"] for o in far)
        sentence += f" Seeds far from the others (kept, and named): {said}."
    left_out = summary[judged(summary) & (summary["status"] != "done")]
    if len(left_out):
        names = [f"{r.run_dir} ({r.status})" for r in left_out.itertuples()]
        sentence += f" Left out, not finished: {', '.join(names)}."
    count = planned(cells)
    return Verdict(outcome, f"{sentence} {_describe(cells)}", parts, points, ALPHA, iterations,
                   far, count, ALPHA / count)  # fmt: skip
