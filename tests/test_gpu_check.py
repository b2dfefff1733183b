"""The GPU check's own logic, on the CPU: which graph variants its tests let train the figure, and
a step that runs out of time ends with everything it started. Issue #18's window (two calls): the
data steps refuse a missing part, call 2 refuses a machine without call 1's files, the plan's
fused variant trains with fuse=K, only a run's own files are packed, and the facts README holds
what each call wrote."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from depthsweep.tools.budget import QuickPlan
from depthsweep.tools.gpu_check import (
    CALL_FILES,
    FUSED_TESTS,
    Check,
    MissingData,
    Mps,
    Window,
    _json,
    _sweep_files,
    allowed_variants,
    check_call1_stash,
    facts_readme,
    figure_command,
    gather,
    pair_command,
    pair_iterations,
    passed_fused_variants,
    passed_graph_variants,
    precision_report,
    run_call2,
)

REPORT = """\
PASSED tests/test_graphed.py::test_replayed_steps_train_like_eager_ones
PASSED tests/test_graphed.py::test_a_batch_of_another_shape_is_refused
PASSED tests/test_graphed.py::test_a_graphed_run_trains_like_an_eager_run[32-true]
FAILED tests/test_graphed.py::test_a_graphed_run_trains_like_an_eager_run[bf16-mixed] - boom
"""


def test_a_graph_variant_trains_the_figure_only_if_its_tests_passed():
    assert passed_graph_variants(REPORT) == ["graph-fp32"]
    bf16 = REPORT.replace("FAILED", "PASSED").replace(" - boom", "")
    assert passed_graph_variants(bf16) == ["graph-fp32", "graph-bf16"]
    no_replay = REPORT.replace("PASSED tests/test_graphed.py::test_replayed", "FAILED x::y")
    assert passed_graph_variants(no_replay) == []
    assert passed_graph_variants("SKIPPED [4] tests/test_graphed.py: needs a CUDA GPU") == []


def test_a_step_out_of_time_ends_its_whole_process_group(tmp_path):
    check = Check(tmp_path, deadline_s=60, grace_s=1)
    pid_file = tmp_path / "child.pid"
    # A step that starts a child of its own, prints, and would outlive any limit.
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid)); print('started', flush=True); "
        "time.sleep(300)"
    )
    start = time.monotonic()
    assert not check.step("sleepy", 10, "timeit", "-n1", "-r1", code)
    assert time.monotonic() - start < 30
    assert (tmp_path / "sleepy.log").read_text().startswith("started")
    child = int(pid_file.read_text())
    assert not _alive(child)
    assert "sleepy: exit -15 (timed out)" in (tmp_path / "gpu_check.log").read_text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_fused_variants_train_the_figure_only_if_the_fused_graph_tests_passed():
    measured = ["graph-bf16", "fused-4", "fused-6"]
    report = REPORT + "".join(f"PASSED {t}\n" for t in FUSED_TESTS)
    assert passed_fused_variants(report, measured) == ["fused-4", "fused-6"]
    one_failed = report.replace(f"PASSED {FUSED_TESTS[1]}", f"FAILED {FUSED_TESTS[1]} - x")
    assert passed_fused_variants(one_failed, measured) == []
    w = Window(420)
    assert allowed_variants(report, measured, w) == [
        *["eager-fp32", "eager-bf16", "graph-fp32", "fused-4", "fused-6"]
    ]
    assert allowed_variants(one_failed, measured, w) == ["eager-fp32", "eager-bf16", "graph-fp32"]
    assert allowed_variants("", measured, Window(420, dry_run=True)) == measured
    assert allowed_variants("", measured, Window(420, force_variant="fused-6")) == ["fused-6"]


def test_the_data_steps_refuse_a_missing_part(tmp_path):
    carry, dest = tmp_path / ".gpu_call2", tmp_path / "stash" / "cifar10"
    carry.mkdir()
    (carry / "cifar10_train_1.npz").write_bytes(b"part 1")
    with pytest.raises(MissingData, match=r"lacks cifar10_train_2\.npz: fill it with"):
        gather(carry, dest, CALL_FILES[2])
    assert not dest.exists()  # nothing copied
    (carry / "cifar10_train_2.npz").write_bytes(b"part 2")
    gather(carry, dest, CALL_FILES[2])
    assert (dest / "cifar10_train_2.npz").read_bytes() == b"part 2"


def test_call_2_refuses_a_machine_without_call_1s_files(tmp_path):
    stash = tmp_path / ".gpu_stash"
    with pytest.raises(MissingData, match="call 1's files are gone .* Nothing was trained"):
        check_call1_stash(stash)
    (stash / "cifar10").mkdir(parents=True)
    for name in CALL_FILES[1]:
        (stash / "cifar10" / name).write_text("x")
    with pytest.raises(MissingData, match="missing: CALL1"):
        check_call1_stash(stash)
    (stash / "CALL1").write_text("done")
    check_call1_stash(stash)
    (stash / "cifar10" / "cifar10_test.npz").unlink()
    with pytest.raises(MissingData, match="missing: cifar10_test.npz"):
        check_call1_stash(stash)
    # the call itself: exit 3, the reason in call2.log, nothing trained or written in the stash
    out = tmp_path / "out"
    assert run_call2(out, tmp_path / ".gpu_call2", stash, Window(420)) == 3
    assert "call 1's files are gone" in (out / "call2.log").read_text()
    assert not (stash / "call2").exists()


@pytest.mark.slow
def test_the_script_stops_call_2_on_a_fresh_machine_before_installing_anything(tmp_path):
    script = Path(__file__).parents[1] / "experiments" / "gpu_check.sh"
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", str(script), "call2"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 3
    assert "call 1's files are gone" in done.stderr
    assert "Nothing was trained" in (tmp_path / "out" / "call2.log").read_text()


def test_the_figure_of_a_fused_plan_sweeps_with_fuse_k_and_its_seeds(tmp_path):
    plan = QuickPlan(4200, (20, 32, 44, 56, 110), 1, 300.0, seeds=3, fuse=6, groups=5)
    w = Window(420, val_split=5000)
    figure = figure_command("fused-6", plan, Path("/d"), Path("/s"), w)
    assert figure[:3] == ["experiments.run", "-m", "experiment=figure6_quick"]
    for arg in ["depth=110,56,44,32,20", "seed=0,1,2", "fuse=6", "schedule.iterations=4200"]:
        assert arg in figure
    assert "hydra.launcher.n_jobs=1" in figure and "data.val_split=5000" in figure
    assert not any(a.startswith(("trainer.precision", "cuda_graph")) for a in figure)  # composed
    pair = pair_command("fused-6", plan, Path("/d"), Path("/p"), w)
    for arg in ["arch=resnet", "depth=56", "seed=0", "trainer.precision=32-true,bf16-mixed"]:
        assert arg in pair
    assert "cuda_graph=true" in pair and "fuse=1" in pair and "schedule.iterations=4200" in pair
    unfused = QuickPlan(2600, (20, 56, 110), 4, 300.0, seeds=2, fuse=1, groups=12)
    figure = figure_command("graph-bf16", unfused, Path("/d"), Path("/s"), Window(420))
    assert "fuse=1" in figure and "cuda_graph=true" in figure and "seed=0,1" in figure
    assert "hydra.launcher.n_jobs=4" in figure
    assert "cuda_graph=false" in pair_command("eager-bf16", unfused, Path("/d"), Path("/p"), w)


def write_run(run_dir: Path, precision: str, seed: int, errors: list[float], **extra) -> None:
    run_dir.mkdir(parents=True)
    record = {"arch": "resnet", "depth": 56, "seed": seed, "precision": precision}
    (run_dir / "run.json").write_text(json.dumps(record | {"status": "done"} | extra))
    (run_dir / "config.yaml").write_text("seed: 0\n")
    rows = ["step,lr,train_error,test_error"] + [
        f"{10 * (i + 1)},0.001,{e},{e + 5}" for i, e in enumerate(errors)
    ]
    (run_dir / "metrics.csv").write_text("\n".join(rows) + "\n")


def test_the_precision_report_and_the_packed_files(tmp_path):
    pair, figure = tmp_path / "precision", tmp_path / "figure"
    write_run(pair / "a", "32-true", 0, [20.0] * 20)
    write_run(pair / "b", "bf16-mixed", 0, [21.0] * 20)
    write_run(figure / "c", "bf16-mixed", 0, [22.0] * 20, fused_with=["d"])
    write_run(figure / "d", "bf16-mixed", 1, [24.0] * 20)
    (figure / "c" / "checkpoints").mkdir()
    (figure / "c" / "checkpoints" / "last.ckpt").write_text("weights")
    (figure / "c" / ".lock").write_text("")
    (figure / "c" / "run.log").write_text("log")
    (figure / "summary.md").write_text("table")
    (figure / ".fused").mkdir()
    (figure / ".fused" / "groups.json").write_text("[]")
    report = json.loads(_json(precision_report(pair, figure, 56)))  # numpy's numbers written
    assert report["pair"][0]["iterations"] == 200
    assert report["train_error_fp32_minus_bf16"] == pytest.approx(-1.0)
    assert report["figure_seed_sd"] == pytest.approx(2**0.5)
    assert report["figure_runs"][0]["fused_with"] == ["d"]
    assert report["sentence"].startswith("resnet-56 final training error fp32 20.00%, bf16 21.00%")
    kept = sorted(str(rel) for _, rel in _sweep_files(figure))
    assert kept == [
        ".fused/groups.json",
        *[f"{r}/{f}" for r in "cd" for f in ("config.yaml", "metrics.csv", "run.json")],
        "summary.md",
    ]
    (pair / "b" / "run.json").write_text(json.dumps({"arch": "resnet", "depth": 56,
                                                     "precision": "bf16-mixed",
                                                     "status": "interrupted"}))  # fmt: skip
    assert "did not finish" in precision_report(pair, figure, 56)["sentence"]


def test_a_late_figure_leaves_the_pair_fewer_iterations_not_none():
    plan = QuickPlan(4000, (20, 56, 110), 1, 300.0, pair_s=50.0)
    assert pair_iterations(plan, 60) == 4000  # 55 s planned with 10% to spare
    assert pair_iterations(plan, 30) == 2100  # 4000 x 30 / 55 = 2181 -> 2100
    assert pair_iterations(plan, 5) == 0  # under a tenth of the figure's: no pair


def test_an_mps_daemon_that_does_not_start_leaves_no_mps_environment(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "nvidia-cuda-mps-control"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    check = Check(tmp_path, deadline_s=60)
    assert not Mps(check).start()
    assert "CUDA_MPS_PIPE_DIRECTORY" not in check.env  # the steps after it run without MPS
    assert "the daemon did not start (exit 1)" in (tmp_path / "gpu_check.log").read_text()


def test_the_facts_readme_holds_what_each_call_wrote_and_says_what_is_missing(tmp_path):
    """results/gpu/NAME/README.md from a stash: versions, the data check's verdict lines, the
    plan (its options left out), the verdict's and the precision pair's sentences, both logs."""
    call1, call2 = tmp_path / "call1", tmp_path / "call2"
    (call2 / "figure").mkdir(parents=True)
    call1.mkdir()
    (call2 / "versions.txt").write_text("torch 2.11\n")
    (call2 / "verify.log").write_text("reading part 0\nPASS data_batch_1\nALL PASS\nnoise\n")
    (call2 / "plan.json").write_text(json.dumps({"variant": "fused-4", "options": [1, 2]}))
    (call2 / "figure" / "verdict.json").write_text(json.dumps({"sentence": "Inconclusive: x."}))
    (call2 / "precision.json").write_text(json.dumps({"sentence": "bf16 within noise."}))
    (call1 / "gpu_check.log").write_text("call 1 step\n")
    (call2 / "gpu_check.log").write_text("call 2 step\n")
    text = facts_readme(tmp_path, "figure6_full")
    assert text.startswith("# figure6_full: Figure 6 on all 50,000 training images (issue #18)")
    assert "```\ntorch 2.11\n```" in text
    assert "```\nPASS data_batch_1\nALL PASS\n```" in text  # the verdict lines only
    assert "variant: fused-4" in text and "options" not in text
    assert "Inconclusive: x." in text and "bf16 within noise." in text
    assert "```\ncall 1 step\ncall 2 step\n```" in text
    bare = facts_readme(tmp_path / "none", "figure6_full")  # a call that left nothing
    assert "```\n(missing)\n```" in bare
    assert "## Verdict (figure/verdict.json)\n(none)" in bare
    assert "## Precision pair (call2/precision.json)\n(none)" in bare
