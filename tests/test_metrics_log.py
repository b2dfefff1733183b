"""metrics.csv as training writes it: continued across resumes, widened without losing a row."""

from __future__ import annotations

import pandas as pd
import torch

from depthsweep.training.metrics_log import FLUSH_EVERY, AppendingCSVLogger


def test_a_resumed_log_appends_and_a_new_column_keeps_every_row(tmp_path):
    first = AppendingCSVLogger(tmp_path)
    first.log_metrics({"train_error": torch.tensor(50.0), "epoch": 0}, step=0)
    first.log_metrics({"train_error": 40.5, "epoch": 0}, step=1)
    first.finalize("success")
    written = (tmp_path / "metrics.csv").read_text()
    assert written.splitlines() == ["epoch,step,train_error", "0,1,50.0", "0,2,40.5"]

    resumed = AppendingCSVLogger(tmp_path)  # the same file, continued, not started over
    resumed.log_metrics({"train_error": 30.0, "epoch": 1}, step=2)
    assert resumed.has_value(2, "train_error") and not resumed.has_value(3, "train_error")
    resumed.save()
    assert resumed.has_value(3, "train_error")
    assert (tmp_path / "metrics.csv").read_text().startswith(written)

    resumed.log_metrics({"test_error": 60.0, "epoch": 1}, step=2)  # a column first seen
    resumed.save()
    frame = pd.read_csv(tmp_path / "metrics.csv")
    assert list(frame.columns) == ["epoch", "step", "test_error", "train_error"]
    assert frame["step"].tolist() == [1, 2, 3, 3]
    assert frame["train_error"].tolist()[:3] == [50.0, 40.5, 30.0]
    assert frame["test_error"].isna().tolist() == [True, True, True, False]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]  # no temporary file left


def test_rows_are_written_every_flush_and_hyperparameters_as_yaml(tmp_path):
    log = AppendingCSVLogger(tmp_path)
    for step in range(FLUSH_EVERY - 1):
        log.log_metrics({"lr": 0.1}, step=step)
    assert not (tmp_path / "metrics.csv").exists()  # kept in memory until the FLUSH_EVERYth
    log.log_metrics({"lr": 0.1}, step=FLUSH_EVERY - 1)
    assert len(pd.read_csv(tmp_path / "metrics.csv")) == FLUSH_EVERY
    log.log_hyperparams({"depth": 20})
    assert (tmp_path / "hparams.yaml").read_text() == "depth: 20\n"
