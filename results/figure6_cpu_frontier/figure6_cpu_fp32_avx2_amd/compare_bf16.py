"""fp32 with AVX2 kernels (this folder) against the experiment as committed (bf16 channels-last,
fused, AVX-512: results/figure6_cpu), one two-sided Welch test per arch and depth on the three
seeds' final errors. From the repository root, with the package installed:

    python results/figure6_cpu_frontier/figure6_cpu_fp32_avx2_amd/compare_bf16.py \
        > results/figure6_cpu_frontier/figure6_cpu_fp32_avx2_amd/compare_bf16.txt
"""

from pathlib import Path

import pandas as pd
from scipy import stats

here = Path(__file__).parent
bf16, fp32 = (pd.read_csv(d / "summary.csv") for d in (here.parents[1] / "figure6_cpu", here))
for col in ("final_train_error", "final_test_error"):
    for (arch, depth), x in bf16.groupby(["arch", "depth"]):
        y = fp32[(fp32.arch == arch) & (fp32.depth == depth)][col]
        t, p = stats.ttest_ind(y, x[col], equal_var=False)
        print(
            f"{col} {arch}-{depth}: bf16 {x[col].mean():.2f}, fp32 {y.mean():.2f}, "
            f"difference {y.mean() - x[col].mean():+.2f}, Welch t {t:+.2f}, p {p:.2g}"
        )
