"""Sweeps through Hydra's other launchers: joblib (concurrent local jobs), submitit (local here,
SLURM on a cluster). Each sweep is two tiny CPU runs; the end-of-sweep analysis must still run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from helpers import run_cli
from omegaconf import OmegaConf

from depthsweep.training.config import compose_config


def sweep(launcher: list[str], data: Path, out: Path) -> str:
    result = run_cli(
        *["experiments.run", "-m", *launcher, "depth=8", "arch=plain,resnet"],
        *[f"data.root={data}", "data.batch_size=20", "schedule.iterations=5"],
        *["trainer.enable_progress_bar=false", f"hydra.sweep.dir={out}"],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def assert_both_done(out: Path) -> None:
    runs = sorted(p.parent for p in out.glob("*/run.json"))
    assert [p.name.split(",")[0] for p in runs] == ["arch=plain", "arch=resnet"]
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "done", (run, info)
        assert (run / "checkpoints" / "last.ckpt").is_file()
    summary = pd.read_csv(out / "summary.csv")  # written by the AnalyzeSweep callback
    assert sorted(summary.arch) == ["plain", "resnet"]
    assert (summary.status == "done").all()
    assert summary.final_test_error.notna().all()  # 5 steps = 1 epoch of 100 images: evaluated


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once(fake_cifar, tmp_path):
    out = tmp_path / "sweep"
    stdout = sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], fake_cifar, out)
    assert "Joblib.Parallel(n_jobs=2," in stdout
    assert_both_done(out)


@pytest.mark.slow
def test_submitit_local_runs_both_jobs(fake_cifar, tmp_path):
    out = tmp_path / "sweep"
    sweep(["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"], fake_cifar, out)
    assert_both_done(out)
    assert len(list((out / ".submitit").glob("*/*_result.pkl"))) == 2


@pytest.fixture
def slurm_cfg():
    return compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], hydra=True)


def test_slurm_launcher_composes(slurm_cfg):
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    launcher = slurm_cfg.hydra.launcher
    assert launcher._target_ == SlurmQueueConf._target_
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
    assert launcher.cpus_per_task == 8
    assert launcher.max_num_timeout > 0  # requeued after a timeout: runs resume from checkpoints
    assert launcher.signal_delay_s >= 60
    assert slurm_cfg.hydra.callbacks.analyze  # the sweep is still analysed at the end


def test_slurm_launcher_makes_a_valid_sbatch_script(tmp_path, monkeypatch):
    """The launcher's own launch() maps our config onto submitit (no SLURM needed: the submission
    is intercepted), then submitit renders the sbatch script, rejecting unknown parameters."""
    import submitit
    from hydra.utils import instantiate

    cfg = compose_config(
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={tmp_path}"],
        hydra=True,
    )
    bin_dir = tmp_path / "bin"  # submitit looks for srun to believe it is on a cluster
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg  # what Hydra's setup() would set, minus a task to run
    submitted = []
    monkeypatch.setattr(
        submitit.AutoExecutor, "map_array", lambda executor, *args: submitted.append(executor) or []
    )
    assert launcher.launch([["depth=20"]], initial_job_idx=0) == []
    (executor,) = submitted
    # submitit's script writer: no public API renders a script without submitting it
    script = executor._executor._make_submission_file_text("python -m submitit", "uid")
    for flag in ["--gpus-per-node=1", "--ntasks-per-node=1", "--cpus-per-task=8"]:
        assert f"#SBATCH {flag}" in script
    for flag in ["--time=240", "--signal=USR2@120", "--requeue", "--partition=gpu"]:
        assert f"#SBATCH {flag}" in script


@pytest.mark.slow
def test_an_optuna_search_trains_two_trials_and_reports_the_best(fake_cifar, tmp_path):
    out = tmp_path / "search"
    result = run_cli(
        *["experiments.run", "-m", "hparams_search=lr_optuna", "hydra.sweeper.n_trials=2"],
        *["depth=8", f"data.root={fake_cifar}", "data.batch_size=20", "schedule.iterations=5"],
        *["optimized_metric=final_train_error", "trainer.enable_progress_bar=false"],
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    best = OmegaConf.load(out / "optimization_results.yaml")
    summary = pd.read_csv(out / "summary.csv")
    assert (
        len(summary) == 2 and summary["schedule.optimizer.lr"].nunique() == 2
    )  # two groups, not seeds
    assert best.best_value == pytest.approx(summary.final_train_error.min())


@pytest.mark.slow
def test_fused_groups_are_the_jobs_submitit_runs(fake_cifar, tmp_path):
    """fuse=2: 4 runs, 2 fused groups, 2 jobs (submitit's); every run's directory done. Joblib's
    are tested with Ctrl-C in test_interrupts (4 groups of 8 runs, 4 jobs)."""
    out = tmp_path / "sweep"
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    sweep([*launcher, "seed=0,1", "fuse=2"], fake_cifar, out)
    assert len(list((out / ".submitit").glob("*/*_result.pkl"))) == 2  # one per group, not run
    runs = sorted(p.parent for p in out.glob("*/run.json"))
    assert len(runs) == 4
    for run in runs:
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "done" and len(info["fused_with"]) == 1
