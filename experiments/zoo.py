"""List the finished runs under some directories, the models of the zoo:

    python -m experiments.zoo DIR [DIR ...]

One row per finished run (run.json status done, with a checkpoints/last.ckpt that loads; one that
does not is named on stderr, with why): arch, depth, seed,
classes (data.classes, or all), params, macs (multiply-adds per image), final_test_error (the last
logged, %), path (load it with depthsweep.apps.zoo.load, evaluate it with experiments.evaluate,
transfer it with experiments.transfer transfer.source=PATH).
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.apps.zoo import list_runs
from depthsweep.errors import UserError
from experiments.exits import interruptible


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit status 2 when a directory does not exist or no finished run was
    found. A finished run whose checkpoint cannot be loaded is named on stderr, with why."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep or run directories")
    args = parser.parse_args(argv)
    unusable: list[str] = []
    try:
        table = list_runs(args.dirs, unusable)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in unusable:
        print(f"warning: left out {line}", file=sys.stderr)
    if table.empty:
        print(f"no finished runs under {', '.join(args.dirs)}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(interruptible(main))
