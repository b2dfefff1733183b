"""The sweeper: every job checked before the first trains; same-shape runs grouped for fusing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import run_cli

from depthsweep.errors import USER_ERROR, OptionError, UserError
from depthsweep.training import config
from depthsweep.training.config import compose_config
from depthsweep.training.sweeper import PLAN, fuse, fusion_key, group_members
from depthsweep.training.train import preflight


def jobs(*sweeps: list[str]) -> list:
    return [(o, compose_config(o)) for o in sweeps]


def test_runs_of_one_shape_fuse_k_at_a_time():
    """Seeds and plain vs resnet of one depth fuse, 3 at a time here; another depth, an arch
    that does not fuse and a run with grad-norm logging train apart."""
    sweep = [
        [f"arch={a}", f"depth={d}", f"seed={s}", "fuse=3"]
        for d in (20, 56)
        for a in ("plain", "resnet")
        for s in (0, 1)
    ]
    sweep += [["arch=inception", "depth=20", "fuse=3"]]
    sweep += [["arch=plain", "depth=20", "seed=5", "fuse=3", "diagnostics.grad_norm_every=10"]]
    sweep += [["arch=resnet", "depth=20", "seed=6", "fuse=3", "schedule.optimizer.lr=0.05"]]
    assert fuse(jobs(*sweep)) == [[0, 1, 2], [3, 10], [4, 5, 6], [7], [8], [9]]


ALONE = [[0], [1], [2], [3], [4], [5]]


@pytest.mark.parametrize(
    "capability, amx, groups",
    [("AVX512", False, [[0, 1, 2], [3, 4, 5]]), ("AVX2", False, ALONE), ("AVX512", True, ALONE)],
)
def test_fuse_where_avx512_fuses_only_where_the_cpu_runs_avx512(
    monkeypatch, capability, amx, groups
):
    """figure6_cpu's fuse: fused groups were faster per run with AVX-512 and slower with AVX2;
    with AMX, not measured, each run trains alone, as measured there."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(config, "cpu_has_amx", lambda: amx)
    sweep = [
        [f"arch={a}", "depth=20", f"seed={s}", "fuse=3-where-avx512"]
        for a in ("plain", "resnet")
        for s in (0, 1, 2)
    ]
    assert fuse(jobs(*sweep)) == groups


def test_fuse_where_avx512_follows_atens_cpu_capability_as_forced():
    """ATEN_CPU_CAPABILITY=avx2 (the emulation of a CPU without AVX-512) resolves it to 1."""
    code = (
        "from depthsweep.training.config import compose_config, resolve_fuse;"
        "print(resolve_fuse(compose_config(['experiment=figure6_cpu'])))"
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "1", done.stderr


def test_fuse_1_and_other_schedules_train_alone():
    assert fusion_key(compose_config(["fuse=1"])) is None
    assert fusion_key(compose_config(["arch=resnet_bottleneck", "depth=11", "fuse=2"])) is None
    a, b = (compose_config(["fuse=2", f"schedule.iterations={n}"]) for n in (100, 200))
    assert fusion_key(a) != fusion_key(b)  # differing shared options: never one group
    c, d = (compose_config(["fuse=2", f"arch.zero_init_residual={z}"]) for z in (True, False))
    assert fusion_key(c) == fusion_key(d)  # a member's own init
    e, f = (compose_config(["fuse=2", "arch=resnet", f"arch.shortcut={o}"]) for o in "AB")
    assert fusion_key(e) != fusion_key(f)  # one FusedNet holds one kind of shortcut
    assert fusion_key(compose_config(["fuse=2", "arch=plain"])) == fusion_key(e)
    g, h = (compose_config(["fuse=2", f"arch.width={w}"]) for w in (4, 16))
    assert fusion_key(g) != fusion_key(h)  # members of one FusedNet share its channels
    assert fusion_key(compose_config(["fuse=2", "arch=resnet", "arch.width=4"])) == fusion_key(g)
    assert fusion_key(compose_config(["fuse=2", "~arch.width"])) == fusion_key(h)  # the nets' 16


@pytest.mark.parametrize(
    "coupling",
    ["+trainer.gradient_clip_val=1.0", "trainer.precision=16-mixed"],  # one norm, one scaler
)
def test_what_would_couple_the_members_trains_alone(coupling):
    """fp16 as typed, on any host: the sweeper plans where it runs, a login node's CPU, say,
    for jobs that train on GPUs (there fp16 is fp16, one loss scaler for every member)."""
    assert fusion_key(compose_config(["fuse=2"])) is not None
    assert fusion_key(compose_config(["fuse=2", coupling])) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "late, message",
    [
        ("depth=8,7", "depth=7 is invalid"),
        # the data read once before the launch: the first run trained before (100 images here)
        ("data.limit=50,101", "data.limit=101: "),
    ],
)
def test_a_bad_value_late_in_a_list_stops_the_sweep_before_any_run(
    fake_cifar, tmp_path, late, message
):
    sweep = tmp_path / "sweep"
    res = run_cli(
        *["experiments.run", "-m", "depth=8", late, f"data.root={fake_cifar}"],
        *["schedule.iterations=2", f"hydra.sweep.dir={sweep}"],
    )
    assert res.returncode == USER_ERROR, res.stdout + res.stderr
    assert res.stderr.startswith(f"error: {message}") and "Traceback" not in res.stderr
    assert not sweep.exists()  # nothing trained, nothing left behind


@pytest.mark.slow
def test_a_fused_group_is_one_job_writing_each_runs_directory(fake_cifar, tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli(
        *["experiments.run", "-m", "depth=8", "arch=plain,resnet", "fuse=2"],
        *[f"data.root={fake_cifar}", "data.batch_size=20", "schedule.iterations=5"],
        *["trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Launching 1 jobs locally" in res.stdout
    plan = json.loads((sweep / PLAN).read_text())
    assert [[m["overrides"][:3] for m in group] for group in plan] == [
        [["depth=8", "arch=plain", "fuse=2"], ["depth=8", "arch=resnet", "fuse=2"]]
    ]
    assert [m["run_dir"] for m in plan[0]] == [
        str(sweep / f"arch={a},data.batch_size=20,depth=8,schedule.iterations=5")
        for a in ("plain", "resnet")
    ]
    for arch in ("plain", "resnet"):  # the names unfused runs have: fuse is neutral
        run = sweep / f"arch={arch},data.batch_size=20,depth=8,schedule.iterations=5"
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "done"
    assert (sweep / "summary.csv").is_file()


def test_a_job_reads_only_its_own_fused_group(tmp_path):
    """A requeued job of an earlier launch finds the plan rewritten by a later launch into the
    same sweep directory: refused, not trained as another group."""
    members = [{"overrides": [], "run_dir": str(tmp_path / d), "config": {"seed": 0}} for d in "ab"]
    (tmp_path / PLAN).parent.mkdir()
    (tmp_path / PLAN).write_text(json.dumps([members]))
    got = group_members(tmp_path, 0, tmp_path / "a")
    assert [m["run_dir"] for m in got] == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert got[0]["config"].seed == 0
    with pytest.raises(UserError, match=r"fused group 0 of .* is not this job's"):
        group_members(tmp_path, 0, tmp_path / "c")
    with pytest.raises(UserError, match=r"fused group 1: cannot read it"):
        group_members(tmp_path, 1, tmp_path / "a")


@pytest.mark.parametrize("option", ["trainer.accelerator=fpga", "+trainer.foo=1"])
def test_every_jobs_trainer_options_are_checked_before_the_first_trains(option):
    """What the sweeper runs on every job: Lightning's own checks too, not only at training."""
    assert preflight(compose_config(["trainer=cpu", "depth=8"])) is not None
    with pytest.raises(OptionError, match="trainer: "):
        preflight(compose_config(["trainer=cpu", "depth=8", option]))


@pytest.mark.parametrize("milestones", ["[32000,48000]", "[0.75,0.5]", "[0,0.5]", "[0.5,1.5]"])
def test_milestones_that_are_no_ascending_fractions_are_refused_before_anything_trains(
    milestones,
):
    """The paper's 32k and 48k given as counts would never be reached: lr 0.1 throughout."""
    override = f"schedule.scheduler.milestones={milestones}"
    with pytest.raises(OptionError, match=r"schedule: milestones are fractions .* \[0.5, 0.75\]"):
        preflight(compose_config(["trainer=cpu", "depth=8", override]))
