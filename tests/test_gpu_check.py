"""The GPU check's own logic, on the CPU: which graph variants its tests let train the figure, and
a step that runs out of time ends with everything it started."""

from __future__ import annotations

import time

from depthsweep.tools.gpu_check import Check, passed_graph_variants

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
