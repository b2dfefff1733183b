"""Lightning's CSV logger, continued across resumes, writing `step` as iterations done."""

from __future__ import annotations

import csv
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; a resumed run must append to it.
    `_check_log_dir_exists` is private, but Lightning offers no public way to append."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing `<run_dir>/metrics.csv`, continued across resumes."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment

    def has_value(self, step: int, column: str) -> bool:
        """Whether metrics.csv has a row at `step` (iterations done) with a value in `column`."""
        path = Path(self.experiment.metrics_file_path)
        if not path.is_file():
            return False
        with open(path, newline="") as f:
            return any(r.get("step") == str(step) and r.get(column) for r in csv.DictReader(f))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # The one place the step convention changes: Lightning passes the 0-based index of the
        # current batch; `step` in our CSV counts the iterations done, like the paper's x axis and
        # the checkpoint's global_step.
        super().log_metrics(metrics, None if step is None else step + 1)
