"""Every number two runs of figure6_cpu logged, compared: each run's metrics.csv cell by cell
(wall_time aside, the seconds each took) and the verdict. Made at_5904560_compare.txt:

    python results/figure6_cpu/same_numbers.py results/figure6_cpu /tmp/f6/multirun/figure6_cpu
"""

import sys
from pathlib import Path

import pandas as pd

old, new = (Path(a) for a in sys.argv[1:3])
runs = sorted(d.name for d in old.glob("arch=*"))
assert runs == sorted(d.name for d in new.glob("arch=*")), "not the same runs"
cells = differ = 0
for run in runs:
    a = pd.read_csv(old / run / "metrics.csv").drop(columns=["wall_time"])
    b = pd.read_csv(new / run / "metrics.csv").drop(columns=["wall_time"])
    assert list(a.columns) == list(b.columns) and a.shape == b.shape, run
    same = (a == b) | (a.isna() & b.isna())
    cells += same.size
    differ += int((~same).to_numpy().sum())
print(f"{old} against {new}")
print(f"{len(runs)} runs, {cells} cells of metrics.csv (wall_time aside): {differ} differ")
verdict = (old / "verdict.json").read_text() == (new / "verdict.json").read_text()
print(f"verdict.json: {'the same' if verdict else 'DIFFERS'}")
