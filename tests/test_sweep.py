"""The user's commands end to end: a sweep, its re-run, crashes, failures and bad input."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from helpers import ROOT, run_cli, train_tiny, write_cifar10_batch
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from depthsweep.errors import RUN_FAILED, USER_ERROR
from depthsweep.nets.models import InvalidDepthError
from depthsweep.runs import provenance
from depthsweep.runs.provenance import cpu_model
from depthsweep.runs.rundir import ConfigMismatchError, CorruptRecordError, RunRecord
from depthsweep.training.config import compose_config
from depthsweep.training.train import train
from experiments.hydra_callbacks import AnalyzeSweep
from experiments.run import run as run_entry

TINY = ["data.limit=256", "data.batch_size=32", "schedule.iterations=20"]
TINY += ["trainer.enable_progress_bar=false"]


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/run.json"))


@pytest.mark.slow
def test_sweep_trains_analyses_and_rerun_skips(cifar_root, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        "experiments.run",
        "-m",
        "depth=8,14",
        "arch=plain,resnet",
        f"data.root={cifar_root}",
        *TINY,
        f"hydra.sweep.dir={sweep}",
    ]
    first = run_cli(*cmd)
    assert first.returncode == 0, first.stderr[-3000:]

    dirs = run_dirs(sweep)
    test_batch = cifar_root / "cifar-10-batches-py" / "test_batch"
    assert [d.name for d in dirs] == [
        f"arch={a},data.batch_size=32,data.limit=256,depth={d},schedule.iterations=20"
        for a in ("plain", "resnet")
        for d in (14, 8)
    ]
    for d in dirs:
        metrics = pd.read_csv(d / "metrics.csv")
        assert {
            "step",
            "epoch",
            "lr",
            "train_error",
            "train_loss",
            "test_error",
            "wall_time",
        } <= set(metrics.columns)
        assert metrics["step"].max() == 20
        assert metrics["train_error"].dropna().between(0, 100).all()
        assert (d / "checkpoints" / "last.ckpt").is_file() and (d / "config.yaml").is_file()
        info = json.loads((d / "run.json").read_text())
        assert info["status"] == "done"
        # the first 256 of the materialized test batch: not the official test set
        assert (info["test_images"], info["test_official"]) == (256, False)
        assert info["test_md5"] == hashlib.md5((test_batch).read_bytes()).hexdigest()
        assert info["warmup_end"] is None  # no warm-up below depth 110

    summary = pd.read_csv(sweep / "summary.csv")
    assert len(summary) == 4 and set(summary["status"]) == {"done"}
    params = summary.set_index(["arch", "depth"])["params"]
    assert params[("plain", 8)] == params[("resnet", 8)] == 75_290
    assert params[("plain", 14)] == params[("resnet", 14)] == 172_506
    assert (summary["iterations"] == 20).all()
    for name in (
        "summary.md",
        "figure6.png",
        "figure6.svg",
        "error_vs_depth.png",
        "error_vs_depth.svg",
    ):
        assert (sweep / name).stat().st_size > 0
    # Depths 8 and 14 are below the verdict's MIN_DEPTH of 20.
    assert "Verdict undetermined: the claim compares plain and resnet nets at depths 20–110" in (
        first.stdout
    )
    assert "(plain at 8, 14; resnet at 8, 14). Smaller nets check the pipeline" in first.stdout

    stamps = {d: (d / "checkpoints" / "last.ckpt").stat().st_mtime_ns for d in dirs}
    metrics_before = {d: (d / "metrics.csv").read_bytes() for d in dirs}
    second = run_cli(*cmd)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already finished") == 4
    assert "starting" not in second.stdout
    assert all((d / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamps[d] for d in dirs)
    assert all((d / "metrics.csv").read_bytes() == metrics_before[d] for d in dirs)


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(fake_cifar, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "experiments.run",
        "depth=8",
        f"data.root={fake_cifar}",
        "data.batch_size=16",
        "schedule.iterations=120",
        "checkpoint_every=20",
        "trainer.log_every_n_steps=10",
        "trainer.check_val_every_n_epoch=100",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={run_dir}",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # a crash: no chance to clean up
    proc.wait()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    resumed = run_cli(*cmd[2:])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    train = metrics.dropna(subset=["train_error"])
    assert train["step"].is_unique and train["step"].is_monotonic_increasing
    assert train["step"].tolist() == list(range(10, 121, 10))
    # no evaluation fell on the last iteration (every 100 epochs): one more ran after training
    assert metrics.dropna(subset=["test_error"])["step"].tolist()[-1] == 120
    # Exact resume: the same numbers as a run never interrupted (data order, augmentation and the
    # metrics window all restored; 6 batches an epoch, so the kill fell mid-epoch).
    straight = tmp_path / "straight"
    assert run_cli(*[c for c in cmd[2:] if "hydra.run.dir" not in c],
                   f"hydra.run.dir={straight}").returncode == 0  # fmt: skip
    uninterrupted = pd.read_csv(straight / "metrics.csv")
    pd.testing.assert_frame_equal(
        metrics.drop(columns="wall_time"), uninterrupted.drop(columns="wall_time"), check_exact=True
    )


@pytest.mark.slow
def test_failed_run_is_recorded_and_the_sweep_goes_on(fake_cifar, tmp_path):
    """Typed as a user types it, `data.root=~/...` included (Hydra's grammar refuses a bare ~:
    the entry point expands it); the sweep says its size at launch, and a failure in one line
    when it happens."""
    sweep = tmp_path / "sweep"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "cifar").symlink_to(fake_cifar)
    res = run_cli(
        "experiments.run",
        "-m",
        "depth=8",
        "arch=plain",
        "schedule.optimizer.lr=1e30,0.1",
        "data.root=~/cifar",
        *TINY[1:],  # 100 images: data.limit=256 is more than there are
        f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.analyze.diagnose=[lesion]",  # diagnostics at sweep end, finished runs only
        env={"HOME": str(tmp_path / "home")},
    )
    # the sweep went on, analysed everything, and still says that a run failed
    assert res.returncode == RUN_FAILED, res.stderr[-3000:]
    assert "1 run(s) failed, were interrupted or have their metrics cut off" in res.stderr
    assert res.stdout.startswith("sweep: 2 runs x 20 iterations (40 training steps)\nsweep: about ")
    assert "of training steps on this CPU" in res.stdout
    assert (
        f"in {sweep.absolute()}: summary.md, summary.csv, by_depth.csv, verdict.json" in res.stdout
    )
    assert "FAILED: FloatingPointError: training loss became" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    status = {d.name: json.loads((d / "run.json").read_text()) for d in run_dirs(sweep)}
    bad = next(v for k, v in status.items() if "1e+30" in k)
    good = next(v for k, v in status.items() if k.endswith("lr=0.1"))
    assert bad["status"] == "failed" and "FloatingPointError" in bad["error"]
    assert good["status"] == "done"
    summary = pd.read_csv(sweep / "summary.csv")
    assert sorted(summary["status"]) == ["done", "failed"]
    assert "Failed runs" in (sweep / "summary.md").read_text()
    lesion = pd.read_csv(sweep / "lesion.csv")
    assert lesion["run"].nunique() == 1 and "lr=0.1" in lesion["run"].iloc[0]


def test_warmup_lr_trace_and_validation_split(fake_cifar, tmp_path, caplog):
    """Warm-up forced on at depth 8 with a threshold every run meets at the first check:
    lr is 0.01 for the first window, then back to 0.1, then the step decay."""
    run_dir = tmp_path / "run"
    cfg = compose_config(
        [
            *["depth=8", f"data.root={fake_cifar}", "data.val_split=20"],
            *["schedule.warmup.from_depth=0", "schedule.warmup.until_train_error=101"],
            "schedule.warmup.max_fraction=0.5",  # the check ends it, not the cap
            *["trainer.log_every_n_steps=5", "schedule.iterations=50", "data.batch_size=16"],
            *["trainer=cpu", "trainer.enable_progress_bar=false"],
        ]
    )
    with caplog.at_level(logging.INFO, logger="depthsweep"):
        assert train(cfg, run_dir) == "done"
    assert "[resnet-8 seed=0] warm-up over at iteration 5 (training error" in caplog.text
    assert "% < 101%), lr back to the schedule's 0.1\n" in caplog.text
    info = json.loads((run_dir / "run.json").read_text())
    assert info["warmup_end"] == 5 and info["warmup_end_reason"].startswith("training error")
    assert (info["test_images"], info["test_official"]) == (40, False)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    lr = metrics.dropna(subset=["lr"]).set_index("step")["lr"]
    assert lr[5] == pytest.approx(0.01) and lr[10] == pytest.approx(0.1)
    # milestones at 25 and 38 iterations: the 26th is the first at 0.01, the 39th at 0.001
    assert lr[25] == pytest.approx(0.1) and lr[30] == pytest.approx(0.01)
    assert lr[40] == pytest.approx(0.001)
    assert metrics["val_error"].notna().any() and metrics["test_error"].notna().any()


def test_a_warmup_that_never_reaches_its_error_ends_at_the_cap(fake_cifar, tmp_path):
    """A threshold no training error gets below (0%) stands for a net stuck near 90%."""
    cfg = compose_config(
        [
            *["trainer=cpu", "arch=resnet", "depth=8", f"data.root={fake_cifar}"],
            *["data.batch_size=16", "schedule.iterations=20", "trainer.log_every_n_steps=2"],
            *["schedule.warmup.from_depth=8", "schedule.warmup.max_fraction=0.35"],
            "schedule.warmup.until_train_error=0",
            "trainer.enable_progress_bar=false",
        ]
    )
    assert train(cfg, tmp_path) == "done"
    info = json.loads((tmp_path / "run.json").read_text())
    assert (info["warmup_end"], info["warmup_end_reason"]) == (7, "cap of 7 iterations")
    lr = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["lr"]).set_index("step")["lr"]
    assert lr[6] == pytest.approx(0.01) and lr[8] == pytest.approx(0.1)  # iterations 6 and 8
    assert lr[10] == pytest.approx(0.1) and lr[12] == pytest.approx(0.01)  # decay at 50%


def run_in_process(args: list[str], run_dir: Path, sweep: bool = False):
    """experiments.run's handling of one run, as Hydra calls it, on the config `args` compose
    to; `run_dir` made first, as Hydra makes it."""
    run_dir.mkdir(parents=True)
    return run_entry([(compose_config(args), run_dir)], run_dir.parent if sweep else None)


@pytest.mark.parametrize(
    "args, message",
    [
        (["depth=18"], "depth=18 is invalid: this architecture needs depth = 6n+2"),
        (["depth=-4"], "Nearest valid depths: 8."),
        (["depth=abc"], "depth='abc': the number of layers, an integer like 20"),
        (["depth=20.0"], "depth=20.0: the number of layers"),
        (["seed=-1"], "seed=-1: must be an integer >= 0"),
        (["checkpoint_every=-1"], "checkpoint_every=-1: must be an integer >= 1"),
        (["data.limit=0"], "data.limit=0: must be an integer >= 1, or null for all images"),
        (["data.batch_size=0"], "data.batch_size=0: must be an integer >= 1"),
        (["data.limit=101"], "data.limit=101: "),  # 100 training images there
        (["trainer.precision=fp7"], "trainer.precision=fp7: a run trains in 32-true, bf16-mixed"),
        (["trainer.accelerator=fpga"], "trainer: You selected an invalid accelerator name"),
        (["cuda_graph=bogus"], "cuda_graph='bogus': must be auto, true or false"),
        (["channels_last=off"], "channels_last='off': must be auto, true or false"),
        (["trainer.log_every_n_steps=-3"], "trainer.log_every_n_steps=-3: must be an integer >= 1"),
        (["diagnostics.grad_norm_every=-1"], "grad_norm_every=-1: must be an integer >= 0"),
        (["optimized_metric=train_error"], "optimized_metric='train_error': null or one of"),
        (["data.download=false", "data.root=/nonexistent"], "/nonexistent/cifar-10-batches-py"),
    ],
)
def test_a_setup_error_is_one_line_and_leaves_nothing_behind(
    args, message, fake_cifar, tmp_path, capsys
):
    run_dir = tmp_path / "out" / "run"
    with pytest.raises(SystemExit) as exit_:
        run_in_process([f"data.root={fake_cifar}", *args], run_dir)
    assert exit_.value.code == USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err
    assert not run_dir.exists()


def test_a_setup_error_in_a_sweep_leaves_no_sweep_directory(fake_cifar, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")  # what Hydra writes before the first job
    with pytest.raises(SystemExit) as exit_:
        run_in_process([f"data.root={fake_cifar}", "depth=18"], sweep / "depth=18", sweep=True)
    assert exit_.value.code == USER_ERROR
    assert not sweep.exists()


def test_a_setup_error_shows_its_traceback_with_hydra_full_error(fake_cifar, tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(InvalidDepthError):  # raised on: Hydra prints its traceback
        run_in_process([f"data.root={fake_cifar}", "depth=18"], tmp_path / "run")


@pytest.mark.slow
def test_malformed_data_stops_a_sweep_before_any_training(fake_cifar, tmp_path):
    """The setup-error contract through the command itself: one line, exit 2, nothing left."""
    batch = fake_cifar / "cifar-10-batches-py" / "data_batch_2"
    write_cifar10_batch(batch, np.zeros((20, 3072), np.uint8), [12] * 20)
    sweep = tmp_path / "sweep"
    res = run_cli(
        *["experiments.run", "-m", "depth=8,14", "arch=plain,resnet", f"data.root={fake_cifar}"],
        f"hydra.sweep.dir={sweep}",
    )
    assert res.returncode == USER_ERROR
    assert res.stderr == f"error: {batch}: labels outside 0..9 (found 12..12); " + (
        "expected the official format: uint8 `data` of shape (N, 3072), N labels 0..9\n"
    )
    assert not sweep.exists()  # no run directory, no summary of nothing


def test_the_default_command_offline_says_so_and_leaves_no_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        run_in_process(["data.root=data"], tmp_path / "out")
    assert exit_.value.code == USER_ERROR
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "downloading" in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_arch_gets_hydras_message():
    with pytest.raises(MissingConfigException, match="Could not find 'arch/transformer'"):
        compose_config(["arch=transformer"])


def test_an_output_directory_that_cannot_be_made_gets_one_line(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the sweep wants a directory")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(blocker / "sweep")}}})
    with pytest.raises(SystemExit) as exit_:
        AnalyzeSweep().on_multirun_start(config)
    assert exit_.value.code == USER_ERROR
    err = capsys.readouterr().err
    assert err == f"error: cannot write {blocker / 'sweep'}: {blocker} is not a directory\n"


def test_a_directory_of_another_config_is_refused(tmp_path):
    record = RunRecord(tmp_path)
    record.start(compose_config(["data.root=a"]), {})
    record.check_config(compose_config(["data.root=elsewhere"]))  # data moved: fine
    with pytest.raises(ConfigMismatchError, match=r"differs in: schedule\.optimizer\.lr\)"):
        record.check_config(compose_config(["data.root=a", "schedule.optimizer.lr=0.2"]))
    with pytest.raises(ConfigMismatchError, match=r"another hydra\.run\.dir \(in a sweep, hydra"):
        record.check_config(compose_config(["data.root=a", "schedule.optimizer.lr=0.2"]))


def test_a_run_recorded_before_a_key_became_neutral_is_still_the_same_run(tmp_path):
    record = RunRecord(tmp_path)
    old = compose_config(["data.root=a"])
    old.neutral_keys = [k for k in old.neutral_keys if k != "data.root"]
    record.start(old, {})
    record.check_config(compose_config(["data.root=b"]))  # neutral now: fine


def test_every_run_records_where_it_came_from(fake_cifar, tmp_path, monkeypatch):
    # a CPU with AMX and AVX2 but no AVX-512, whatever this one has: its flags, in FEATURES' order
    monkeypatch.setattr(provenance, "cpu_flags", lambda: {"fpu", "amx_bf16", "sse2", "avx2"})
    train_tiny(tmp_path / "run", fake_cifar)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["torch"], info["lightning"]) == (torch.__version__, pl.__version__)
    assert info["hydra"] == hydra.__version__ and info["cuda"] == torch.version.cuda
    assert info["device"].startswith("CPU")
    assert info["channels_last"] is False  # auto, fp32 on a CPU: off
    assert info["cpu"] == cpu_model()  # the model name, where Linux says it
    assert info["cpu_features"] == ["avx2", "amx_bf16"]
    assert info["aten_cpu"] == torch.backends.cpu.get_cpu_capability()  # the kernels' level
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode == 0:  # a git checkout: the commit, and whether it had local changes
        assert info["git_commit"] == head.stdout.decode().strip()
        changes = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
        )
        assert info["git_dirty"] is bool(changes.stdout)
    else:
        assert info["git_commit"] is None and info["git_dirty"] is None


def test_the_cpus_model_is_read_from_linuxs_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 9B14"
    assert cpu_model(tmp_path / "none") is None


@pytest.mark.parametrize("text", ['{"status": "runn', "[1, 2]", "\xff\xfe"])
def test_a_run_json_that_is_no_record_is_named_with_the_fix(fake_cifar, tmp_path, text):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes(text.encode("latin1"))
    cfg = compose_config(["trainer=cpu", "depth=8", f"data.root={fake_cifar}"])
    with pytest.raises(CorruptRecordError, match=r"run\.json is not a run record .* Delete it to"):
        train(cfg, run_dir)
