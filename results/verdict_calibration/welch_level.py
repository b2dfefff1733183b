"""Where Welch's test exceeds its level, and what Hsu's conservative degrees of freedom would say
of the committed sweeps (README, *The verdict*). From the repository root:

    python results/verdict_calibration/welch_level.py > results/verdict_calibration/welch_level.txt

1. The one-sided 2.5% test of a null difference alone, by direct simulation (200,000 draws a
   row): n seeds a side, one side's seed SD `ratio` times the other's; Welch-Satterthwaite's
   degrees of freedom (the verdict's) against Hsu's, one fewer than the fewer seeds.
2. Every comparison in every committed verdict.json, its one-sided p as the verdict computed it
   (Welch) and with Hsu's degrees of freedom; * where the two fall on different sides of 0.025.
"""

import json
from pathlib import Path

import numpy as np
from scipy.special import stdtr

rng = np.random.default_rng(0)
draws = 200_000
print("n ratio  welch   hsu   (share of draws with one-sided p < 0.025; nominal 0.0250)")
for n in (2, 3, 5):
    for ratio in (1, 3, 6, 20):
        noisy, quiet = ratio * rng.standard_normal((draws, n)), rng.standard_normal((draws, n))
        a, b = noisy.var(1, ddof=1) / n, quiet.var(1, ddof=1) / n
        t = (noisy.mean(1) - quiet.mean(1)) / np.sqrt(a + b)
        welch = (a + b) ** 2 / (a**2 / (n - 1) + b**2 / (n - 1))
        levels = [(stdtr(dof, -t) < 0.025).mean() for dof in (welch, np.full(draws, n - 1.0))]
        print(f"{n} {ratio:5} {levels[0]:.4f} {levels[1]:.4f}")

print("\nsweep: outcome | comparison p (Welch) -> p (Hsu)")
for path in sorted(Path("results").glob("**/verdict.json")):
    found = json.loads(path.read_text())
    seeds = {f"{c['arch']}-{c['depth']}": c["n"] for c in found.get("points", [])}
    said = []
    for part in found.get("parts", []):
        for c in part.get("tests", []):
            if c.get("p") is None:
                continue
            dof = min(seeds[c["higher"]], seeds[c["lower"]]) - 1
            hsu = float(stdtr(dof, -c["difference"] / c["se"]))
            flip = "*" if (c["p"] < 0.025) != (hsu < 0.025) else ""
            said.append(f"{c['higher']} > {c['lower']} {c['p']:.3f} -> {hsu:.3f}{flip}")
    if said:
        print(f"{path.parent.relative_to('results')}: {found['outcome']} | " + "; ".join(said))
