"""Faults as a user meets them, each reported when it happens, in one line, with the exit code the
README lists: failures inside a sweep, a resume on another test set or from a cut metrics.csv, a
signal the instant a run starts, a finished run whose record was lost, and the apps' bad input."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from fakesweep import write_sweep
from helpers import Killed, killed_before_the_row, run_cli, write_random_cifar10
from omegaconf import OmegaConf

import experiments.analyze as analyze_cli
import experiments.evaluate as evaluate_cli
import experiments.zoo as zoo_cli
from depthsweep import files
from depthsweep.analysis import report
from depthsweep.analysis.verdict import ARCHS
from depthsweep.apps import zoo
from depthsweep.errors import INTERRUPTED, RUN_FAILED, UNEXPECTED, USER_ERROR, UserError
from depthsweep.runs.rundir import RunRecord
from depthsweep.training import train as train_module
from depthsweep.training.callbacks import CheckpointOnInterrupt
from depthsweep.training.config import compose_config, home_expanded
from depthsweep.training.console import NOISY_LOGGERS
from depthsweep.training.train import Interrupted, kept_on_interrupt, train
from experiments.exits import interruptible
from experiments.hydra_callbacks import AnalyzeSweep, _check_writable
from experiments.run import run as run_entry

TINY = ["trainer=cpu", "depth=8", "data.batch_size=32", "schedule.iterations=4"]


def tiny_config(data: Path, *overrides: str):
    """A 4-iteration run of depth 8, gradient norms logged (more columns in metrics.csv)."""
    return compose_config([*TINY, f"data.root={data}", "diagnostics.grad_norm_every=2", *overrides])


def train_tiny(run_dir: Path, data: Path) -> None:
    assert train(tiny_config(data), run_dir) == "done"


def set_status(run_dir: Path, status: str) -> None:
    """What a run killed with -9 leaves: its record still says `status`."""
    info = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps(info | {"status": status}))


def one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --- inside a sweep ------------------------------------------------------------------------------


def test_an_unexpected_fault_fails_its_run_at_once_and_the_sweep_goes_on(
    fake_cifar, tmp_path, monkeypatch, caplog
):
    """Any fault no check foresaw, before training (here the multiply-add count), is said when it
    happens, in one line, and recorded: not kept for Hydra to raise at the sweep's end."""

    def broken(model, shape):
        raise RuntimeError("the flop counter broke")

    monkeypatch.setattr(train_module, "count_macs", broken)
    run_dir = tmp_path / "sweep" / "depth=8"
    run_dir.mkdir(parents=True)
    with caplog.at_level(logging.ERROR, logger="depthsweep"):
        status = run_entry([(tiny_config(fake_cifar), run_dir)], run_dir.parent)
    assert status == "failed"
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line == "[resnet-8 seed=0] FAILED: RuntimeError: the flop counter broke"
    assert not any(r.exc_info for r in caplog.records)  # one line: no traceback
    info = json.loads((run_dir / "run.json").read_text())
    assert (info["status"], info["error"]) == ("failed", "RuntimeError: the flop counter broke")
    assert (info["arch"], info["depth"], info["seed"]) == ("resnet", 8, 0)  # the summary lists it


def test_a_sweep_whose_every_run_failed_exits_3_with_its_summary(fake_cifar, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for arch in ("plain", "resnet"):
        cfg = tiny_config(fake_cifar, f"arch={arch}", "schedule.optimizer.lr=1e30")
        assert train(cfg, sweep / arch) == "failed"
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as exit_:
        AnalyzeSweep().on_multirun_end(config)
    assert exit_.value.code == RUN_FAILED
    assert (
        "2 run(s) failed, were interrupted or have their metrics cut off" in capsys.readouterr().err
    )
    summary = pd.read_csv(sweep / "summary.csv")
    assert list(summary["status"]) == ["failed", "failed"]
    assert "Failed runs" in (sweep / "summary.md").read_text()


def test_a_sweep_with_a_run_whose_metrics_are_cut_off_exits_3(tmp_path, capsys):
    """Done by its run.json, but its metrics.csv ends mid-row: its numbers are not whole."""
    sweep = write_sweep(tmp_path / "sweep", [{"arch": a, "depth": 20} for a in ARCHS])
    cut = sweep / "arch=resnet,depth=20,seed=0" / "metrics.csv"
    cut.write_bytes(cut.read_bytes()[:-5])
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as exit_:
        AnalyzeSweep().on_multirun_end(config)
    assert exit_.value.code == RUN_FAILED
    err = capsys.readouterr().err
    assert "1 run(s) failed, were interrupted or have their metrics cut off" in err
    assert sorted(pd.read_csv(sweep / "summary.csv")["status"]) == ["done", "metrics cut off"]


def test_a_summary_that_cannot_be_written_is_one_line_naming_the_fix(
    fake_cifar, tmp_path, capsys, monkeypatch
):
    """A disk that fills by the sweep's end: its runs are recorded; one line says the summary is
    missing and how to write it later, exit 1, no traceback."""
    sweep = tmp_path / "sweep"
    assert train(tiny_config(fake_cifar), sweep / "resnet") == "done"

    def disk_full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "atomic_write", disk_full)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as exit_:
        AnalyzeSweep().on_multirun_end(config)
    assert exit_.value.code == UNEXPECTED
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot write the summary into {sweep}: No space left on device; the runs are"
        f" recorded: make room, then python -m experiments.analyze {sweep}\n"
    )
    assert not (sweep / "summary.csv").exists()


def test_a_fault_in_the_sweeps_analysis_is_one_line_and_exit_1(
    fake_cifar, tmp_path, capsys, monkeypatch
):
    """Not Hydra's warning and exit 0 (what it makes of a callback's exception)."""
    sweep = tmp_path / "sweep"
    assert train(tiny_config(fake_cifar), sweep / "resnet") == "done"

    def broken(*args):
        raise ValueError("The truth value of a Series is ambiguous")

    monkeypatch.setattr(report, "to_markdown", broken)
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as exit_:
        AnalyzeSweep().on_multirun_end(config)
    assert exit_.value.code == UNEXPECTED
    assert capsys.readouterr().err == (
        f"error: analysing {sweep}: ValueError: The truth value of a Series is ambiguous; the"
        f" runs are recorded (HYDRA_FULL_ERROR=1 python -m experiments.analyze {sweep} shows"
        " where)\n"
    )


# --- resuming ------------------------------------------------------------------------------------


def _forget_test_set(run_dir: Path) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    kept = {k: v for k, v in info.items() if k not in ("test_images", "test_md5")}
    (run_dir / "run.json").write_text(json.dumps(kept))


@pytest.mark.parametrize(
    "record",
    [
        lambda d: None,  # run.json says which test set: compared with it
        _forget_test_set,  # run.json rebuilt without it: the checkpoint's record
        lambda d: (d / "run.json").unlink(),  # run.json lost: the checkpoint's record
    ],
    ids=["kept", "forgotten", "lost"],
)
def test_a_resume_on_another_test_set_is_refused(fake_cifar, tmp_path, record):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, fake_cifar)
    set_status(run_dir, "interrupted")
    record(run_dir)
    other = write_random_cifar10(tmp_path / "other", n_train=100, n_test=40, seed=1)
    metrics = (run_dir / "metrics.csv").read_bytes()
    with pytest.raises(
        train_module.TestSetChangedError, match=r"was tested on 40 images \(test_batch MD5"
    ):
        train(tiny_config(other), run_dir)
    assert (run_dir / "metrics.csv").read_bytes() == metrics  # nothing mixed in
    # through the command: one line, exit 2
    with pytest.raises(SystemExit) as exit_:
        run_entry([(tiny_config(other), run_dir)])
    assert exit_.value.code == USER_ERROR


@pytest.mark.parametrize(
    "cut",
    [
        ["4", "12.5"],  # cut after its step field: was kept, as a test error of 12.5
        [""],  # cut before its step value: killed the job
    ],
)
def test_a_metrics_row_cut_mid_line_never_becomes_a_value(fake_cifar, tmp_path, cut, caplog):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, fake_cifar)
    set_status(run_dir, "running")  # killed while writing its log
    metrics = run_dir / "metrics.csv"
    header = metrics.read_text().splitlines()[0].split(",")
    assert header[header.index("step") + 1] == "test_error"
    whole = metrics.read_bytes()
    fields = ["3.0"] + [""] * (header.index("step") - 1) + cut  # the fields before it: empty
    metrics.write_bytes(whole + ",".join(fields).encode())
    with caplog.at_level(logging.WARNING, logger="depthsweep"):
        assert train(tiny_config(fake_cifar), run_dir) == "done"
    assert metrics.read_bytes() == whole  # the cut row is gone, nothing else changed
    assert "its last row was cut off mid-line: dropped" in caplog.text


def test_a_metrics_row_that_is_no_row_stops_the_resume_in_one_line(fake_cifar, tmp_path, capsys):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, fake_cifar)
    set_status(run_dir, "interrupted")
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    lines.insert(3, "garbage\r\n")
    (run_dir / "metrics.csv").write_text("".join(lines))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        run_entry([(tiny_config(fake_cifar), run_dir)], run_dir.parent)
    assert exit_.value.code == USER_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert "metrics.csv, line 4, is not a row of the log ('garbage'). Delete that line" in err


def killed_and_whole(cfg, tmp_path: Path, monkeypatch, at: int) -> None:
    """`cfg` trained whole into tmp_path/whole, and into tmp_path/killed killed just before the
    row of iteration `at` (after its checkpoint, where it has one)."""
    assert train(cfg, tmp_path / "whole") == "done"
    with killed_before_the_row(monkeypatch, at):
        train(cfg, tmp_path / "killed")


def both_logs(tmp_path: Path, *ignored: str) -> list[pd.DataFrame]:
    """The whole and the resumed run's metrics.csv, wall time (and `ignored`) aside."""
    return [
        pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=["wall_time", *ignored])
        for d in ("whole", "killed")
    ]


@pytest.mark.parametrize("at", [4, 8], ids=["mid-run", "at the last step"])
def test_a_run_killed_between_a_checkpoint_and_its_row_resumes_to_the_uninterrupted_log(
    fake_cifar, tmp_path, monkeypatch, caplog, at
):
    """Lightning writes a step's row after the step's checkpoint; killed between the two, the
    resumed run writes the lost rows again, from the checkpoint, as the uninterrupted run had."""
    # 3 batches an epoch: iterations 4 and 8 end no epoch, 8 ends the run.
    options = [*TINY[:3], f"data.root={fake_cifar}", "diagnostics.grad_norm_every=2"]
    cfg = compose_config([*options, "schedule.iterations=8", "checkpoint_every=4"])
    killed_and_whole(cfg, tmp_path, monkeypatch, at)
    cut = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert at not in set(cut.dropna(subset=["train_error"]).step)  # the row is lost
    with caplog.at_level(logging.WARNING, logger="depthsweep"):
        assert train(cfg, tmp_path / "killed") == "done"
    assert f"iteration {at}'s train_error, lost (killed after its checkpoint)" in caplog.text
    whole, resumed = both_logs(tmp_path)
    pd.testing.assert_frame_equal(resumed, whole, check_exact=True)


def test_a_run_resumed_from_an_epochs_last_iteration_logs_that_epoch_once(
    fake_cifar, tmp_path, monkeypatch
):
    """A checkpoint of an epoch's last iteration is written before the epoch ends, and
    Lightning's restart ends that epoch again: its row, logged before the kill, is not written
    twice. Lightning then counts the epoch twice, so later training rows' `epoch` is one higher
    than an uninterrupted run's (the evaluation rows' is computed from the step)."""
    options = [*TINY[:2], f"data.root={fake_cifar}"]  # 100 images, batch 128: an epoch a batch
    cfg = compose_config([*options, "schedule.iterations=8", "checkpoint_every=4"])
    killed_and_whole(cfg, tmp_path, monkeypatch, at=6)  # after the checkpoint of 4 and its rows
    assert train(cfg, tmp_path / "killed") == "done"
    whole, resumed = both_logs(tmp_path, "epoch")
    assert resumed.dropna(subset=["train_error_epoch"]).step.tolist() == list(range(1, 9))
    pd.testing.assert_frame_equal(resumed, whole, check_exact=True)


def test_ctrl_c_before_the_first_step_writes_no_checkpoint_and_the_run_starts_over(
    fake_cifar, tmp_path, monkeypatch, caplog
):
    """Ctrl-C the instant training starts: nothing trained, no checkpoint (one of iteration 0,
    written outside any step, resumed an iteration off); the same command trains the run from
    the start to the whole run's log."""

    class CtrlC(pl.Callback):  # after CheckpointOnInterrupt's on_train_start: its handler
        def on_train_start(self, trainer, module) -> None:
            signal.raise_signal(signal.SIGINT)

    make_trainer = train_module.make_trainer
    cfg = compose_config([*TINY[:3], f"data.root={fake_cifar}", "schedule.iterations=8"])
    assert train(cfg, tmp_path / "whole") == "done"
    monkeypatch.setattr(
        train_module, "make_trainer", lambda c, cbs, **kw: make_trainer(c, [*cbs, CtrlC()], **kw)
    )
    with caplog.at_level(logging.WARNING, logger="depthsweep"), pytest.raises(Interrupted):
        train(cfg, tmp_path / "killed")
    assert "interrupted by SIGINT at iteration 0: no checkpoint yet" in caplog.text
    assert not (tmp_path / "killed" / "checkpoints" / "last.ckpt").exists()
    monkeypatch.setattr(train_module, "make_trainer", make_trainer)
    assert train(cfg, tmp_path / "killed") == "done"
    whole, resumed = both_logs(tmp_path)
    pd.testing.assert_frame_equal(resumed, whole, check_exact=True)


@pytest.mark.parametrize("runs, said", [(1, ["", "its ", "it"]), (3, ["s", "", "them"])])
def test_an_interrupted_line_says_what_is_left_to_resume_from(tmp_path, runs, said):
    """A run's line or a fused group's: a checkpoint saved at the signal, an earlier one kept,
    or none, in which case the next start trains from the beginning."""
    s, its, it = said
    checkpoint = tmp_path / "last.ckpt"
    interrupt = CheckpointOnInterrupt(checkpoint)
    assert kept_on_interrupt(interrupt, checkpoint, runs) == (
        f"no checkpoint{s} yet: the next start trains {it} from the beginning"
    )
    checkpoint.write_bytes(b"")
    assert kept_on_interrupt(interrupt, checkpoint, runs) == f"{its}last checkpoint{s} kept"
    interrupt.saved = True
    assert kept_on_interrupt(interrupt, checkpoint, runs) == f"checkpoint{s} saved"


@pytest.mark.parametrize("lost", ["missing", "running"])
def test_a_finished_run_whose_record_was_lost_is_recorded_done_without_a_second_row(
    fake_cifar, tmp_path, lost, caplog
):
    run_dir = tmp_path / "run"
    train_tiny(run_dir, fake_cifar)
    info = json.loads((run_dir / "run.json").read_text())
    if lost == "missing":
        (run_dir / "run.json").unlink()
    else:
        set_status(run_dir, "running")
    metrics = (run_dir / "metrics.csv").read_bytes()
    with caplog.at_level(logging.INFO):
        assert train(tiny_config(fake_cifar), run_dir) == "done"
    assert (run_dir / "metrics.csv").read_bytes() == metrics  # no second final evaluation
    # one line says where it resumed; Lightning's two "Restor..." lines say it again
    assert "resuming from" in caplog.text and "(iteration 4)" in caplog.text
    assert "Restor" not in caplog.text
    again = json.loads((run_dir / "run.json").read_text())
    assert again["status"] == "done" and again["wall_time_s"] == info["wall_time_s"]


def test_sigterm_the_instant_a_run_starts_leaves_an_interrupted_record(
    fake_cifar, tmp_path, monkeypatch
):
    """SIGTERM right after run.json says `running`, before Lightning installs its handler. The
    test's own handler stands for the default action (the process ends where it is)."""

    class Killed(BaseException):
        pass

    def die(signum, frame):
        raise Killed

    start = RunRecord.start

    def start_then_sigterm(self, cfg, info):
        start(self, cfg, info)
        signal.raise_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, die)
    monkeypatch.setattr(RunRecord, "start", start_then_sigterm)
    try:
        with pytest.raises(Interrupted) as stopped:
            train(tiny_config(fake_cifar), tmp_path / "run")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.signal == "SIGTERM"
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (info["status"], info["error"]) == ("interrupted", "SIGTERM at iteration 0")
    assert INTERRUPTED[stopped.value.signal] == 143
    monkeypatch.undo()
    assert train(tiny_config(fake_cifar), tmp_path / "run") == "done"  # the same command resumes


# --- setup errors leave nothing behind, take nothing away ---------------------------------------


def test_a_setup_error_leaves_no_empty_runs_directory(fake_cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs" / "depthsweep" / "depth=7"  # as Hydra makes it, with its files
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "run.log").write_text("")
    with pytest.raises(SystemExit) as exit_:
        run_entry([(compose_config(["depth=7", f"data.root={fake_cifar}"]), run_dir)])
    assert exit_.value.code == USER_ERROR
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # the test's own data only


def test_a_setup_error_never_removes_a_runs_files(fake_cifar, tmp_path, capsys):
    """A run whose run.json was lost still has its checkpoint and log: a setup error (here, its
    data moved) must not take them away with what Hydra made."""
    run_dir = tmp_path / "run"
    train_tiny(run_dir, fake_cifar)
    (run_dir / "run.json").unlink()
    cfg = tiny_config(tmp_path / "moved", "data.download=false")
    with pytest.raises(SystemExit) as exit_:
        run_entry([(cfg, run_dir)])
    assert exit_.value.code == USER_ERROR
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "metrics.csv").is_file()


def test_an_output_directory_under_proc_gets_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        _check_writable("/proc/depthsweep")
    assert exit_.value.code == USER_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith("error: cannot write /proc/depthsweep: /proc does not take new")


def test_a_home_directory_typed_as_is_reaches_the_config(monkeypatch, tmp_path):
    """`data.root=~/x` is refused by Hydra's override grammar; the entry points expand it as a
    shell expands an assignment (the CLI test above types it)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    args = home_expanded(["run.py", "data.root=~/cifar", "~logger", "name=a,b"])
    assert args == ["run.py", f"data.root='{tmp_path}/cifar'", "~logger", "name=a,b"]
    assert compose_config(args[1:2]).data.root == f"{tmp_path}/cifar"


# --- the apps ------------------------------------------------------------------------------------


def test_the_zoo_says_when_a_directory_does_not_exist(tmp_path, capsys):
    assert zoo_cli.main([str(tmp_path / "nowhere")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert err == f"error: {tmp_path / 'nowhere'}: no such directory\n"


def test_the_zoo_leaves_out_a_finished_run_whose_checkpoint_cannot_be_read(
    fake_cifar, tmp_path, capsys
):
    sweep = tmp_path / "sweep"
    train_tiny(sweep / "good", fake_cifar)
    train_tiny(sweep / "cut", fake_cifar)
    ckpt = sweep / "cut" / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:3000])  # a copy cut short
    capsys.readouterr()
    assert zoo_cli.main([str(sweep)]) == 0
    out, err = capsys.readouterr()
    assert str(sweep / "good") in out and str(sweep / "cut") not in out
    assert err.startswith(f"warning: left out {sweep / 'cut'}: {ckpt} is not a depthsweep")
    assert "PytorchStreamReader failed reading zip archive" in err and err.count("\n") == 1


@contextmanager
def capture_logs():
    """What a process's console would show of the logs: the records that reach the root, and
    Lightning's, whose logger may have its own handler and not propagate."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    loggers = [logging.getLogger(), logging.getLogger("pytorch_lightning")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield text
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@contextmanager
def read_only(path: Path):
    """`path` cannot take new files, for root too (whom file modes do not stop): the immutable
    flag, where the file system has one."""
    path.chmod(0o555)
    flagged = False
    try:
        if os.geteuid() == 0:
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
            if done.returncode != 0:
                pytest.skip("running as root on a file system without chattr +i")
            flagged = True
        yield
    finally:
        if flagged:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def test_analyze_on_a_read_only_sweep_says_so_in_one_line(fake_cifar, tmp_path, capsys):
    train_tiny(tmp_path / "sweep" / "run", fake_cifar)
    capsys.readouterr()
    with read_only(tmp_path / "sweep"):
        assert analyze_cli.main([str(tmp_path / "sweep")]) == USER_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"error: cannot write the summary into {tmp_path / 'sweep'}: ")


@pytest.mark.parametrize("ylim", [["0", "nan"], ["20", "0"], ["5", "5"]])
def test_analyze_with_a_bad_ylim_writes_nothing(fake_cifar, tmp_path, capsys, ylim):
    """--ylim 0 nan rewrote the summary and the verdict, then failed drawing the figure."""
    train_tiny(tmp_path / "sweep" / "run", fake_cifar)
    capsys.readouterr()
    assert analyze_cli.main([str(tmp_path / "sweep"), "--ylim", *ylim]) == USER_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"error: --ylim {ylim[0]} {ylim[1]}: two finite numbers, LOW < HIGH")
    assert not (tmp_path / "sweep" / "summary.csv").exists()


def test_analyze_says_where_it_wrote_what(fake_cifar, tmp_path, capsys):
    """As the end of a sweep does: the files it wrote, each of them there."""
    train_tiny(tmp_path / "sweep" / "run", fake_cifar)
    capsys.readouterr()
    assert analyze_cli.main([str(tmp_path / "sweep")]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"in {(tmp_path / 'sweep').absolute()}: {report.WRITTEN}"
    for name in ("summary.md", "summary.csv", "by_depth.csv", "verdict.json", "figure6.png",
                 "error_vs_depth.png"):  # fmt: skip
        assert name in last and (tmp_path / "sweep" / name).is_file()
        assert (tmp_path / "sweep" / name).with_suffix(".svg").is_file() or "png" not in name


def test_analyze_help_names_the_sweep_directory_as_it_is(capsys):
    with pytest.raises(SystemExit):
        analyze_cli.main(["--help"])
    out = capsys.readouterr().out
    assert "multirun/<name>" in out and "DATE" not in out


@pytest.mark.parametrize("precision", ["fp7", "16-true", "64"])
def test_evaluate_with_a_precision_no_run_trains_in_says_so_in_one_line(
    tmp_path, capsys, precision
):
    """Lightning's own refusal (fp7), and the precisions it takes but whose weights would meet
    fp32 images (a traceback at the first batch): one line, before anything is loaded."""
    assert evaluate_cli.main([str(tmp_path), "--precision", precision]) == USER_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert err.startswith(f"error: --precision {precision}: a run trains in 32-true, bf16-mixed")


def test_evaluate_prints_its_numbers_without_lightnings_noise(fake_cifar, tmp_path, monkeypatch):
    train_tiny(tmp_path / "run", fake_cifar)
    for name in NOISY_LOGGERS:  # as in a fresh process: nothing filtered yet
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    with monkeypatch.context() as unfiltered, capture_logs() as control:
        unfiltered.setattr(zoo, "quiet_libraries", lambda: None)
        assert evaluate_cli.main([str(tmp_path / "run")]) == 0
    assert "GPU available" in control.getvalue()  # what the filter has to drop, seen
    with capture_logs() as logs:
        assert evaluate_cli.main([str(tmp_path / "run")]) == 0
    assert "GPU available" not in logs.getvalue() and "litlogger" not in logs.getvalue()


def test_a_sweeps_checks_print_no_precision_notice_per_run(monkeypatch):
    """A sweep checks every job's options (preflight builds its Trainer) before the first trains:
    Lightning's "Using bfloat16 Automatic Mixed Precision" once per job, before the sweep's own
    lines, is noise; the run's start line names its precision."""
    for name in NOISY_LOGGERS:  # as in a fresh process: nothing filtered yet
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    cfg = compose_config(["trainer=cpu", "trainer.precision=bf16-mixed"])
    with monkeypatch.context() as unfiltered, capture_logs() as control:
        unfiltered.setattr(train_module, "quiet_libraries", lambda: None)
        train_module.preflight(cfg)
    assert "Automatic Mixed Precision" in control.getvalue()  # what the filter has to drop, seen
    with capture_logs() as logs:
        train_module.preflight(cfg)
        train_module.preflight(cfg)
    assert "Automatic Mixed Precision" not in logs.getvalue()


def test_a_source_that_is_no_checkpoint_is_the_users_error_in_one_line(tmp_path):
    """experiments.transfer reports a UserError as a setup error (one line, exit 2)."""
    (tmp_path / "noise.ckpt").write_bytes(b"garbage\n")
    for path, message in [
        (tmp_path / "none", "no such run directory or checkpoint file"),
        (tmp_path / "noise.ckpt", "a weights-only load refuses what it holds"),
    ]:
        with pytest.raises(UserError, match=message) as e:
            zoo.load(path)
        assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize("plus", ["", "++"])  # ++ sets the config's own ??? key, as = does
def test_transfer_from_a_missing_source_is_one_line_and_leaves_nothing(tmp_path, plus):
    given = f"{plus}transfer.source={tmp_path / 'none'}"
    res = run_cli("experiments.transfer", given, cwd=tmp_path)
    assert res.returncode == USER_ERROR
    assert res.stderr == f"error: {tmp_path / 'none'}: no such run directory or checkpoint file\n"
    assert list(tmp_path.iterdir()) == []  # no runs/transfer/.hydra


class Signalled(pl.Callback):
    """A real signal (SIGINT: Ctrl-C) to this process at the end of iteration `at`."""

    def __init__(self, at: int, sig: signal.Signals = signal.SIGINT) -> None:
        self.at, self.sig = at, sig

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.sig)


class KilledAt(pl.Callback):
    """SIGKILL at the end of iteration `at`, as the process meets it: nothing more written."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.at:
            raise Killed


@pytest.mark.parametrize(
    "stop, saved",
    [(Signalled(5), 6), (Signalled(4), 5), (Signalled(7), 8), (Signalled(5, signal.SIGTERM), 5),
     (KilledAt(9), 8)],
    ids=["Ctrl-C mid-epoch", "Ctrl-C before a logged step", "Ctrl-C at an epoch's end",
         "SIGTERM mid-epoch", "periodic"],
)  # fmt: skip
def test_a_run_resumed_at_any_step_logs_what_an_unbroken_one_does(
    stop, saved, fake_cifar, tmp_path, monkeypatch
):
    """Stopped by Ctrl-C (saved at the end of the step after the signal: 6, 5 before a logged
    step, or 8, an epoch's last of four), by SIGTERM (Lightning's, at the end of the step it came
    in: 5) or killed after a periodic checkpoint at an epoch's end (8), the resumed run's
    metrics.csv is the unbroken run's, row for row: no epoch counted twice in its evaluations, no
    evaluation, partial window or epoch mean where Ctrl-C stopped it (what Lightning logs when a
    fit is stopped by should_stop mid-epoch), and the epoch's mean over all its steps."""
    options = ["data.batch_size=25", "schedule.iterations=24", "trainer.check_val_every_n_epoch=2",
               "trainer.log_every_n_steps=2",  # the signals' checkpoints alone, or every 8
               f"checkpoint_every={8 if isinstance(stop, KilledAt) else 1000}"]  # fmt: skip
    assert train(tiny_config(fake_cifar, *options), tmp_path / "unbroken") == "done"
    make_trainer = train_module.make_trainer
    monkeypatch.setattr(
        train_module, "make_trainer", lambda cfg, cbs, **kw: make_trainer(cfg, [*cbs, stop], **kw)
    )
    with pytest.raises(Killed if isinstance(stop, KilledAt) else Interrupted):
        train(tiny_config(fake_cifar, *options), tmp_path / "resumed")
    checkpoint = RunRecord(tmp_path / "resumed").checkpoint
    assert torch.load(checkpoint, weights_only=True)["global_step"] == saved
    # a signal logs nothing past the checkpoint (the lr of the step that did not run, at 6 when
    # saved at 5, once was): the summary reads the run's length from its last row
    if isinstance(stop, Signalled):
        assert pd.read_csv(tmp_path / "resumed" / "metrics.csv")["step"].max() <= saved
    monkeypatch.setattr(train_module, "make_trainer", make_trainer)
    assert train(tiny_config(fake_cifar, *options), tmp_path / "resumed") == "done"
    # Resumed from an epoch's last step, Lightning counts that epoch twice: the training rows'
    # `epoch` after it is one higher (test_a_run_resumed_from_an_epochs_last_iteration_...)
    ignored = ["wall_time", *(["epoch"] if saved % 4 == 0 else [])]
    unbroken, resumed = (
        pd.read_csv(tmp_path / d / "metrics.csv").drop(columns=ignored)
        for d in ("unbroken", "resumed")
    )
    assert unbroken.dropna(subset=["test_error"])["step"].tolist() == [8, 16, 24]
    assert unbroken.dropna(subset=["train_error_epoch"])["step"].tolist() == list(range(4, 25, 4))
    pd.testing.assert_frame_equal(resumed, unbroken, check_exact=True)


def test_ctrl_c_in_an_analysis_entry_point_is_one_line_and_130(capsys):
    """analyze, calibrate, diagnose, evaluate, frontier and zoo end so on Ctrl-C (a traceback
    before); their files are written whole, so nothing is left half-written."""

    def stopped() -> int:
        raise KeyboardInterrupt

    assert interruptible(stopped) == INTERRUPTED["SIGINT"] == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C)\n"
    assert interruptible(lambda: 0) == 0
