"""Hydra callback: analyse a sweep (and optionally diagnose it) as soon as its last run ends."""

from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class AnalyzeSweep(Callback):
    def __init__(self, diagnose: Sequence[str] = ()) -> None:
        self.diagnose = list(diagnose)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Imported here, not at the top: Hydra loads this callback before launching the runs,
        # which should not wait for pandas, matplotlib and the diagnostics.
        from depthsweep.analysis import verdict
        from depthsweep.diagnostics import diagnose
        from depthsweep.report import analyze

        sweep_dir = config.hydra.sweep.dir
        summary = analyze(sweep_dir)
        print(summary.to_string(index=False))
        print(verdict(summary))
        if self.diagnose:
            diagnose(sweep_dir, what=self.diagnose)


class TransferReport(Callback):
    """transfer.csv and its figure, when a transfer sweep (experiments.transfer -m) ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from depthsweep.transfer_report import write_report  # deferred: as AnalyzeSweep's

        table = write_report(config.hydra.sweep.dir)
        print(table[["freeze", "labels_per_class", "seed", "test_error"]].to_string(index=False))
