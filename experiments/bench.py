"""Time the harness's training variants against a plain PyTorch loop; project the Figure 6 sweep.

    python -m experiments.bench --data-root data        # GPU: depths 20,56,110, batch 128
    python -m experiments.bench --jobs 4                # + 1, 2, 4 concurrent processes
    python -m experiments.bench --variants graph-bf16 --no-reference --depths 110
    python -m experiments.bench data.eval_batch_size=500   # any override, for every variant

    python -m experiments.bench --variants graph-bf16,fused-4,fused-10 --depths 20,110

Variants: default (the config as composed), eager-fp32, eager-bf16, graph-fp32, graph-bf16 (each
step's forward and backward replayed as one CUDA graph), fused-2/4/6/8/10 (K runs of the config
as composed trained as one fused network: ms per group step, images/s summed over its members).
Default: the four eager/graph ones on a GPU, `default` on a CPU, where it picks tiny sizes by
itself and says so.
Data: --data-root, else the config's data.root (downloaded there if missing and online).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depthsweep.errors import USER_ERROR, UserError
from depthsweep.tools.bench import NothingMeasured, default_settings, run
from depthsweep.training.config import device_for


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    """Measure and report; exit status 2 on a bad option or missing data, 1 if nothing could be
    timed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides for the harness, KEY=VALUE")
    p.add_argument("--data-root", help="folder holding cifar-10-batches-py/")
    p.add_argument("--archs", type=lambda t: t.split(","), help="default: plain,resnet")
    p.add_argument("--depths", type=_ints, help="default: 20,56,110 (CPU: 8,20)")
    p.add_argument("--steps", type=int, help="timed steps per measurement (default 100, CPU 10)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 20, CPU 3)")
    p.add_argument("--batch", type=int, help="default 128 (CPU 32)")
    p.add_argument("--workers", type=int, help="reference DataLoader workers (min(8, CPUs))")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's; CPU: 1)")
    p.add_argument("--jobs", type=int, help="also time 1, 2, 4, ... JOBS concurrent processes")
    p.add_argument("--variants", type=lambda t: t.split(","), help="variants to time (above)")
    p.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        default=None,
        help="skip the reference loop",
    )
    p.add_argument("--out", type=Path, help="CSV to write (default: bench.csv here)")
    args = vars(p.parse_args(argv))
    settings, note = default_settings(device_for(), **args)
    try:
        run(settings, note)
    except UserError as e:  # a bad option, no data: one line
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR
    except NothingMeasured as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
