"""A run's metrics.csv and hparams.yaml, continued across resumes, `step` counting iterations done.

Written by hand on Lightning's public Logger base rather than by its CSVLogger: CSVLogger's writer
deletes an existing metrics.csv when it starts (a resumed run must append to it) and offers no
public way to keep it, and it rewrites the file in place when a column first appears (a crash
then leaves half a file). The format is CSVLogger's: a header of the columns sorted by name, a row
per logged step, empty where a row has no value.
"""

from __future__ import annotations

import csv
from argparse import Namespace
from pathlib import Path
from typing import Any

from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities import rank_zero_only
from torch import Tensor

from depthsweep.files import atomic_write

METRICS_FILE = "metrics.csv"
FLUSH_EVERY = 100  # rows kept in memory before they are written (CSVLogger's default)


class AppendingCSVLogger(Logger):
    """Logs to `<run_dir>/metrics.csv` (appended to where it exists) and `hparams.yaml`."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS_FILE
        self.rows: list[dict[str, Any]] = []  # logged, not yet written
        self.columns: list[str] | None = None  # the file's header, read when first needed

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def log_dir(self) -> str:
        return str(self.run_dir)

    @property
    def save_dir(self) -> str:
        return str(self.run_dir)

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params or {})
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_hparams_to_yaml(self.run_dir / "hparams.yaml", params)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        # The one place the step convention changes: Lightning passes the 0-based index of the
        # current batch; `step` in our CSV counts the iterations done, like the paper's x axis and
        # the checkpoint's global_step.
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics.items()}
        row["step"] = len(self.rows) if step is None else step + 1
        self.rows.append(row)
        if len(self.rows) >= FLUSH_EVERY:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        """Write the rows logged so far: appended, or the whole file rewritten atomically where a
        new column widens the header."""
        if not self.rows:
            return
        if self.columns is None:
            self.columns = self._header()
        new = set().union(*self.rows) - set(self.columns)
        if new or not self.path.is_file():
            earlier = self._read() if self.path.is_file() else []
            self.columns = sorted({*self.columns, *new})
            atomic_write(self.path, lambda tmp: self._write(tmp, "w", earlier + self.rows))
        else:
            self._write(self.path, "a", self.rows)
        self.rows = []

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()

    def has_value(self, step: int, column: str) -> bool:
        """Whether metrics.csv has a row at `step` (iterations done) with a value in `column`."""
        return any(r.get("step") == str(step) and r.get(column) for r in self._read())

    def _header(self) -> list[str]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return next(csv.reader(f), [])

    def _read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _write(self, path: Path, mode: str, rows: list[dict[str, Any]]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(path, mode, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)
