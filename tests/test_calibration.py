"""The verdict's error rates by Monte Carlo (depthsweep.analysis.calibration): sweeps drawn from a
known truth and judged by the verdict's own decision. A part is falsely supported, and a true
claim refuted, at most at the nominal one-sided level (+ three Monte Carlo standard errors), and
in Welch's hardest case (very unequal noise on few seeds) within a stated bound."""

from __future__ import annotations

import math

import pytest
from scipy.special import ndtr

from depthsweep.analysis import calibration, verdict
from depthsweep.analysis.calibration import COLLAPSED, DEPTHS, FLAT, ONE_STEP_NULL, PAPER
from depthsweep.analysis.verdict import ALPHA, seed_se

DRAWS = 4000
BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / DRAWS)  # 2.5% + 0.74 points
PARTS = ("plain trend", "resnet trend", "resnet below plain")


@pytest.mark.parametrize("seeds", [2, 3])
@pytest.mark.parametrize("deepest", [1, 3], ids=["equal noise", "deepest 3x noisier"])
def test_under_a_flat_truth_no_part_is_supported_beyond_its_level(seeds, deepest):
    noise = {**dict.fromkeys(DEPTHS, 0.2), 110: 0.2 * deepest}
    got = calibration.rates(FLAT, seeds, noise, draws=DRAWS, seed=seeds + deepest)
    for part in PARTS:
        assert got[f"{part} supported"] <= BOUND, (part, got)
    assert got["outcome reproduced"] <= BOUND
    # a flat truth is the limit of a true claim: refuted no more often than a true one may be
    # (without the Bonferroni division, 5.9% / 8.3% at 2 / 3 seeds)
    assert got["outcome not reproduced"] <= BOUND


@pytest.mark.parametrize("seeds", [2, 3])
def test_one_collapsed_depth_does_not_carry_plains_trend(seeds):
    """plain flat from 20 to 56 and collapsed at 110: its rise is one depth's, not a trend."""
    got = calibration.rates(COLLAPSED, seeds, 0.2, draws=DRAWS, seed=10 + seeds)
    assert got["plain trend supported"] <= BOUND, got


def test_one_failed_shallowest_resnet_does_not_carry_resnets_trend():
    """resnet-20 at 80%, the deeper ResNets flat at 2%: the fall is one failed depth's."""
    got = calibration.rates(calibration.COLLAPSED_RESNET_20, 2, 0.2, draws=DRAWS, seed=12)
    assert got["resnet trend supported"] <= BOUND, got


# Welch's test on two or three seeds a side, one side's seed SD 6x the other's, exceeds its
# one-sided 2.5% a little: 2.6% at two seeds and 3.0% at three by direct simulation (200,000
# draws; 3.2% at worst, at two seeds and 20x: results/verdict_calibration/welch_level.txt), as the
# README says. Bounded at 3.5% (+ three Monte Carlo standard errors: 4.4%): a verdict on the normal
# quantile instead of Student's t supports such a false trend in 9-13% of sweeps.
WELCH_BOUND = 0.035 + 3 * math.sqrt(0.035 * (1 - 0.035) / DRAWS)
UNEQUAL = {**dict.fromkeys(DEPTHS, 0.2), 56: 1.2}  # the null step's deeper side 6x noisier


@pytest.mark.parametrize("seeds", [2, 3])
def test_a_trend_false_by_one_comparison_of_unequal_noise_stays_near_its_level(seeds):
    """The least favourable case: one step null, the other clearly true, and the null step's
    deeper side 6x noisier (Welch's test at its hardest, as on the CPU Figure 6's plain-56)."""
    got = calibration.rates(ONE_STEP_NULL, seeds, UNEQUAL, draws=DRAWS, seed=30 + seeds)
    assert got["plain trend supported"] <= WELCH_BOUND, got
    assert got["resnet trend supported"] <= WELCH_BOUND, got


def test_a_true_claim_at_its_limit_is_refuted_within_a_stated_bound_with_unequal_noise():
    """Every part at its limit (all nets at 20%), the deep depths' seeds 20x noisier on two
    seeds: Welch's test at 0.025 / 5 refutes more often than that, and "NOT reproduced" of a
    true claim exceeds 2.5% (3.4% over 10,000 draws); it stays within WELCH_BOUND."""
    noise = {**dict.fromkeys(DEPTHS, 0.2), 56: 4.0, 110: 4.0}
    got = calibration.rates(calibration.FLAT_20, 2, noise, draws=DRAWS, seed=13)
    assert got["outcome not reproduced"] <= WELCH_BOUND, got


def test_a_depth_with_fewer_seeds_and_more_noise_keeps_the_level():
    """One depth with a seed fewer than the others (a sweep extended by a seed at some depths)
    and 6x their seed SD: Welch's degrees of freedom would support the false
    step in 4.2% of sweeps, and refute a flat truth in 4.3% (results/verdict_calibration/
    unequal_seeds.txt); Hsu's hold both at the level."""
    seeds = {**dict.fromkeys(DEPTHS, 3), 56: 2}
    got = calibration.rates(ONE_STEP_NULL, seeds, UNEQUAL, draws=DRAWS, seed=40)
    assert got["plain trend supported"] <= BOUND, got
    assert got["resnet trend supported"] <= BOUND, got
    noisy_110 = {**dict.fromkeys(DEPTHS, 0.2), 110: 1.2}
    got = calibration.rates(FLAT, {**seeds, 56: 3, 110: 2}, noisy_110, draws=DRAWS, seed=41)
    assert got["outcome not reproduced"] <= BOUND, got


def test_the_unequal_seeds_bound_catches_welchs_degrees_of_freedom(monkeypatch):
    monkeypatch.setattr(verdict, "degrees_of_freedom", verdict.welch_dof)
    seeds = {**dict.fromkeys(DEPTHS, 3), 56: 2}
    got = calibration.rates(ONE_STEP_NULL, seeds, UNEQUAL, draws=DRAWS, seed=40)
    assert got["plain trend supported"] > BOUND, got


def test_the_bound_catches_a_verdict_on_the_normal_quantile(monkeypatch):
    """The bound above can fail: the normal quantile in place of Student's t, which ignores that
    two or three seeds estimate each SE, supports the false trend far more often."""
    monkeypatch.setattr(verdict, "stdtr", lambda dof, x: ndtr(x))
    # At the deciding depths alone: the normal quantile would also stop support more often by
    # the depths between (32, 44, where the truth is null too), hiding what it does to Welch's.
    anchors = {arch: {d: ONE_STEP_NULL[arch][d] for d in (20, 56, 110)} for arch in verdict.ARCHS}
    got = calibration.rates(anchors, 2, UNEQUAL, draws=1000, seed=1)
    print(f"normal quantile: the false plain trend supported in {got['plain trend supported']:.1%}")
    assert got["plain trend supported"] > 2 * WELCH_BOUND, got


@pytest.mark.parametrize("seeds", [2, 3])
def test_the_papers_claim_is_not_refuted_beyond_its_level_and_is_seen(seeds):
    got = calibration.rates(PAPER, seeds, 0.3, draws=DRAWS, seed=20 + seeds)
    assert got["outcome not reproduced"] <= BOUND, got
    assert got["plain trend supported"] > 0.9  # a rise of 4.5 points at 0.3 seed SD is seen


def test_five_seeds_see_the_papers_claim_most_of_the_time():
    assert calibration.rates(PAPER, 5, 0.2, draws=1000)["outcome reproduced"] > 0.9


def test_the_check_catches_a_verdict_that_counts_the_runs_own_noise_alone(monkeypatch):
    """The rates above can fail: judging on the within-run SE alone (what the one-seed verdict
    once did) supports a flat resnet trend or gap far more often than 2.5%."""
    monkeypatch.setattr(calibration, "seed_se", lambda values, within: seed_se([0.0], within))
    got = calibration.rates(FLAT, 3, 0.3, within_se=0.05, draws=1000, seed=1)
    assert max(got[f"{part} supported"] for part in PARTS) > 2 * BOUND, got


def test_the_table_has_every_scenario_at_every_setting():
    table = calibration.table(seeds=(2,), sds=(0.2,), draws=50)
    assert list(table["scenario"]) == list(calibration.SCENARIOS)
    assert table.filter(like="outcome").sum(axis=1).round(9).eq(1).all()
