"""The config: experiment files compose to the paper's sweep, and a new architecture is one class
plus one config file, with no change to the runner or the analysis."""

from __future__ import annotations

from depthsweep.config import compose_config
from depthsweep.models import CifarNet, PlainBlock
from depthsweep.report import analyze
from depthsweep.train import train


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
        "_target_: test_config.ThinNet\nname: thin\n"
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
