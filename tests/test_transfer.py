"""Transfer learning from a zoo model: the labelled draw, frozen layers, the features cache, the
head trained on it, bad input, and a sweep's report."""

from __future__ import annotations

import copy
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import run_cli, train_tiny, write_random_cifar10
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from depthsweep.analysis.transfer_report import collect
from depthsweep.apps import transfer as tr
from depthsweep.apps import zoo
from depthsweep.errors import USER_ERROR, OptionError
from depthsweep.runs.rundir import CHECKPOINT, ConfigMismatchError, RunRecord, find_runs
from depthsweep.training.config import CONF_DIR
from depthsweep.training.data import DatasetMissingError
from depthsweep.training.overrides import check_added_keys, command_line_error
from experiments import transfer_bench
from experiments.transfer import source_error, unread_key_error

SOURCE_CLASSES = "[airplane,automobile,bird,cat,deer]"


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A tiny resnet-8 trained on the first five classes of random images."""
    root = write_random_cifar10(tmp_path_factory.mktemp("data"), n_train=600, n_test=200)
    run = tmp_path_factory.mktemp("source")
    train_tiny(run, root, "depth=8", f"data.classes={SOURCE_CLASSES}")
    return run


def transfer_cfg(source: Path, cache: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="t"):
        return compose(
            "transfer",
            [
                "trainer=cpu",
                "trainer.enable_progress_bar=false",
                f"transfer.source={source}",
                f"transfer.cache_dir={cache}",
                "transfer.labels_per_class=10",
                "transfer.batch_size=16",
                "schedule.iterations=6",
                *overrides,
            ],
        )


def test_the_labelled_draw_is_seeded_per_class_and_nested():
    labels = torch.arange(3).repeat_interleave(20)[torch.randperm(60)]
    names = ["a", "b", "c"]
    small, large = (tr.draw_labelled(labels, n, 0, names) for n in (4, 9))
    assert torch.bincount(labels[small]).tolist() == [4, 4, 4]
    assert set(small.tolist()) < set(large.tolist())
    assert torch.equal(small, tr.draw_labelled(labels, 4, 0, names))
    assert not torch.equal(small, tr.draw_labelled(labels, 4, 1, names))
    with pytest.raises(ValueError, match="between 1 and 20"):
        tr.draw_labelled(labels, 21, 0, names)


def test_target_data_that_is_not_there_names_transfers_own_option(source, tmp_path, monkeypatch):
    """The data module's message named data.root=DIR, an option experiments.transfer lacks;
    the download's failure is kept (offline here, whatever the machine)."""

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cfg = transfer_cfg(source, tmp_path, f"transfer.data_root={tmp_path / 'gone'}")
    with pytest.raises(DatasetMissingError) as err:
        tr.target_data(cfg, zoo.load(source))
    assert "Point transfer.data_root=DIR at the folder" in str(err.value)
    assert "failed: <urlopen error no network>" in str(err.value)


def test_the_sources_data_limit_caps_a_smaller_target_copy(source, tmp_path):
    """A target copy with fewer images than the source's data.limit: transfer draws
    labels_per_class a class from what is there (a run would refuse it, as too few)."""
    src = zoo.load(source)
    src.spec["data"]["limit"] = 10_000  # the source's copy held 600
    data = tr.target_data(transfer_cfg(source, tmp_path), src)
    assert len(data.data.y_train) == 10 * 5  # labels_per_class of each of the five classes


@pytest.mark.parametrize(
    "mode, frozen", [("last_stage", ["stem", "layer1", "layer2"]), ("none", [])]
)
def test_frozen_layers_are_bit_identical_after_fine_tuning(source, tmp_path, mode, frozen):
    cfg = transfer_cfg(source, tmp_path, f"transfer.freeze={mode}")
    src = zoo.load(source)
    data = tr.target_data(cfg, src)
    model = copy.deepcopy(src.model)
    model.fc = tr.new_head(64, 5, 0)
    assert tr.frozen_children(model, mode) == frozen
    tr.fine_tune(model, mode, data, cfg)
    before, after = src.model.state_dict(), model.state_dict()
    for name in before:
        if name.startswith("fc."):
            continue
        same = torch.equal(before[name], after[name])  # BN statistics included
        if name.split(".")[0] in frozen:
            assert same, name
        elif name.endswith(("weight", "running_mean")):
            assert not same, name  # trained
    assert not torch.equal(model.fc.weight, tr.new_head(64, 5, 0).weight)


@pytest.mark.parametrize("mode", ["all", "none"])
def test_the_lr_scales_with_the_transfer_batch_where_the_schedule_says_so(source, tmp_path, mode):
    """schedule.lr_scales_with_batch: transfer.batch_size=16 trains as lr 0.01 * 16 / 128 does,
    whether a head on features (train_head) or a fine-tuned net (fine_tune)."""
    src = zoo.load(source)
    trained = []
    for overrides in (["schedule.lr_scales_with_batch=true"], ["schedule.optimizer.lr=0.00125"]):
        cfg = transfer_cfg(source, tmp_path, f"transfer.freeze={mode}", *overrides)
        head = tr.new_head(64, 5, cfg.seed)
        if mode == "all":
            x, y = (
                torch.randn(40, 64, generator=torch.Generator().manual_seed(0)),
                torch.arange(40) % 5,
            )
            trained.append(tr.train_head(head, x.__getitem__, y, cfg.schedule, 16, cfg.seed).weight)
        else:
            model = copy.deepcopy(src.model)
            model.fc = head
            torch.manual_seed(0)  # the data module's crops and flips
            tr.fine_tune(model, mode, tr.target_data(cfg, src), cfg)
            trained.append(model.fc.weight)
    assert torch.equal(*trained)
    assert not torch.equal(trained[0], tr.new_head(64, 5, 0).weight)  # it trained


def test_a_head_on_cached_features_equals_one_trained_through_the_frozen_backbone(source, tmp_path):
    cfg = transfer_cfg(source, tmp_path / "cache", "transfer.freeze=all")
    record = tr.transfer(cfg, tmp_path / "run")
    src = zoo.load(source)
    data = tr.target_data(cfg, src)
    cached, hit, _ = tr.cached_features(
        tmp_path / "cache", src, record["source_sha256"], data, "cpu"
    )
    assert hit == "hit"
    schedule, seed = cfg.schedule, cfg.seed
    on_cache = tr.train_head(
        tr.new_head(64, 5, seed),
        cached["train"].__getitem__,
        cached["train_labels"],
        schedule,
        16,
        seed,
    )
    # The other way: each batch through the frozen backbone, from the un-augmented images.
    backbone = tr.backbone(src.model).requires_grad_(False)
    assert not backbone.training
    x, y = (torch.cat(t) for t in zip(*data.plain_batches(train=True), strict=True))
    shift, scale = src.normalization
    assert torch.equal(x, (data.data.x_train.float() - shift) / scale)  # no crop, no flip
    through = tr.train_head(
        tr.new_head(64, 5, seed), lambda idx: backbone(x[idx]), y, schedule, 16, seed
    )
    assert torch.equal(on_cache.weight, through.weight) and torch.equal(on_cache.bias, through.bias)
    assert not torch.equal(on_cache.weight, tr.new_head(64, 5, seed).weight)  # it trained
    with torch.no_grad():
        logits = on_cache(cached["test"])
    error = (logits.argmax(1) != cached["test_labels"]).double().mean().item() * 100
    assert record["test_error"] == error  # the app trained this very head
    assert RunRecord(tmp_path / "run").read() == record


def test_features_are_cached_and_a_second_run_reuses_them(source, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = tr.transfer(transfer_cfg(source, cache), tmp_path / "a")
    assert first["cache"] == "miss" and len(list(cache.iterdir())) == 1

    def no_backbone(*args):
        raise AssertionError("features computed again")

    monkeypatch.setattr(tr, "compute_features", no_backbone)
    second = tr.transfer(transfer_cfg(source, cache), tmp_path / "b")
    assert second["cache"] == "hit" and second["cache_file"] == first["cache_file"]
    assert second["test_error"] == first["test_error"]
    with pytest.raises(AssertionError, match="computed again"):  # anything else is a miss
        tr.transfer(transfer_cfg(source, cache, "transfer.classes=[dog,frog]"), tmp_path / "c")
    with pytest.raises(AssertionError, match="computed again"):
        tr.transfer(transfer_cfg(source, cache, "transfer.labels_per_class=5"), tmp_path / "d")
    other = tmp_path / "other.ckpt"
    ckpt = torch.load(source / CHECKPOINT, weights_only=True)
    ckpt["state_dict"]["model.layer3.0.conv1.weight"] += 1e-3
    torch.save(ckpt, other)
    with pytest.raises(AssertionError, match="computed again"):
        tr.transfer(transfer_cfg(other, cache), tmp_path / "e")


def test_a_transfer_run_is_a_run_record_skipped_once_done(source, tmp_path, monkeypatch):
    cache, run = tmp_path / "cache", tmp_path / "run"
    first = tr.transfer(transfer_cfg(source, cache, "transfer.freeze=none"), run)
    assert first["status"] == "done" and first["freeze"] == "none"
    assert first["torch"] == torch.__version__  # provenance, as a training run records it
    assert first["precision"] == "32-true"  # trainer=cpu: precision auto is 32-true on a CPU
    assert (run / "config.yaml").is_file()
    written = (run / "run.json").stat().st_mtime_ns

    def no_training(*args):
        raise AssertionError("trained again")

    monkeypatch.setattr(tr, "fine_tune", no_training)
    assert tr.transfer(transfer_cfg(source, cache, "transfer.freeze=none"), run) == first
    assert (run / "run.json").stat().st_mtime_ns == written
    with pytest.raises(ConfigMismatchError, match="schedule.iterations"):
        tr.transfer(
            transfer_cfg(source, cache, "transfer.freeze=none", "schedule.iterations=7"), run
        )
    with pytest.raises(AssertionError, match="trained again"):  # a failure is recorded as such
        tr.transfer(transfer_cfg(source, cache, "transfer.freeze=none"), tmp_path / "other")
    assert RunRecord(tmp_path / "other").status == "failed"


@pytest.mark.parametrize("mode", ["none", "scratch"])
def test_an_inceptions_side_heads_are_left_out_of_a_transfer(tmp_path, monkeypatch, mode):
    """Trained on the source's classes, they would add a loss on the target's labels."""
    root = write_random_cifar10(tmp_path / "data", n_train=200, n_test=40)
    source = tmp_path / "source"
    train_tiny(source, root, "arch=inception", "depth=8", "arch.aux_weight=0.3",
               f"data.classes={SOURCE_CLASSES}")  # fmt: skip
    assert len(zoo.load(source).model.aux_heads) == 2
    tuned = []
    monkeypatch.setattr(tr, "fine_tune", lambda model, *args: tuned.append(model) or model.eval())
    cfg = transfer_cfg(source, tmp_path / "cache", f"transfer.freeze={mode}")
    assert tr.transfer(cfg, tmp_path / "run")["status"] == "done"
    [model] = tuned
    assert len(model.aux_heads) == 0 and model.fc.out_features == 5
    model.train()
    assert isinstance(model(torch.randn(2, 3, 32, 32)), torch.Tensor)  # the main logits alone


def test_a_cache_written_by_another_checkpoint_is_refused(source, tmp_path):
    cache = tmp_path / "cache"
    record = tr.transfer(transfer_cfg(source, cache), tmp_path / "a")
    other = tmp_path / "other.ckpt"
    ckpt = torch.load(source / CHECKPOINT, weights_only=True)
    ckpt["state_dict"]["model.fc.bias"] += 1
    torch.save(ckpt, other)
    found = tr.transfer(transfer_cfg(other, cache), tmp_path / "b")["cache_file"]
    shutil.copy(record["cache_file"], found)  # the other checkpoint's name, this one's features
    with pytest.raises(tr.CacheMismatchError, match=r"written by another checkpoint.*delete"):
        tr.transfer(transfer_cfg(other, cache), tmp_path / "c")


def test_bad_transfer_input_names_the_fix(source, tmp_path):
    cases = [
        ("transfer.classes=[dog,frgo]", "transfer.classes: unknown class 'frgo'; valid: airplane"),
        ("transfer.labels_per_class=500", "set transfer.labels_per_class between 1 and"),
        ("transfer.freeze=some", "choose one of all, last_stage, none, scratch"),
        ("transfer.batch_size=0", r"^transfer.batch_size=0: must be an integer >= 1"),
        (  # the source was trained on these: no transfer to measure
            "transfer.classes=[dog,cat]",
            "transfer.classes: cat already among the source's classes .* "
            r"transfer.classes=\[dog,frog,horse,ship,truck\]",
        ),
    ]
    for override, message in cases:
        with pytest.raises(ValueError, match=message):
            tr.transfer(transfer_cfg(source, tmp_path, override), tmp_path / "run")
    ckpt = torch.load(source / CHECKPOINT, weights_only=True)
    ckpt["hyper_parameters"]["spec"]["arch"]["_target_"] = "depthsweep_extra.Inception"
    torch.save(ckpt, tmp_path / "elsewhere.ckpt")
    with pytest.raises(zoo.ArchNotInstalledError, match="depthsweep_extra.Inception"):
        tr.transfer(transfer_cfg(tmp_path / "elsewhere.ckpt", tmp_path), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_transfer_sweep_writes_its_table_and_figure(source, tmp_path):
    res = run_cli(
        "experiments.transfer",
        "-m",
        f"transfer.source={source}",
        "transfer.labels_per_class=3,6",
        "transfer.freeze=all,last_stage,none,scratch",
        f"transfer.cache_dir={tmp_path / 'cache'}",
        "transfer.batch_size=8",
        "schedule.iterations=4",
        "trainer=cpu",
        "trainer.enable_progress_bar=false",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.endswith(
        f"in {tmp_path / 'sweep'}: transfer.csv and transfer.png (and .svg)\n"
    )
    table = pd.read_csv(tmp_path / "sweep" / "transfer.csv")
    assert (
        list(table["freeze"]) == ["all"] * 2 + ["last_stage"] * 2 + ["none"] * 2 + ["scratch"] * 2
    )
    assert list(table["labels_per_class"]) == [3, 6] * 4
    assert set(table["train_images"]) == {15, 30}  # 5 target classes
    assert (table["target_classes"] == "dog,frog,horse,ship,truck").all()
    assert (table["source_classes"] == SOURCE_CLASSES.strip("[]")).all()
    runs = [p.name for p in find_runs(tmp_path / "sweep")]
    assert len(runs) == 8 and runs[0].endswith("transfer.freeze=all,transfer.labels_per_class=3")
    for _, row in table.iterrows():
        record = RunRecord(tmp_path / "sweep" / row["run_dir"]).read()
        assert record["test_error"] == row["test_error"] and record["freeze"] == row["freeze"]
    assert (tmp_path / "sweep" / "transfer.png").stat().st_size > 0


def test_transfer_bench_errors_name_its_flags(source, capsys):
    """Not the transfer.* keys the bench sets from them."""
    labels = ["--labels-per-class 1000: class ", "set --labels-per-class between", "(--data-root;"]
    for flags, said in [
        (["--labels-per-class", "1000"], labels),
        (["--batch-size", "0"], ["--batch-size=0: must be an integer >= 1"]),
        (["--epochs", "0"], ["--epochs=0: must be an integer >= 1"]),
    ]:
        assert transfer_bench.main([str(source), *flags]) == USER_ERROR
        err = capsys.readouterr().err
        assert err.startswith(f"error: {said[0]}") and err.count("\n") == 1, err
        assert all(s in err for s in said) and "transfer." not in err, err


def test_a_transfer_without_a_source_asks_for_one(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="t"):
        cfg = compose("transfer", ["trainer=cpu"])
    with pytest.raises(OptionError, match="^transfer.source is required: give transfer.source="):
        tr.transfer(cfg, tmp_path / "run")  # not OmegaConf's MissingMandatoryValue
    assert source_error(["-m", "transfer.freeze=all,none"]) == tr.SOURCE_REQUIRED
    assert source_error(["transfer.source=null"]) == tr.SOURCE_REQUIRED
    assert source_error(["--cfg", "job"]) is None  # shows the config: no source needed
    assert source_error(["transfer=mine"]) is None  # another config may set it: the job checks
    # Each of a sweep's sources, quoted ones unquoted, is checked before Hydra runs
    missing = tmp_path / "depth=8,seed=1"
    error = source_error(["-m", f"transfer.source='{missing}',{tmp_path / 'x'}"])
    assert error == f"{missing}: no such run directory or checkpoint file"


@pytest.mark.slow
def test_a_transfer_without_a_source_is_one_line_and_leaves_nothing(tmp_path):
    res = run_cli("experiments.transfer", "transfer.freeze=none", cwd=tmp_path)
    assert (res.returncode, res.stderr) == (USER_ERROR, f"error: {tr.SOURCE_REQUIRED}\n")
    assert list(tmp_path.iterdir()) == []  # no runs/transfer/.hydra


@pytest.mark.slow
def test_a_source_that_is_no_checkpoint_is_refused_before_hydra_writes(tmp_path):
    """Refused before Hydra writes its .hydra/ and log into the run directory, which (its name
    leaving the source out) may hold another source's run."""
    text = tmp_path / "text.ckpt"
    text.write_text("hello text\n")  # once a KeyError out of the checkpoint reader
    run_dir = tmp_path / "runs" / "transfer" / "transfer.freeze=none"
    (run_dir / ".hydra").mkdir(parents=True)
    for name in (".hydra/config.yaml", "run.json", "transfer.log"):
        (run_dir / name).write_text(f"another source's {name}\n")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    res = run_cli(
        "experiments.transfer", f"transfer.source={text}", "transfer.freeze=none", cwd=tmp_path
    )
    assert res.returncode == USER_ERROR, res.stderr
    assert res.stderr.startswith(f"error: {text} is not a depthsweep checkpoint")
    assert res.stderr.count("\n") == 1, res.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("override", ["schedule.warmup.lr=0.5", "+schedule.warmup.foo=1"])
def test_a_warm_up_is_refused_as_transfer_never_reads_it(override):
    """make_schedule is called without a warm-up: the key would only name the run directory."""
    error = unread_key_error([override, "transfer.freeze=none"])
    assert error.startswith(f"{override}: a transfer trains without a warm-up")
    assert unread_key_error(["schedule.optimizer.lr=0.5", "~schedule.warmup.lr"]) is None


def test_a_key_hint_leaves_out_the_keys_transfer_never_reads():
    error = command_line_error(["schedule.lr=0.1"], "transfer")
    assert error.endswith("Did you mean schedule.optimizer.lr=0.1?")
    error = command_line_error(["schedule.until_train_error=5"], "transfer")
    assert "warmup" not in error and error.endswith("nothing reads.")
    # ... and in the job, where a + key is checked against the composed config
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="t"):
        cfg = compose("transfer", ["+schedule.lr=0.1"])
    with pytest.raises(OptionError, match=r"Did you mean schedule\.optimizer\.lr=0\.1\?$"):
        check_added_keys(cfg, ["+schedule.lr=0.1"], "transfer")
    # training's own config keeps its warm-up in hints
    assert "warmup" in command_line_error(["schedule.until_train_error=5"])


@pytest.mark.slow
def test_a_warm_up_on_the_command_line_is_one_line_and_leaves_nothing(tmp_path):
    res = run_cli(
        "experiments.transfer", "schedule.warmup.lr=0.5", "transfer.freeze=none", cwd=tmp_path
    )
    assert res.returncode == USER_ERROR and res.stderr.count("\n") == 1, res.stderr
    assert "transfer trains without a warm-up" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_transfer_table_holds_the_runs_source_hash_cache_file_and_precision(source, tmp_path):
    """The run.json fields the README says transfer.csv holds."""
    record = tr.transfer(transfer_cfg(source, tmp_path / "cache"), tmp_path / "sweep" / "a")
    [row] = collect(tmp_path / "sweep").to_dict("records")
    for key in ("source_sha256", "cache_file", "precision", "source", "cache"):
        assert row[key] == record[key], key
