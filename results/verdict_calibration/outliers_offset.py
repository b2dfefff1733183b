"""Why the outlier naming's log scale is offset by one point (depthsweep.analysis.outliers,
LOG_OFFSET): for each offset tried, how often a sweep without an outlier names one (false) and
how often a seed 10 seed-SDs off is named (power), at the paper's errors (plain 1.4/2.5/4.0/5.9/62,
resnet 1.3/0.9/0.7/0.5/0.2 at depths 20-110; each run's own SE 0.05) and at 10.2-21% with equal
noise. 1,000 sweeps a cell; one process per offset. From the repository root (about 5 minutes on
two cores):

    python results/verdict_calibration/outliers_offset.py > \
        results/verdict_calibration/outliers_offset.txt
"""

from concurrent.futures import ProcessPoolExecutor

import numpy as np

from depthsweep.analysis import outliers

DEPTHS = (20, 32, 44, 56, 110)
PAPER = {"plain": [1.4, 2.5, 4.0, 5.9, 62.0], "resnet": [1.3, 0.9, 0.7, 0.5, 0.2]}
EQUAL = {arch: [10 + d / 10 for d in DEPTHS] for arch in PAPER}
WITHIN = {"plain": 0.05, "resnet": 0.05}
SWEEPS = 1000
OFFSETS = (0.1, 0.5, 1.0, 2.0)


def binomial(m: float) -> float:
    return 10 * np.sqrt(m / 100 * (1 - m / 100))


# name: (errors, seed SD as a function of the error, seeds, outlier (arch, depth, shift) or None)
CASES = {
    "false, equal SD 0.3, 2 seeds": (EQUAL, lambda m: 0.3, 2, None),
    "false, equal SD 0.3, 3 seeds": (EQUAL, lambda m: 0.3, 3, None),
    "false, paper, SD 10% of the error, 2 seeds": (PAPER, lambda m: 0.1 * m, 2, None),
    "false, paper, SD 10% of the error, 3 seeds": (PAPER, lambda m: 0.1 * m, 3, None),
    "false, paper, binomial-shaped SD, 3 seeds": (PAPER, binomial, 3, None),
    "false, paper, SD 0.1, 3 seeds": (PAPER, lambda m: 0.1, 3, None),
    "power, equal SD 0.3, 3 seeds, plain-56 +3.0": (EQUAL, lambda m: 0.3, 3, ("plain", 56, 3.0)),
    "power, paper, SD 0.05, 3 seeds, resnet-20 +0.5": (
        PAPER,
        lambda m: 0.05,
        3,
        ("resnet", 20, 0.5),
    ),
    "power, paper, SD 0.1, 3 seeds, resnet-20 +1.0": (PAPER, lambda m: 0.1, 3, ("resnet", 20, 1.0)),
    "power, paper, SD 0.1, 3 seeds, resnet-110 +1.0": (
        PAPER,
        lambda m: 0.1,
        3,
        ("resnet", 110, 1.0),
    ),
}


def rate(offset: float, case: str, seed: int) -> float:
    outliers.LOG_OFFSET = offset
    errors, sd, n, odd = CASES[case]
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(SWEEPS):
        cells = {
            arch: {d: np.clip(m + sd(m) * rng.standard_normal(n), 0, 100)
                   for d, m in zip(DEPTHS, ms, strict=True)}
            for arch, ms in errors.items()
        }  # fmt: skip
        if odd is None:
            hits += bool(outliers.far(cells, WITHIN))
        else:
            arch, depth, shift = odd
            cells[arch][depth][0] += shift
            found = outliers.far(cells, WITHIN)
            hits += (arch, depth, 0) in {(f["arch"], f["depth"], f["seed_index"]) for f in found}
    return hits / SWEEPS


def column(offset: float) -> list[float]:
    return [rate(offset, case, seed) for seed, case in enumerate(CASES)]  # same draws per offset


if __name__ == "__main__":
    with ProcessPoolExecutor(2) as pool:
        columns = list(pool.map(column, OFFSETS))
    print(f"{SWEEPS:,} sweeps a cell; false: a sweep names any seed or pair (nominal <= 5%);")
    print("power: the seed shifted by 10 of its depth's seed SDs is named")
    print(f"{'case':<50}" + "".join(f"{'offset ' + format(o, 'g'):>12}" for o in OFFSETS))
    for i, case in enumerate(CASES):
        print(f"{case:<50}" + "".join(f"{c[i]:>12.1%}" for c in columns))
