"""Real signals to real training processes: nothing interrupted is lost or reported as success,
and two processes never train the same run at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import ROOT, run_cli

from depthsweep.errors import INTERRUPTED

pytestmark = pytest.mark.slow  # real processes, real signals


def command(data: Path, run_dir: Path, iterations: int = 200) -> list[str]:
    return [
        *["experiments.run", "depth=8", f"data.root={data}", "data.batch_size=16"],
        *[f"schedule.iterations={iterations}", "trainer.log_every_n_steps=5"],
        *["trainer.check_val_every_n_epoch=1000", "trainer.enable_progress_bar=false"],
        f"hydra.run.dir={run_dir}",
    ]


def start(args: list[str], new_session: bool = False) -> subprocess.Popen:
    """`python -m args`; `new_session`: in a process group of its own, as a terminal's foreground
    job, which Ctrl-C signals whole (os.killpg)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=new_session,
    )


def signal_masks(pid: int) -> str:
    """Each thread of `pid`: its pending, blocked, ignored and caught signals (/proc), hex masks,
    to tell where a lost signal went."""
    said = []
    for status in sorted(Path(f"/proc/{pid}/task").glob("*/status")):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines())
        except (OSError, ValueError):
            continue
        masks = " ".join(f"{k}={fields[k].strip()}" for k in SIGNAL_FIELDS if k in fields)
        said.append(f"{status.parent.name} {fields.get('Name', '?').strip()}: {masks}")
    return "\n".join(said)


SIGNAL_FIELDS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")


def wait_for_steps(run_dir: Path, proc: subprocess.Popen, steps: int, timeout: float = 120) -> None:
    """Until `proc` has logged `steps` iterations in metrics.csv (it is mid-training)."""
    started, deadline = time.time(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        metrics = run_dir / "metrics.csv"
        if (
            metrics.is_file()
            and metrics.stat().st_mtime > started  # written by this process, not an earlier one
            and len(metrics.read_text().splitlines()) > steps // 5
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {steps} steps logged in {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_current_step_and_the_same_command_resumes(sig, fake_cifar, tmp_path):
    run_dir = tmp_path / "run"
    proc = start(command(fake_cifar, run_dir))
    wait_for_steps(run_dir, proc, 20)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED[sig.name], output[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"]
    assert info["error"] == f"{sig.name} at iteration {step}" and 0 < step < 200
    resumed = run_cli(*command(fake_cifar, run_dir))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
    logged = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_error"])["step"]
    # every window once: none lost, none doubled, none added where the signal stopped it
    assert logged.is_unique and logged.is_monotonic_increasing
    assert set(logged) == set(range(5, 201, 5))


def test_ctrl_c_while_the_launch_estimate_times_steps_stops_the_sweep_with_one_line(
    fake_cifar, tmp_path
):
    """The paper's sweep on a CPU times a plain-110 step at launch, some seconds: Ctrl-C there
    printed a KeyboardInterrupt traceback. Its size line comes first, before the timing."""
    sweep = tmp_path / "sweep"
    args = ["experiments.run", "-m", "experiment=figure6", f"data.root={fake_cifar}"]
    proc = start([*args, f"hydra.sweep.dir={sweep}"], new_session=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("sweep: 10 runs x 64,000"), first + proc.communicate()[0]
        before = signal_masks(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # the estimate is timing steps now
        try:
            output, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # twice in loaded CI runs, cause not found: say more
            after = signal_masks(proc.pid)
            raise AssertionError(f"SIGINT lost; before it:\n{before}\nafter:\n{after}") from None
    finally:  # a signal lost (in loaded CI runs) left the paper's sweep training for days
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == INTERRUPTED["SIGINT"], output[-3000:]
    assert output == "interrupted before any run started: nothing trained\n"
    assert not sweep.exists()


def test_a_run_held_by_a_live_process_is_skipped_and_a_killed_one_does_not_block(
    fake_cifar, tmp_path
):
    run_dir = tmp_path / "run"
    first = start(command(fake_cifar, run_dir, iterations=3000))
    wait_for_steps(run_dir, first, 10)
    second = run_cli(*command(fake_cifar, run_dir, iterations=3000))
    assert second.returncode == 0
    assert "running elsewhere" in second.stdout
    assert first.poll() is None  # the first one trains on, alone
    first.send_signal(signal.SIGKILL)  # no handler, no cleanup: the lock file stays behind
    first.wait(timeout=60)
    assert (run_dir / ".lock").exists()
    third = start(command(fake_cifar, run_dir, iterations=3000))
    wait_for_steps(run_dir, third, 20)  # not blocked by the dead process's lock
    third.send_signal(signal.SIGTERM)
    output, _ = third.communicate(timeout=120)
    assert third.returncode == INTERRUPTED["SIGTERM"], output[-3000:]
    # no checkpoint was saved before the kill: the third started over, logging each step once
    steps = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_error"])["step"]
    assert steps.is_unique and steps.iloc[0] == 5


def test_ctrl_c_on_a_parallel_fused_sweep_saves_every_member_and_starts_no_queued_job(
    fake_cifar, tmp_path
):
    """Ctrl-C reaches the launching process and its joblib workers at once: each running fused
    group saves all its members at one step and returns, the launcher waits for them (its
    KeyboardInterrupt once killed a worker mid-save), the queued groups do not start, and the same
    command resumes the sweep, each group as one network, every window once."""
    sweep = tmp_path / "sweep"
    args = [
        *["experiments.run", "-m", "depth=8,14", "arch=plain,resnet", "seed=0,1", "fuse=2"],
        *["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
        *[f"data.root={fake_cifar}", "data.batch_size=16", "schedule.iterations=60"],
        *["trainer.log_every_n_steps=5", "trainer.check_val_every_n_epoch=1000"],
        *["checkpoint_every=1000", "trainer.enable_progress_bar=false"],
    ]
    proc = start(args, new_session=True)
    deadline = time.monotonic() + 120
    while len(running := sorted(sweep.glob("arch=*,depth=8,*/metrics.csv"))) < 4:  # two groups
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    running = [m.parent for m in running]
    for run_dir in running:  # mid-training, with no checkpoint yet
        wait_for_steps(run_dir, proc, 10)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED["SIGINT"], output[-3000:]
    assert "is launching 4 jobs" in output  # joblib's jobs are the 4 fused groups, not 8 runs
    steps = {}
    for run_dir in running:
        info = json.loads((run_dir / "run.json").read_text())
        step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        assert (info["status"], info["error"]) == ("interrupted", f"SIGINT at iteration {step}")
        group = tuple(sorted([str(run_dir), *info["fused_with"]]))  # fused_with: the others
        steps.setdefault(group, set()).add(step)
    assert len(steps) == 2 and all(len(s) == 1 and 0 < min(s) < 60 for s in steps.values())
    queued = sorted(sweep.glob("arch=*,depth=14,*"))  # made by Hydra, never started
    assert len(queued) == 2 and not any((d / "run.json").exists() for d in queued)
    assert output.count("not started: the sweep was interrupted") == 2
    resumed = run_cli(*args)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert resumed.stdout.count("as one network") == 4
    assert all(f"resuming at iteration {min(s)} as one network" in resumed.stdout
               for s in steps.values())  # fmt: skip
    for run_dir in sorted(sweep.glob("arch=*")):
        assert json.loads((run_dir / "run.json").read_text())["status"] == "done"
        logged = pd.read_csv(run_dir / "metrics.csv").dropna(subset=["train_error"])["step"]
        # every window once, none added where Ctrl-C stopped the group
        assert logged.is_unique and set(logged) == set(range(5, 61, 5))


def test_ctrl_c_with_an_idle_joblib_worker_saves_the_running_group(fake_cifar, tmp_path):
    """One fused group, two joblib workers: Ctrl-C reaches the idle one too, which must not die
    of it (loky kills every worker when one dies: the group was left `running`, unsaved)."""
    sweep = tmp_path / "sweep"
    args = [
        *["experiments.run", "-m", "depth=8", "arch=plain", "seed=0,1", "fuse=2"],
        *["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
        *[f"data.root={fake_cifar}", "data.batch_size=16", "schedule.iterations=400"],
        *["trainer.log_every_n_steps=5", "trainer.check_val_every_n_epoch=1000"],
        *["checkpoint_every=1000", "trainer.enable_progress_bar=false"],
    ]
    proc = start(args, new_session=True)
    deadline = time.monotonic() + 120
    while len(running := sorted(sweep.glob("arch=*/metrics.csv"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    wait_for_steps(running[0].parent, proc, 10)
    os.killpg(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == INTERRUPTED["SIGINT"], output[-3000:]
    saved = set()
    for run_dir in (m.parent for m in running):
        info = json.loads((run_dir / "run.json").read_text())
        step = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        assert (info["status"], info["error"]) == ("interrupted", f"SIGINT at iteration {step}")
        saved.add(step)
    assert len(saved) == 1 and 0 < min(saved) < 400  # both members at one step
