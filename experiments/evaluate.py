"""Evaluate a zoo model on its run's test set:

    python -m experiments.evaluate RUN_DIR_OR_CKPT [--data-root DIR] [--precision P]

Rebuilds the net from the checkpoint alone and runs training's own validation on it (the data
module of the recorded data config: its classes, normalisation and eval batches), so a run's last
logged test_error is reproduced exactly. Prints test_error (%) and test_loss, unrounded (and
val_error, val_loss for a run with data.val_split). --data-root points at CIFAR-10 if it has
moved since training; where its test set is not the one the run was tested on, a note on stderr
says so (the numbers are then another test set's).
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.apps.zoo import evaluate
from depthsweep.errors import UserError
from experiments.exits import interruptible


def note(line: str) -> None:
    print(line, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Print the metrics; exit status 2 on a path, checkpoint, data set or precision that cannot
    be used (one line)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a finished run directory or a checkpoint file")
    parser.add_argument("--data-root", help="where CIFAR-10 is now, if not at the run's data.root")
    parser.add_argument(
        "--precision",
        default="32-true",
        help="Lightning precision (default 32-true; bf16-mixed reproduces a bf16 GPU run)",
    )
    args = parser.parse_args(argv)
    try:
        metrics = evaluate(args.path, args.data_root, args.precision, say=note)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, value in metrics.items():  # unrounded, to compare with metrics.csv
        print(f"{name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(interruptible(main))
