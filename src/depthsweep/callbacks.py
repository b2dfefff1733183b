"""Hydra callback: analyse a sweep (and optionally diagnose it) as soon as its last run ends."""

from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class AnalyzeSweep(Callback):
    def __init__(self, diagnose: Sequence[str] = ()) -> None:
        self.diagnose = list(diagnose)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # deferred: the launcher should not pay for pandas and matplotlib before the runs
        from depthsweep.analysis import analyze, verdict
        from depthsweep.diagnostics import diagnose

        sweep_dir = config.hydra.sweep.dir
        summary = analyze(sweep_dir)
        print(summary.to_string(index=False))
        print(verdict(summary))
        if self.diagnose:
            diagnose(sweep_dir, what=self.diagnose)
