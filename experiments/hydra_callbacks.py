"""Hydra callbacks of the entry points (conf/config.yaml, conf/transfer.yaml): check that a sweep
can write where it is asked to, analyse it (and optionally diagnose it) as soon as its last run
ends, and exit with experiments.run's codes; a transfer sweep's report. Part of the entry points,
so the one place besides them that ends the process with SystemExit."""

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from depthsweep.errors import RUN_FAILED, UNEXPECTED, USER_ERROR, full_error


def _check_writable(directory: str) -> None:
    """One clear line, not an OSError from deep inside Hydra, where the output cannot go. Tried,
    not inferred from permission bits: root passes those everywhere, and /proc or a read-only
    mount refuse new directories whatever they say."""
    path = Path(directory).absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    fault = None if existing.is_dir() else "is not a directory"
    if fault is None:
        try:
            tempfile.TemporaryDirectory(dir=existing, prefix=".depthsweep-probe-").cleanup()
        except OSError as e:
            fault = f"does not take new directories ({e.strerror or e})"
    if fault:
        print(f"error: cannot write {path}: {existing} {fault}", file=sys.stderr)
        raise SystemExit(USER_ERROR)


class AnalyzeSweep(Callback):
    def __init__(self, diagnose: Sequence[str] = ()) -> None:
        self.diagnose = list(diagnose)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Imported here, not at the top: Hydra loads this callback before launching the runs,
        # which should not wait for pandas, matplotlib and the diagnostics.
        from depthsweep.analysis.diagnostics import diagnose
        from depthsweep.analysis.report import WRITTEN, analyze
        from depthsweep.analysis.summaries import CUT_OFF, console_table, verdict

        sweep_dir = config.hydra.sweep.dir
        # Hydra turns a callback's exception into a warning and exits 0: say it here, exit 1.
        try:
            summary = analyze(sweep_dir)
        except OSError as e:  # a full disk: the runs are recorded, only their summary is missing
            why = e.strerror or e
            print(
                f"error: cannot write the summary into {sweep_dir}: {why}; the runs are recorded:"
                f" make room, then python -m experiments.analyze {sweep_dir}",
                file=sys.stderr,
            )
            raise SystemExit(UNEXPECTED) from None
        except Exception as e:  # a bug in the analysis: the runs are recorded all the same
            if full_error():
                raise
            print(
                f"error: analysing {sweep_dir}: {type(e).__name__}: {e}; the runs are recorded"
                f" (HYDRA_FULL_ERROR=1 python -m experiments.analyze {sweep_dir} shows where)",
                file=sys.stderr,
            )
            raise SystemExit(UNEXPECTED) from None
        print(console_table(summary))
        print(verdict(summary))
        print(
            f"in {Path(sweep_dir).absolute()}: {WRITTEN}; python -m experiments.analyze "
            f"{sweep_dir} writes them again"
        )
        if self.diagnose:
            diagnose(sweep_dir, what=self.diagnose)
        bad = summary[summary["status"].isin(["failed", "interrupted", CUT_OFF])]
        if len(bad):
            print(
                f"error: {len(bad)} run(s) failed, were interrupted or have their metrics cut off:"
                " see summary.md",
                file=sys.stderr,
            )
            raise SystemExit(RUN_FAILED)


class TransferReport(Callback):
    """transfer.csv and its figure, when a transfer sweep (experiments.transfer -m) ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from depthsweep.analysis.transfer_report import write_report  # deferred: as AnalyzeSweep's

        sweep_dir = config.hydra.sweep.dir
        table = write_report(sweep_dir)
        print(table[["freeze", "labels_per_class", "seed", "test_error"]].to_string(index=False))
        print(f"in {Path(sweep_dir).absolute()}: transfer.csv and transfer.png (and .svg)")
