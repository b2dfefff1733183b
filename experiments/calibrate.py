"""How often the verdict errs: `python -m experiments.calibrate [OUT_DIR]`.

Draws sweeps from known truths (depthsweep.analysis.calibration.SCENARIOS: a flat truth, one
collapsed depth, a truth shaped like the paper's, effects of one seed SD) at 2, 3 and 5 seeds and
seed SDs of 0.2 and 0.4 points, judges each with the verdict's own decision and writes the rates
of each part and outcome to OUT_DIR/calibration.csv and calibration.md (default:
results/verdict_calibration).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from depthsweep.analysis.calibration import table
from depthsweep.analysis.verdict import ALPHA
from depthsweep.errors import OptionError, check_count
from depthsweep.files import atomic_write_text
from experiments.exits import interruptible

SHOWN = {
    "scenario": "truth",
    "seeds": "seeds",
    "seed_sd": "seed SD",
    "plain trend supported": "plain rises",
    "resnet trend supported": "resnet falls",
    "resnet below plain supported": "resnet < plain",
    "outcome reproduced": "reproduced",
    "outcome not reproduced": "NOT reproduced",
    "what": "what the rates are",
}


def main(argv: list[str] | None = None) -> int:
    """Draw, print and write the table; exit status 2 on a bad --draws or a folder that cannot
    be written (one line, before any drawing)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="?",
        default="results/verdict_calibration",
        type=Path,
        help="where to write calibration.csv and calibration.md (default: "
        "results/verdict_calibration/, the committed results, which a run rewrites)",
    )
    parser.add_argument("--draws", type=int, default=4000, help="sweeps per row (4000)")
    args = parser.parse_args(argv)
    try:  # before the minutes of drawing: no rate of 0 draws
        check_count("--draws", args.draws, minimum=1)
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:  # before the minutes of drawing: a folder that takes a file
        args.out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=args.out).close()
    except OSError as e:
        print(f"error: cannot write into {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    rates = table(draws=args.draws)
    atomic_write_text(args.out / "calibration.csv", rates.to_csv(index=False))
    rows = [
        [str(r[k]) if k in ("scenario", "seeds", "seed_sd", "what") else f"{100 * r[k]:.1f}%"
         for k in SHOWN]
        for r in rates.to_dict("records")
    ]  # fmt: skip
    text = "\n".join(
        [
            f"# The verdict's rates by Monte Carlo ({args.draws:,} sweeps a row)",
            "",
            "`python -m experiments.calibrate` (depthsweep.analysis.calibration): each part is "
            f"supported at a one-sided p < {ALPHA}, refuted at {ALPHA} / the comparisons planned.",
            "",
            "| " + " | ".join(SHOWN.values()) + " |",
            "|---|---:|---:|" + "---:|" * 5 + "---|",
            *["| " + " | ".join(row) + " |" for row in rows],
            "",
        ]
    )
    atomic_write_text(args.out / "calibration.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(interruptible(main))
