"""Why residual nets train, measured on a sweep's runs:

    python -m experiments.diagnose SWEEP_OR_RUN_DIR [--what grad,responses,lesion,zero_init]
                                   [--data-root DIR] [--limit N] [--grad-steps first,last]

Writes grad_flow, layer_responses and lesion (.csv, .png, .svg) and zero_init (.png, .svg) into
the directory given, and prints each file written. --data-root points at the CIFAR-10 folder if
the data has moved since training; --limit uses only the first N test images (quicker on a CPU);
--grad-steps picks the iterations of the gradient-flow figure: first, last, or numbers (nearest
logged iteration).
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.analysis.diagnostics import DIAGNOSTICS, diagnose
from depthsweep.errors import OptionError, check_count
from experiments.exits import interruptible


def _steps(text: str) -> list[str | int]:
    try:
        return [s if s in ("first", "last") else int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("first, last or iteration numbers") from None


def _diagnostics(text: str) -> tuple[str, ...]:
    what = tuple(w for w in text.split(",") if w)
    if not what or set(what) - set(DIAGNOSTICS):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {','.join(DIAGNOSTICS)}")
    return what


def main(argv: list[str] | None = None) -> int:
    """Run the diagnostics; exit status 2 when nothing was written (no runs, or no inputs), or on
    a bad --limit (one line, before anything is written)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a sweep directory, or one run directory (has run.json)")
    parser.add_argument("--what", type=_diagnostics, default=DIAGNOSTICS, metavar="LIST")
    parser.add_argument("--data-root", help="where CIFAR-10 is now, if not at the runs' data.root")
    parser.add_argument("--limit", type=int, help="only the first N test images")
    parser.add_argument("--grad-steps", type=_steps, default=["first", "last"], metavar="LIST")
    args = parser.parse_args(argv)
    try:  # before any diagnostic: the gradient-flow files would be written before the data is read
        check_count("--limit", args.limit, minimum=1, none="omitted for every test image")
    except OptionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = diagnose(
        args.path, args.what, data_root=args.data_root, limit=args.limit, grad_steps=args.grad_steps
    )
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 2


if __name__ == "__main__":
    sys.exit(interruptible(main))
