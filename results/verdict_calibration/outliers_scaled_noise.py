"""How often the outlier naming (depthsweep.analysis.outliers) names an ordinary seed or pair when
the seeds' noise grows with the error (no outlier in the truth): the paper's errors, plain
1.4/2.5/4.0/5.9/62 and resnet 1.3/0.9/0.7/0.5/0.2 at depths 20-110, each run's own SE 0.05.
Judged in points alone (before the log scale's test was added; this file at commit ec34932),
the rows read 76.1 / 41.2 / 76.3 / 41.9 / 16.6 / 20.4 / 18.3 / 20.2%; with the log scale offset
by 0.1 point (commit 2b3a0c0), 0.8 / 0.2 / 1.1 / 0.7 / 1.9 / 0.9 / 1.7 / 0.7%, but then a
depth at the floor hid real outliers (outliers.LOG_OFFSET says how).
From the repository root (about a minute):

    cd results/verdict_calibration && python outliers_scaled_noise.py > outliers_scaled_noise.txt
"""

import numpy as np

from depthsweep.analysis import outliers

DEPTHS = (20, 32, 44, 56, 110)
TRUTH = {
    "plain": dict(zip(DEPTHS, [1.4, 2.5, 4.0, 5.9, 62.0], strict=True)),
    "resnet": dict(zip(DEPTHS, [1.3, 0.9, 0.7, 0.5, 0.2], strict=True)),
}
WITHIN = {"plain": 0.05, "resnet": 0.05}
SWEEPS = 2000


def rate(sd, n: int, rng: np.random.Generator) -> float:
    """The share of SWEEPS sweeps of n seeds, each error drawn with SD sd(mean), that name one."""
    named = 0
    for _ in range(SWEEPS):
        cells = {
            arch: {d: np.clip(m + sd(m) * rng.standard_normal(n), 0, 100) for d, m in truth.items()}
            for arch, truth in TRUTH.items()
        }
        named += bool(outliers.far(cells, WITHIN))
    return named / SWEEPS


rng = np.random.default_rng(0)
print(f"{SWEEPS:,} sweeps a row; a sweep 'names' when any seed or pair is named (nominal ≤ 5%)")
for share in (0.05, 0.10):
    for n in (2, 3):
        got = rate(lambda m, s=share: s * max(m, 1.0), n, rng)
        print(f"seed SD {share:.0%} of the error, {n} seeds: {got:.1%}")
for scale in (0.5, 1.0):  # binomial-shaped: SD = scale * 10 * sqrt(p (1 - p)), p = error / 100
    for n in (2, 3):
        got = rate(lambda m, s=scale: s * 10 * np.sqrt(m / 100 * (1 - m / 100)), n, rng)
        sd20, sd110 = (scale * 10 * np.sqrt(m / 100 * (1 - m / 100)) for m in (1.4, 62.0))
        print(
            f"binomial-shaped SD (plain-20 {sd20:.2f}, plain-110 {sd110:.2f}), {n} seeds: {got:.1%}"
        )
