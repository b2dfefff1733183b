"""How the entry points end on a fault: at once, in one line on stderr, with an exit code of
depthsweep.errors; the Hydra ones (experiments.run, experiments.transfer) on a setup error or a
bug, the others on Ctrl-C (`interruptible`). HYDRA_FULL_ERROR=1 raises instead, and Python or
Hydra prints the traceback."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from depthsweep.errors import INTERRUPTED, UNEXPECTED, USER_ERROR, full_error
from depthsweep.runs.rundir import remove_empty_parents, remove_unstarted

# What Hydra, a launcher and the sweeper write into a sweep directory before its first run.
SWEEP_BEFORE_START = {"multirun.yaml", ".submitit", ".fused", ".interrupted"}


def discard(run_dir: Path, sweep: bool) -> None:
    """A setup error leaves nothing behind: the run's directory, if Hydra made it for this run
    (it holds no run), and a sweep's directory if no run is left in it, then the parents that
    are left empty below the working directory (runs/, multirun/)."""
    remove_unstarted(run_dir, keep=Path.cwd())
    sweep_dir = run_dir.absolute().parent
    if sweep and sweep_dir.is_dir() and {p.name for p in sweep_dir.iterdir()} <= SWEEP_BEFORE_START:
        shutil.rmtree(sweep_dir)
        remove_empty_parents(sweep_dir, Path.cwd())


def setup_error(e: Exception, run_dirs: Iterable[Path], sweep: bool) -> NoReturn:
    """A setup error (errors.UserError): its message alone, exit 2, nothing left behind. Call it
    from the `except` clause that caught `e`."""
    for run_dir in run_dirs:
        discard(run_dir, sweep)
    if full_error():
        raise e
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(USER_ERROR) from None


def unexpected_error(e: Exception, where: Sequence[Path]) -> NoReturn:
    """A fault outside what a run checks and records (a bug, a directory that cannot be
    written): said now, in one line naming where, exit 1; in a sweep, it stops there rather than
    be reported only at its end."""
    if full_error():
        raise e
    print(f"error: {', '.join(map(str, where))}: {type(e).__name__}: {e}", file=sys.stderr)
    raise SystemExit(UNEXPECTED) from None


def interruptible(main: Callable[[], int]) -> int:
    """`main()`'s exit status, or on Ctrl-C one line and 130 instead of a traceback: what an
    analysis entry point (analyze, calibrate, diagnose, evaluate, frontier, zoo) writes, it
    writes whole (files.atomic_write*), so a stop leaves each file as it was or as it is now."""
    try:
        return main()
    except KeyboardInterrupt:
        if full_error():
            raise
        print("interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED["SIGINT"]
