"""Hydra callback: analyse a sweep as soon as its last run ends."""

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class AnalyzeSweep(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from depthsweep.analysis import analyze, verdict  # deferred: pandas/matplotlib are slow

        summary = analyze(config.hydra.sweep.dir)
        print(summary.to_string(index=False))
        print(verdict(summary))
