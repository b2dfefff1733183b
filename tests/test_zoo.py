"""The model zoo: checkpoints that describe themselves, loaded alone; listing, evaluating."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
from helpers import train_tiny, write_random_cifar10
from hydra.utils import instantiate
from omegaconf import OmegaConf

from depthsweep.apps import zoo
from depthsweep.runs.rundir import CHECKPOINT, CONFIG, METRICS, RUN_JSON
from depthsweep.training.build import build_net, make_module, make_trainer
from depthsweep.training.config import compose_config
from experiments import evaluate as evaluate_cli
from experiments import zoo as zoo_cli


@pytest.mark.parametrize("normalize", ["per_channel", "per_pixel_mean"])
def test_a_checkpoint_file_alone_gives_back_the_trained_net(fake_cifar, tmp_path, normalize):
    cfg = compose_config(
        [
            "trainer=cpu",
            "depth=8",
            "arch.shortcut=B",
            f"data.root={fake_cifar}",
            "data.batch_size=16",
            "data.classes=[truck,cat,bird]",
            f"data.normalize={normalize}",
            "schedule.iterations=3",
            "trainer.enable_progress_bar=false",
        ]
    )
    model = build_net(cfg)
    data = instantiate(cfg.data, _convert_="all")
    trainer = make_trainer(cfg, [], logger=False, enable_checkpointing=False)
    trainer.fit(make_module(cfg, model), datamodule=data)
    alone = tmp_path / "alone" / "model.ckpt"  # no run directory, no config.yaml around it
    alone.parent.mkdir()
    trainer.save_checkpoint(alone)

    loaded = zoo.load(alone)
    assert not loaded.model.training and loaded.classes == ["truck", "cat", "bird"]
    assert loaded.spec["arch"]["shortcut"] == "B" and loaded.spec["depth"] == 8
    images, labels = data.data.x_test, data.data.y_test
    inputs = data.on_after_batch_transfer((images, labels), 0)[0]  # as validation normalises
    assert torch.equal(loaded.preprocess(images), inputs)
    with torch.no_grad():
        assert torch.equal(loaded.model(inputs), model.eval()(inputs))


def test_a_run_directory_from_before_checkpoints_described_themselves_still_loads(
    fake_cifar, tmp_path
):
    run = tmp_path / "run"
    train_tiny(run, fake_cifar, "depth=8")
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    new = zoo.load(run).model
    del ckpt["hyper_parameters"]["spec"], ckpt["normalization"]
    torch.save(ckpt, run / CHECKPOINT)
    old = zoo.load(run)  # rebuilt from the run's config.yaml
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old.model(x), new(x))
    assert old.normalization[0].flatten().tolist() == pytest.approx([125.307, 122.950, 113.865])
    shutil.copy(run / CHECKPOINT, tmp_path / "old.ckpt")
    with pytest.raises(zoo.NotACheckpointError, match="load it from its run directory"):
        zoo.load(tmp_path / "old.ckpt")


def test_a_run_from_before_the_arch_node_held_only_constructor_options_still_loads(
    fake_cifar, tmp_path
):
    """Such runs kept the arch's name and warm-up depth in its node, in config.yaml and spec."""
    run = tmp_path / "run"
    train_tiny(run, fake_cifar, "depth=8", "arch=plain")
    new = zoo.load(run)
    ckpt = torch.load(run / CHECKPOINT, weights_only=True)
    spec = ckpt["hyper_parameters"]["spec"]
    spec["arch"] |= {"name": spec.pop("arch_name"), "warmup_from_depth": None}
    torch.save(ckpt, run / CHECKPOINT)
    old = zoo.load(run)
    assert old.spec == new.spec
    del ckpt["hyper_parameters"]["spec"]  # older still: only the run's config.yaml describes it
    torch.save(ckpt, run / CHECKPOINT)
    cfg = OmegaConf.to_container(OmegaConf.load(run / CONFIG))
    cfg["arch"] |= {"name": cfg.pop("arch_name"), "warmup_from_depth": None}
    OmegaConf.save(cfg, run / CONFIG)
    assert zoo.load(run).spec == new.spec
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old.model(x), new.model(x))


def test_a_checkpoint_of_an_arch_that_is_not_installed_says_so(fake_cifar, tmp_path):
    train_tiny(tmp_path / "run", fake_cifar, "depth=8")
    ckpt = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    ckpt["hyper_parameters"]["spec"]["arch"]["_target_"] = "depthsweep_extra.models.Inception"
    torch.save(ckpt, tmp_path / "inception.ckpt")
    with pytest.raises(zoo.ArchNotInstalledError, match="install the package that defines"):
        zoo.load(tmp_path / "inception.ckpt")


def test_what_is_not_a_depthsweep_checkpoint_is_named(tmp_path):
    (tmp_path / "noise.ckpt").write_bytes(b"\x80\x04not a checkpoint")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "weights.pt")
    for name in ("noise.ckpt", "weights.pt"):
        with pytest.raises(zoo.NotACheckpointError, match=f"{name} is not a depthsweep checkpoint"):
            zoo.load(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="has no checkpoints/last.ckpt"):
        zoo.load(tmp_path)


def test_the_zoo_lists_the_finished_runs(fake_cifar, tmp_path, capsys):
    train_tiny(tmp_path / "sweep" / "a", fake_cifar, "depth=8", "data.classes=[cat,dog]")
    train_tiny(tmp_path / "sweep" / "b", fake_cifar, "depth=14", "arch=plain")
    unfinished = tmp_path / "sweep" / "b" / RUN_JSON
    info = json.loads(unfinished.read_text())
    unfinished.write_text(json.dumps(info | {"status": "running"}))
    capsys.readouterr()  # training's output
    assert zoo_cli.main([str(tmp_path / "sweep")]) == 0
    table = zoo.list_runs([tmp_path / "sweep"])
    assert len(table) == 1
    row = table.iloc[0]
    metrics = pd.read_csv(tmp_path / "sweep" / "a" / METRICS)
    assert (row.arch, row.depth, row.classes) == ("resnet", 8, "cat,dog")
    assert row.final_test_error == metrics["test_error"].dropna().iloc[-1]
    assert row.params == json.loads((tmp_path / "sweep" / "a" / RUN_JSON).read_text())["params"]
    out = capsys.readouterr().out
    assert str(tmp_path / "sweep" / "a") in out and "plain" not in out
    assert zoo_cli.main([str(tmp_path / "nothing")]) == 2


def test_evaluate_reproduces_the_logged_final_test_error(fake_cifar, tmp_path, capsys):
    """Several eval batches, the last one short, a class subset and the paper's normalisation:
    evaluation has to batch, relabel and normalise exactly as training validated."""
    run = tmp_path / "run"
    train_tiny(
        run,
        fake_cifar,
        "depth=8",
        "data.eval_batch_size=7",
        "data.classes=[1,3,5,7,9,0,2]",
        "data.normalize=per_pixel_mean",
    )
    logged = pd.read_csv(run / METRICS)
    last = logged.dropna(subset=["test_error"]).iloc[-1]
    shutil.move(fake_cifar, tmp_path / "moved")
    capsys.readouterr()  # training's output
    assert evaluate_cli.main([str(run / CHECKPOINT), "--data-root", str(tmp_path / "moved")]) == 0
    out, err = capsys.readouterr()
    assert "note" not in err  # the same test set, moved
    printed = dict(line.split(": ") for line in out.splitlines())
    assert float(printed["test_error"]) == last["test_error"]
    assert float(printed["test_loss"]) == last["test_loss"]
    assert evaluate_cli.main([str(run)]) == 2  # the data is no longer at the run's data.root
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "cifar-10-batches-py" in err and "Point --data-root" in err  # evaluate's own option
    assert "data.root=" not in err and "data.download" not in err  # not a run's options


def test_evaluate_on_another_test_set_says_so(fake_cifar, tmp_path, capsys):
    """--data-root at other images scored them as if they were the run's test set, silently."""
    run = tmp_path / "run"
    train_tiny(run, fake_cifar, "depth=8")
    other = write_random_cifar10(tmp_path / "other", n_train=100, n_test=30)
    capsys.readouterr()
    assert evaluate_cli.main([str(run), "--data-root", str(other)]) == 0
    out, err = capsys.readouterr()
    assert "test_error: " in out
    assert err.startswith(f"note: {run / CHECKPOINT} was tested in training on 40 images")
    assert "these numbers on 30 (MD5 " in err and err.count("\n") == 1


def test_evaluate_prints_the_validation_splits_error_and_loss(fake_cifar, tmp_path, capsys):
    """A run trained with data.val_split: val_error and val_loss as its last logged ones, on
    its held-out last training images, besides test_error and test_loss."""
    run = tmp_path / "run"
    train_tiny(run, fake_cifar, "depth=8", "data.val_split=30", "data.eval_batch_size=7")
    last = pd.read_csv(run / METRICS).dropna(subset=["val_error"]).iloc[-1]
    capsys.readouterr()  # training's output
    assert evaluate_cli.main([str(run)]) == 0
    printed = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert set(printed) == {"test_error", "test_loss", "val_error", "val_loss"}
    assert {k: float(v) for k, v in printed.items()} == last[list(printed)].to_dict()


def test_a_file_torch_cannot_parse_is_not_a_checkpoint_in_one_line(fake_cifar, tmp_path, capsys):
    """torch.load raises KeyError on a text file, IndexError on a CSV and OSError on a truncated
    checkpoint: each is named as not a checkpoint, and a listing leaves such a run out."""
    sweep = tmp_path / "sweep"
    train_tiny(sweep / "whole", fake_cifar, "depth=8")
    shutil.copytree(sweep / "whole", sweep / "cut")
    (sweep / "cut" / CHECKPOINT).write_bytes((sweep / "whole" / CHECKPOINT).read_bytes()[:50_000])
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    capsys.readouterr()  # training's output
    for path in (tmp_path / "text.ckpt", sweep / "whole" / METRICS, sweep / "cut"):
        assert evaluate_cli.main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert "is not a depthsweep checkpoint" in err
    assert zoo_cli.main([str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert str(sweep / "whole") in out and str(sweep / "cut") not in out
    assert err.startswith(f"warning: left out {sweep / 'cut'}: ") and err.count("\n") == 1


def test_a_checkpoint_path_that_cannot_be_read_says_so_not_that_it_is_no_checkpoint(tmp_path):
    """A folder where a checkpoint file was expected (or a file without read permission) is
    unreadable, which says nothing about what it holds."""
    (tmp_path / "last.ckpt").mkdir()
    with pytest.raises(zoo.NotACheckpointError, match=r"last\.ckpt cannot be read: Is a directory"):
        zoo._read_checkpoint(tmp_path / "last.ckpt")
