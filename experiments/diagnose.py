"""Why residual nets train, measured on a sweep's runs:

    python -m experiments.diagnose SWEEP_OR_RUN_DIR [what=grad,responses,lesion,zero_init]
                                   [data.root=DIR] [limit=N] [grad_steps=first,last]

Writes grad_flow, layer_responses and lesion (.csv, .png, .svg) and zero_init (.png, .svg) into
the directory given, and prints each file written. `data.root` points at the CIFAR-10 folder if the
data has moved since training; `limit` uses only the first N test images (quicker on a CPU);
`grad_steps` picks the iterations of the gradient-flow figure: first, last, or numbers (nearest
logged iteration).
"""

from __future__ import annotations

import argparse
import sys

from depthsweep.diagnostics import WHAT, diagnose

KEYS = ("what", "data.root", "limit", "grad_steps")


def key_value(arg: str) -> tuple[str, str]:
    key, sep, value = arg.partition("=")
    if not sep or key not in KEYS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(k + '=' for k in KEYS)}")
    return key, value


def main(argv: list[str] | None = None) -> int:
    """Run the diagnostics; exit status 2 when nothing was written (no runs, or no inputs)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path", help="a sweep directory, or one run directory (has run.json)")
    parser.add_argument("options", nargs="*", type=key_value, metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    opts = dict(args.options)
    what = tuple(w for w in opts.get("what", ",".join(WHAT)).split(",") if w)
    if set(what) - set(WHAT):
        parser.error(f"what= takes a comma-separated subset of {','.join(WHAT)}")
    try:
        limit = int(opts["limit"]) if "limit" in opts else None
        steps = [
            s if s in ("first", "last") else int(s)
            for s in opts.get("grad_steps", "first,last").split(",")
        ]
    except ValueError as e:
        parser.error(f"limit= takes a number, grad_steps= first, last or numbers: {e}")
    written = diagnose(
        args.path, what, data_root=opts.get("data.root"), limit=limit, grad_steps=steps
    )
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 2


if __name__ == "__main__":
    sys.exit(main())
