"""List the finished runs under some directories, the models of the zoo:

    python -m experiments.zoo DIR [DIR ...]

One row per finished run (run.json status done, with checkpoints/last.ckpt): arch, depth, seed,
classes (data.classes, or all), params, macs (multiply-adds per image), final_test_error (the last
logged, %), path (load it with depthsweep.apps.zoo.load, evaluate it with experiments.evaluate,
transfer it with experiments.transfer transfer.source=PATH).
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.apps.zoo import list_runs


def main(argv: list[str] | None = None) -> int:
    """Print the table; exit status 2 when no finished run was found."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep or run directories")
    args = parser.parse_args(argv)
    table = list_runs(args.dirs)
    if table.empty:
        print(f"no finished runs under {', '.join(args.dirs)}", file=sys.stderr)
        return 2
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
