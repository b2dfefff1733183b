"""Everything that needs the GPU, as one prepared call for a rare, short GPU window
(`experiments.gpu_check`, which experiments/gpu_check.sh runs):

a. tests/test_graphed.py: replayed CUDA-graph steps, and whole graphed runs (fp32, bf16), against
   eager ones; a graph variant that fails is left out of what follows;
b. the bench: the reference loop against eager/graph x fp32/bf16, resnet at `depths`;
c. 1, 2, ... `jobs` concurrent processes of the fastest variant at the deepest depth, without and
   (if the image has nvidia-cuda-mps-control) with MPS;
d. a quick Figure 6 (experiment=figure6_quick): the fastest variant that passed its tests, the jobs
   at once that pay (under MPS where it was measured), and the iterations that fit what time is
   left (budget.plan_from_bench), then its analysis again, in case the sweep was cut off.

Each step is a command of the project run as a process group of its own, its output logged, under
a time limit against one deadline; a step that fails or runs out of time is logged and the next
one runs. Whatever happens, OUT ends up holding gpu_check.tar.gz (every log, CSV, summary and
figure; no checkpoints) and, beside it, gpu_check.log, versions.txt, bench.csv, summary.md,
figure6.png and error_vs_depth.png.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from depthsweep.tools.bench import GPU_VARIANTS, VARIANTS
from depthsweep.tools.budget import RUN_OVERHEAD_S, fastest_variant, plan_from_bench, read_bench

GRAPH_TESTS = "tests/test_graphed.py"
SHOWN = ["versions.txt", "bench.csv", "figure6_quick/summary.md", "figure6_quick/figure6.png"]
SHOWN += ["figure6_quick/error_vs_depth.png"]


@dataclass
class Sizes:
    deadline_s: float = 510  # steps a-d end by then
    figure_budget_s: float = 240  # d's cap
    depths: Sequence[int] = (20, 110)
    steps: int = 100
    warmup: int = 20
    jobs: int = 4
    plan: dict[str, float] = field(default_factory=lambda: {"overhead_s": RUN_OVERHEAD_S})
    figure_overrides: Sequence[str] = ()  # more Hydra overrides of the figure's sweep


class Check:
    """The steps' shared state: the work directory, its log, the clock against the deadline."""

    def __init__(self, work: Path, deadline_s: float, grace_s: float = 10) -> None:
        self.work, self.deadline_s, self.start = work, deadline_s, time.monotonic()
        self.grace_s = grace_s  # after SIGTERM at a time-out: a sweep's runs checkpoint
        self.log = work / "gpu_check.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}

    def left(self) -> float:
        return self.deadline_s - (time.monotonic() - self.start)

    def say(self, message: str) -> None:
        line = f"[gpu_check {time.strftime('%H:%M:%S')} +{time.monotonic() - self.start:.0f}s]"
        line += f" {message}"
        print(line, flush=True)
        with open(self.log, "a") as f:
            f.write(line + "\n")

    def step(self, name: str, limit_s: float, *args: str) -> bool:
        """Run `python -m args` as step `name` under a time limit, its output in name.log and on
        the console; True if it exited 0. A time-out ends the step's whole process group (the
        joblib workers a sweep started included)."""
        if limit_s < 10:
            self.say(f"{name}: skipped, {limit_s:.0f}s left")
            return False
        self.say(f"{name}: start (limit {limit_s:.0f}s)")
        proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group
        )
        tee = threading.Thread(target=_tee, args=(proc.stdout, self.work / f"{name}.log"))
        tee.start()
        timed_out = False
        try:
            proc.wait(timeout=limit_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _end_group(proc.pid, signal.SIGTERM)
            time.sleep(self.grace_s)
        _end_group(proc.pid, signal.SIGKILL)  # whatever is left of it
        code = proc.wait()
        tee.join()
        self.say(f"{name}: exit {code}{' (timed out)' if timed_out else ''}")
        return code == 0 and not timed_out


def _tee(stream: TextIO, path: Path) -> None:
    with open(path, "w") as log:
        for line in stream:
            log.write(line)
            sys.stdout.write(line)


def _end_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def passed_graph_variants(test_log: str) -> list[str]:
    """The graph variants that may train the figure, from `pytest -rA`'s report of GRAPH_TESTS:
    replayed steps train like eager ones, and so does a whole graphed run in their precision."""
    passed = {
        line.removeprefix(f"PASSED {GRAPH_TESTS}::").strip()
        for line in test_log.splitlines()
        if line.startswith(f"PASSED {GRAPH_TESTS}::")
    }
    if "test_replayed_steps_train_like_eager_ones" not in passed:
        return []
    return [
        variant
        for variant, precision in (("graph-fp32", "32-true"), ("graph-bf16", "bf16-mixed"))
        if f"test_a_graphed_run_trains_like_an_eager_run[{precision}]" in passed
    ]


def versions(commit: str | None) -> str:
    """versions.txt: the date, the GPU and its driver, the library versions, the commit."""
    import hydra
    import omegaconf
    import pytorch_lightning as pl
    import torch

    smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    try:
        gpu = subprocess.run(smi, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        gpu = f"nvidia-smi: {e}"
    if commit is None:
        git = ["git", "rev-parse", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip() or "unknown"
    return "\n".join(
        [
            time.strftime("date %Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            gpu,
            f"python {sys.version.split()[0]}",
            f"torch {torch.__version__} cuda {torch.version.cuda} "
            f"cudnn {torch.backends.cudnn.version()}",
            f"lightning {pl.__version__} hydra {hydra.__version__} "
            f"omegaconf {omegaconf.__version__}",
            f"commit {commit}",
            "",
        ]
    )


class Mps:
    """The MPS daemon, its pipe directory in the environment of the steps started while it runs."""

    def __init__(self, check: Check) -> None:
        self.check, self.dir = check, check.work / "mps"

    def start(self) -> bool:
        if shutil.which("nvidia-cuda-mps-control") is None:
            self.check.say("mps: nvidia-cuda-mps-control is not on this image")
            return False
        self.dir.mkdir(exist_ok=True)
        env = {"CUDA_MPS_PIPE_DIRECTORY": str(self.dir), "CUDA_MPS_LOG_DIRECTORY": str(self.dir)}
        self.check.env |= env
        started = subprocess.run(["nvidia-cuda-mps-control", "-d"], env=self.check.env)
        return started.returncode == 0

    def stop(self) -> None:
        if "CUDA_MPS_PIPE_DIRECTORY" in self.check.env:
            subprocess.run(
                ["nvidia-cuda-mps-control"], input="quit\n", text=True, env=self.check.env
            )
            for key in ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"):
                self.check.env.pop(key)


def run_check(out: Path, data: Path, sizes: Sizes, commit: str | None = None) -> None:
    """The whole check (the module's docstring), into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check."))
    check = Check(work, sizes.deadline_s)
    mps = Mps(check)
    try:
        (work / "versions.txt").write_text(versions(commit))
        check.say("versions:\n" + (work / "versions.txt").read_text())
        _steps(check, mps, data, sizes)
    finally:
        mps.stop()
        _archive(check, out)


def _steps(check: Check, mps: Mps, data: Path, sizes: Sizes) -> None:
    # a. The graph tests decide which graph variants may train the figure.
    check.step("tests", 150, "pytest", "-q", "-rA", "-p", "no:cacheprovider", GRAPH_TESTS)
    tests_log = check.work / "tests.log"
    passed = passed_graph_variants(tests_log.read_text() if tests_log.is_file() else "")
    allowed = ["eager-fp32", "eager-bf16", *passed]
    check.say(f"variants that may train the figure: {', '.join(allowed)}")

    # b. Every eager and graph variant (a failing graph variant is still worth timing), one job
    # at a time; the bench writes each row as it is measured: a time-out keeps what came before.
    bench = ["experiments.bench", "--data-root", str(data), "--archs", "resnet"]
    bench += ["--steps", str(sizes.steps), "--warmup", str(sizes.warmup)]
    csv = check.work / "bench.csv"
    single = [*bench, "--depths", ",".join(map(str, sizes.depths)), "--out", str(csv)]
    variants = ",".join(GPU_VARIANTS)
    check.step("bench", min(check.left() - 330, 120), *single, "--variants", variants)
    rows = read_bench(csv) if csv.is_file() else []
    if not any(r["variant"] != "reference" for r in rows):
        check.step("bench-eager", 90, *single, "--variants", "eager-fp32")
        rows = read_bench(csv) if csv.is_file() else []
    if not any(r["variant"] != "reference" for r in rows):
        check.say("no variant was timed: nothing to plan a figure from")
        return

    # c. Processes at once of the fastest variant at the deepest depth: without MPS they
    # time-slice the GPU, with it (where the image has it) their kernels overlap.
    fastest = fastest_variant(rows)
    jobs = [*bench, "--no-reference", "--depths", str(max(sizes.depths)), "--variants", fastest]
    jobs += ["--jobs", str(sizes.jobs)]
    concurrency = check.work / "bench_jobs.csv"
    check.step("jobs", 60, *jobs, "--out", str(concurrency))
    if mps.start():
        under_mps = check.work / "bench_mps.csv"
        if check.step("mps", 60, *jobs, "--out", str(under_mps)):
            concurrency = under_mps  # the daemon stays on for the figure
        else:
            mps.stop()
    if concurrency.is_file():
        rows += read_bench(concurrency)

    # d. The quick Figure 6, planned from the bench to end with time to spare.
    budget = min(check.left() - 60, sizes.figure_budget_s)
    try:
        variant, plan = plan_from_bench(rows, budget, allowed, **sizes.plan)
    except ValueError as e:
        check.say(f"no quick figure: {e}")
        return
    check.say(
        f"quick figure plan ({budget:.0f} s, concurrency from {concurrency.name}): {variant}, "
        f"{plan.jobs} jobs, {plan.iterations} iterations, depths {plan.depths}, "
        f"expected {plan.expected_s:.0f} s"
    )
    sweep = check.work / "figure6_quick"
    figure = ["experiments.run", "-m", "experiment=figure6_quick"]
    figure += [f"depth={','.join(map(str, sorted(plan.depths, reverse=True)))}"]
    figure += [f"schedule.iterations={plan.iterations}", *VARIANTS[variant]]
    figure += [
        *sizes.figure_overrides,
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={plan.jobs}",
    ]
    figure += [f"data.root={data}", "data.download=false", f"hydra.sweep.dir={sweep}"]
    check.step("figure", budget + 90, *figure)
    check.step("analyze", 60, "experiments.analyze", str(sweep))


def _archive(check: Check, out: Path) -> None:
    """gpu_check.tar.gz of the work directory (no checkpoints, no MPS pipes), and the files worth
    reading first beside it."""
    check.say(f"archiving {check.work} into {out}")
    shutil.copy(check.log, out)
    for name in SHOWN:
        if (check.work / name).is_file():
            shutil.copy(check.work / name, out)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        if "checkpoints" in parts or "mps" in parts or info.name.endswith(".ckpt"):
            return None
        return info

    with tarfile.open(out / "gpu_check.tar.gz", "w:gz") as tar:
        tar.add(check.work, arcname=".", filter=keep)
