"""A launcher's worker processes and the signals that stop a sweep.

Ctrl-C reaches every process of the terminal's foreground job, the launcher's workers included.
A worker that is running a job takes it (`depthsweep.training.sweeper.stoppable_job`: it saves
its runs' checkpoints and returns); an idle one must not die of it: loky, joblib's process
pool, takes any worker's death for a broken pool and kills the others, mid-save (measured: one
fused group, two workers, the group left `running` without a checkpoint). Imported by each
worker as it starts, so this module imports nothing heavy.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import joblib
import joblib.parallel

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_stop_signals() -> None:
    """Each loky worker's initializer: SIGINT and SIGTERM ignored, but while it runs a job."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


@contextmanager
def stop_signals_to(
    handler: Callable[[int, Any], None], signals: tuple[signal.Signals, ...] = STOP_SIGNALS
) -> Iterator[None]:
    """While it lasts, `signals` (SIGINT and SIGTERM) go to `handler`; then to the handlers found
    before."""
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, found in previous.items():
            signal.signal(s, found)


@contextmanager
def loky_workers_ignoring_stop_signals() -> Iterator[None]:
    """While it lasts, joblib's loky pools start their workers with `ignore_stop_signals`.
    Loky takes an initializer, but Hydra's joblib launcher builds its Parallel(backend="loky")
    with no way to pass one, so the factory joblib registers under that name is replaced by one
    that passes it (register_parallel_backend), and restored afterwards."""
    loky = joblib.parallel.BACKENDS["loky"]
    with_initializer = functools.partial(loky, initializer=ignore_stop_signals)
    joblib.register_parallel_backend("loky", with_initializer)
    try:
        yield
    finally:
        joblib.register_parallel_backend("loky", loky)
