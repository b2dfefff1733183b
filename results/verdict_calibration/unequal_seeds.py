"""The verdict's error rates where one depth has a seed fewer than the others and 6x their seed
SD: with its degrees of freedom (Hsu's where seed counts differ) and with Welch's everywhere.
From the repository root, with the package installed:

    python results/verdict_calibration/unequal_seeds.py > \
        results/verdict_calibration/unequal_seeds.txt
"""

from unittest import mock

from depthsweep.analysis import calibration, verdict

DEPTHS, DRAWS = calibration.DEPTHS, 20_000
CASES = {  # name: (truth, seeds per depth, seed SD per depth, the rates that are false ones)
    "one step of each trend null; 56 at 2 seeds and 6x SD, others 3": (
        calibration.ONE_STEP_NULL,
        {**dict.fromkeys(DEPTHS, 3), 56: 2},
        {**dict.fromkeys(DEPTHS, 0.2), 56: 1.2},
        ["plain trend supported", "resnet trend supported"],
    ),
    "flat (a true claim's limit); 110 at 2 seeds and 6x SD, others 3": (
        calibration.FLAT,
        {**dict.fromkeys(DEPTHS, 3), 110: 2},
        {**dict.fromkeys(DEPTHS, 0.2), 110: 1.2},
        ["outcome not reproduced"],
    ),
}

print(f"share of {DRAWS:,} sweeps (nominal {verdict.ALPHA}); calibration.rates, seeds 40 and 41")
for seed, (name, (truth, seeds, sd, keys)) in enumerate(CASES.items(), start=40):
    for dof in ("the verdict's (Hsu where seeds differ)", "Welch's everywhere"):
        used = verdict.welch_dof if "Welch" in dof else verdict.degrees_of_freedom
        with mock.patch.object(verdict, "degrees_of_freedom", used):
            got = calibration.rates(truth, seeds, sd, draws=DRAWS, seed=seed)
        print(f"{name} | {dof}: " + ", ".join(f"{k} {got[k]:.4f}" for k in keys))
