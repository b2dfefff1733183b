"""The CPU Figure 6 on six seeds: this sweep (seeds 0-2) and its replicate on seeds 3-5
(results/figure6_cpu_frontier/figure6_cpu_fused_seeds345_amd), same config and CPU, judged
together by the verdict's own code. From the repository root:

    python results/figure6_cpu/six_seeds.py > results/figure6_cpu/six_seeds.txt

Prints the verdict's sentence on the twelve runs a depth pair, then each comparison's one-sided
p as the verdict computes it (Welch-Satterthwaite's degrees of freedom) and with Hsu's
conservative ones (one fewer than the fewer seeds), as results/verdict_calibration/welch_level.py
does for each sweep alone.
"""

import pandas as pd
from scipy.special import stdtr

from depthsweep.analysis.summaries import by_depth, decide, load_sweep, mixed_options, summarize

SWEEPS = ("results/figure6_cpu", "results/figure6_cpu_frontier/figure6_cpu_fused_seeds345_amd")
summary = pd.concat([summarize(*load_sweep(path)) for path in SWEEPS], ignore_index=True)
assert not mixed_options(summary), mixed_options(summary)  # the same recipe but for the seeds
assert not summary.duplicated(["arch", "depth", "seed"]).any()  # six different seeds a depth
found = decide(summary, by_depth(summary)).to_dict()
seeds = {f"{c['arch']}-{c['depth']}": c["n"] for c in found["points"]}
print(f"{' + '.join(SWEEPS)}\n\n{found['sentence']}\n")
print("comparison: difference (points), SE | one-sided p: Welch (its dof) | Hsu (its dof)")
for part in found["parts"]:
    for c in part["tests"]:
        hsu_dof = min(seeds[c["higher"]], seeds[c["lower"]]) - 1
        hsu = float(stdtr(hsu_dof, -c["difference"] / c["se"]))
        print(
            f"{c['higher']} > {c['lower']}: {c['difference']:+.2f}, {c['se']:.2f} | "
            f"{c['p']:.1e} ({c['dof']:.1f}) | {hsu:.1e} ({hsu_dof})"
        )
