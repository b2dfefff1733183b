"""The config: experiment files compose to the paper's sweep, and a new architecture is one class
plus one config file, with no change to the runner or the analysis."""

from __future__ import annotations

import pytest

from depthsweep.analysis.report import analyze
from depthsweep.errors import OptionError
from depthsweep.nets.models import CifarNet, PlainBlock
from depthsweep.training.build import make_trainer
from depthsweep.training.config import compose_config
from depthsweep.training.train import train


class ThinBlock(PlainBlock):
    """A user's own block: one conv layer per block, so depth = 3n + 2."""

    layers = 1

    def branch(self, x):
        return self.bn1(self.conv1(x))


class ThinNet(CifarNet):
    block = ThinBlock


def test_figure6_experiment_is_the_papers_grid():
    cfg = compose_config(["experiment=figure6"], hydra=True)
    assert cfg.name == "figure6"
    assert dict(cfg.hydra.sweeper.params) == {"arch": "plain,resnet", "depth": "20,32,44,56,110"}
    assert cfg.schedule.iterations == 64_000 and cfg.data.batch_size == 128


def test_new_architecture_needs_one_class_and_one_config_file(fake_cifar, tmp_path):
    (tmp_path / "conf" / "arch").mkdir(parents=True)
    (tmp_path / "conf" / "arch" / "thin.yaml").write_text(
        "# @package _global_\narch_name: thin\narch:\n  _target_: test_config.ThinNet\n"
    )
    overrides = [
        "arch=thin",
        "depth=11",  # 3n+2 with n=3
        f"data.root={fake_cifar}",
        "schedule.iterations=4",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
    ]
    assert train(compose_config(overrides), tmp_path / "sweep" / "arch=thin,depth=11") == "done"
    summary = analyze(tmp_path / "sweep")
    row = summary.iloc[0]
    assert (row.arch, row.depth, row.status, row.iterations) == ("thin", 11, "done", 4)
    assert row.params == sum(p.numel() for p in ThinNet(11).parameters())


def test_configured_loggers_and_callbacks_are_used_beside_the_csv(fake_cifar, tmp_path):
    extra, seen = tmp_path / "extra_logs", tmp_path / "callback_saw"
    cfg = compose_config(
        [
            *["trainer=cpu", "depth=8", f"data.root={fake_cifar}", "data.batch_size=20"],
            *["schedule.iterations=10", "trainer.enable_progress_bar=false"],
            "+logger.extra._target_=pytorch_lightning.loggers.CSVLogger",
            f"+logger.extra.save_dir={extra}",
            "+callbacks.recorder._target_=helpers.RecordingCallback",
            f"+callbacks.recorder.path={seen}",
        ]
    )
    run_dir = tmp_path / "run"
    assert train(cfg, run_dir) == "done"
    (logged,) = extra.glob("*/*/metrics.csv")  # lightning_logs/version_0/metrics.csv
    assert "train_error" in logged.read_text().splitlines()[0]
    assert (run_dir / "metrics.csv").is_file()  # the analysis' CSV is still written
    assert seen.read_text() == "10"


def test_loggers_set_on_the_trainer_are_refused(tmp_path):
    cfg = compose_config(["+trainer.logger=false"])
    with pytest.raises(OptionError, match=r"trainer.logger would replace .* logger=NAME"):
        make_trainer(cfg, [])
