"""The verdict's error rates by Monte Carlo (depthsweep.analysis.calibration): sweeps drawn from a
known truth and judged by the verdict's own decision. A part is falsely supported, and a true
claim refuted, at most at the nominal one-sided level (+ three Monte Carlo standard errors)."""

from __future__ import annotations

import math

import pytest

from depthsweep.analysis import calibration
from depthsweep.analysis.calibration import COLLAPSED, DEPTHS, FLAT, PAPER
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


@pytest.mark.parametrize("seeds", [2, 3])
def test_one_collapsed_depth_does_not_carry_plains_trend(seeds):
    """plain flat from 20 to 56 and collapsed at 110: its rise is one depth's, not a trend."""
    got = calibration.rates(COLLAPSED, seeds, 0.2, draws=DRAWS, seed=10 + seeds)
    assert got["plain trend supported"] <= BOUND, got


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
