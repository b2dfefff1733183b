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
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TextIO

from depthsweep.files import plain_data
from depthsweep.runs.metrics import read_final_errors
from depthsweep.tools.bench import GPU_VARIANTS, VARIANTS
from depthsweep.tools.budget import (
    QUICK_DEPTH_SETS,
    RUN_OVERHEAD_S,
    QuickPlan,
    choose_plan,
    fastest_variant,
    figure_options,
    plan_from_bench,
    read_bench,
)

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
    """The steps' shared state: the work directory, its log, the clock against the deadline.
    `quiet`: the steps' output goes to their logs only, the console gets the check's own lines
    (a device call's reply shows the end of its output: it should be the summary). Every step's
    command line is appended to commands.txt."""

    def __init__(
        self, work: Path, deadline_s: float, grace_s: float = 10, quiet: bool = False
    ) -> None:
        self.work, self.deadline_s, self.start = work, deadline_s, time.monotonic()
        self.grace_s = grace_s  # after SIGTERM at a time-out: a sweep's runs checkpoint
        self.quiet = quiet
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
        return self.run(name, limit_s, [sys.executable, "-m", *args])

    def script(self, name: str, limit_s: float, path: str | Path, *args: str) -> bool:
        """`step` for a Python script: `python path args`."""
        return self.run(name, limit_s, [sys.executable, str(path), *args])

    def parallel(self, steps: Sequence[tuple[str, float, list[str]]]) -> dict[str, bool]:
        """Several steps (name, limit, argv) at once, each as `run`; whether each passed."""
        results: dict[str, bool] = {}

        def one(name: str, limit_s: float, argv: list[str]) -> None:
            results[name] = self.run(name, limit_s, argv)

        threads = [threading.Thread(target=one, args=step) for step in steps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def run(self, name: str, limit_s: float, argv: Sequence[str]) -> bool:
        """`argv` as step `name` (see `step`)."""
        if limit_s < 10:
            self.say(f"{name}: skipped, {limit_s:.0f}s left")
            return False
        self.say(f"{name}: start (limit {limit_s:.0f}s)")
        with open(self.work / "commands.txt", "a") as f:
            f.write(f"# {name}\n{shlex.join(map(str, argv))}\n")
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,  # its own process group
        )
        log = self.work / f"{name}.log"
        tee = threading.Thread(target=_tee, args=(proc.stdout, log, not self.quiet))
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


def _tee(stream: TextIO, path: Path, echo: bool = True) -> None:
    with open(path, "w") as log:
        for line in stream:
            log.write(line)
            if echo:
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
        if started.returncode != 0:  # the steps after it run without MPS
            self.check.say(f"mps: the daemon did not start (exit {started.returncode})")
            for key in env:
                self.check.env.pop(key)
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


# Issue #18's window: Figure 6 on all 50,000 training images in two device calls.
#
# The compact CIFAR-10 files are about 93 MiB and a device call carries at most 64 MiB with the
# working tree, so they travel in two calls (experiments/gpu_prepare.sh fills the two carried
# folders). Call 1 carries training part 0 and the test file, with materialize.py and verify.py:
# the official materialize.py needs the test file, so call 1 can write a data folder (17,000
# training images, as the last window did) for what it measures: the GPU tests and the bench.
# It copies its files into the stash, a git-ignored folder of the checkout that the device keeps
# only while it stays warm (about 30 s after a call). Call 2 carries training parts 1 and 2, adds
# them to the stash, checks all four files and the 50,000 decoded images (verify.py), writes the
# official layout with the 1,000 exact test images (materialize.py), plans the figure from call
# 1's bench and trains it, then the precision pair, and packs the results.

CALL_FILES = {
    1: ("cifar10_train_0.npz", "cifar10_test.npz", "verify.py", "materialize.py"),
    2: ("cifar10_train_1.npz", "cifar10_train_2.npz"),
}
CALL1_DONE = "CALL1"  # in the stash: call 1's files are in place (written after they are)
# The GPU tests of the fast paths: single runs' CUDA graphs, and fused groups' (never run on a GPU
# before this window).
GPU_TESTS = (
    GRAPH_TESTS,
    "tests/test_fused.py::test_a_diverging_member_leaves_the_others_alone_and_can_be_frozen",
    "tests/test_fused.py::test_cuda_graph_of_the_whole_step_replays_the_eager_steps",
    "tests/test_fused_runs.py::test_a_graphed_fused_group_trains_like_an_eager_one",
)
# A fused variant trains in the composed config's precision, bf16 on a GPU, as one CUDA graph.
FUSED_TESTS = (
    "tests/test_fused.py::test_cuda_graph_of_the_whole_step_replays_the_eager_steps[bf16]",
    "tests/test_fused_runs.py::test_a_graphed_fused_group_trains_like_an_eager_one[bf16-mixed]",
)
# Call 1's bench: the unfused graph path in both precisions (the pair's cost) and the fused
# variants a figure of 1, 2 or 3 seeds can use (K divides 2 x seeds: the sweeper fuses the runs
# of one depth). fused-8/10, which only 4 or 5 seeds could use, are issue #17's numbers: timed in
# call 2 while verify.py keeps the CPUs busy and the GPU would idle.
PLAN_VARIANTS = ("graph-bf16", "graph-fp32", "fused-2", "fused-4", "fused-6")
LARGE_FUSED = ("fused-8", "fused-10")


class MissingData(RuntimeError):
    """A file a call needs is not where it should be, or the data did not verify: nothing was
    trained (the call exits 3)."""


@dataclass
class Window:
    """The window's sizes; `dry_run_window` shrinks them for a CPU."""

    deadline_s: float  # the call's steps end by then
    bench_depths: Sequence[int] = (20, 56, 110)
    large_depths: Sequence[int] = (20, 110)
    steps: int = 50  # timed steps per bench measurement: a CUDA graph's replays vary little
    warmup: int = 10
    batch: int | None = None  # the bench's (None: 128 on a GPU)
    jobs: int = 4  # the concurrency bench: 1, 2, ... jobs processes at once
    seeds: Sequence[int] = (2, 3)  # the seed counts the plan weighs (choose_plan)
    more_seeds_worth: float = 0.8
    pair_depth: int = 56  # the precision pair: ResNet at this depth, fp32 and bf16, seed 0
    depth_sets: Sequence[Sequence[int]] = QUICK_DEPTH_SETS
    plan: dict[str, float] = field(default_factory=lambda: {"overhead_s": RUN_OVERHEAD_S})
    figure_budget_s: float | None = None  # a cap on the plan's budget (dry runs)
    reserve_s: float = 60  # call 2: kept for the pair's analysis, precision.json, the archive
    figure_overrides: Sequence[str] = ()  # more overrides of the figure's and the pair's sweeps
    val_split: int = 0  # held-out training images (data.val_split); 0: train on all 50,000
    force_variant: str | None = None  # the plan weighs only this variant (a dry run's fused path)
    dry_run: bool = False  # a CPU: the GPU tests' verdict (all skipped) is ignored


def dry_run_window(deadline_s: float, **given) -> Window:
    """Tiny sizes for a CPU dry run of a call: the same steps, files and archive in minutes."""
    tiny = {
        "bench_depths": (8, 14, 20),
        "large_depths": (8, 20),
        "steps": 2,
        "warmup": 1,
        "batch": 16,
        "jobs": 2,
        "pair_depth": 14,
        "depth_sets": ((8, 14, 20),),
        "plan": {"overhead_s": 2.0, "min_iterations": 10, "round_to": 10},
        "figure_budget_s": 40.0,
        "figure_overrides": ("data.batch_size=16", "data.limit=512", "data.eval_batch_size=256"),
    }
    return Window(deadline_s, dry_run=True, **(tiny | given))


def passed_fused_variants(test_log: str, variants: Sequence[str]) -> list[str]:
    """The fused variants of `variants` that may train the figure: all, if the fused group's
    CUDA graph in bf16 trained like its eager steps in FUSED_TESTS' report; else none."""
    passed = {line.removeprefix("PASSED ").strip() for line in test_log.splitlines()}
    if not all(test in passed for test in FUSED_TESTS):
        return []
    return [v for v in variants if v.startswith("fused-")]


def gather(carry: Path, dest: Path, names: Sequence[str]) -> None:
    """Copy the files `names` from the carried folder `carry` into `dest`; MissingData naming
    every missing one (before copying any)."""
    missing = [n for n in names if not (carry / n).is_file()]
    if missing:
        raise MissingData(
            f"{carry} lacks {', '.join(missing)}: fill it with "
            "`bash experiments/gpu_prepare.sh SHARED_CIFAR_DIR WHEELS_DIR` and carry it"
        )
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy2(carry / n, dest / n)


def check_call1_stash(stash: Path) -> None:
    """MissingData unless call 1's files are in `stash`: the machine went back between the calls
    (it stays warm about 30 s), so this is a fresh one."""
    missing = [n for n in CALL_FILES[1] if not (stash / "cifar10" / n).is_file()]
    if not (stash / CALL1_DONE).is_file():
        missing.insert(0, CALL1_DONE)
    if missing:
        raise MissingData(
            f"call 1's files are gone from {stash} (missing: {', '.join(missing)}): the device "
            "machine was given back between the calls (it stays warm about 30 s), so this is a "
            "fresh one. Nothing was trained. Make call 1 again, then call 2 at once."
        )


def commit_of(folder: Path) -> str | None:
    """The commit gpu_prepare.sh recorded in `folder`/COMMIT (the device has no .git)."""
    path = folder / "COMMIT"
    if path.is_file():
        return path.read_text().strip() or None
    return os.environ.get("DEPTHSWEEP_COMMIT")


def read_rows(*paths: Path) -> list[dict]:
    """The rows of the bench CSVs that exist, in order, each with its file's name as `source`."""
    rows = []
    for path in paths:
        if path.is_file():
            rows += [r | {"source": path.name} for r in read_bench(path)]
    return rows


def allowed_variants(test_log: str, measured: Sequence[str], w: Window) -> list[str]:
    """The variants that may train the figure: eager ones, graph ones whose tests passed, fused
    ones if the fused graph's did (a dry run: every measured one); `w.force_variant` alone if
    given."""
    if w.force_variant:
        return [w.force_variant]
    if w.dry_run:
        return list(measured)
    allowed = ["eager-fp32", "eager-bf16", *passed_graph_variants(test_log)]
    return allowed + passed_fused_variants(test_log, measured)


def run_call1(out: Path, carry: Path, stash: Path, w: Window) -> int:
    """Call 1: the stash (call 1's files, the wheels, the commit), then the GPU tests and the bench
    on part 0 (17,000 images), its logs and CSVs in the stash for call 2 and in `out`. Returns 0,
    or 3 where call 1's files were missing."""
    out.mkdir(parents=True, exist_ok=True)
    if stash.exists():  # a repeated call 1 starts over
        shutil.rmtree(stash)
    work = stash / "call1"
    work.mkdir(parents=True)
    commit = commit_of(carry)

    def steps(check: Check, mps: Mps) -> None:
        gather(carry, stash / "cifar10", CALL_FILES[1])
        if (carry / "wheels").is_dir():  # call 2 installs them again from here
            shutil.copytree(carry / "wheels", stash / "wheels")
        (stash / "COMMIT").write_text(commit or "")
        (stash / CALL1_DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        _call1_steps(check, mps, stash, w)

    return _call(work, w, commit, steps, lambda check, code: _pack_call1(check, out, code))


def _call(work: Path, w: Window, commit: str | None, steps, pack) -> int:
    """A call's frame: versions.txt, `steps(check, mps)`, MPS stopped and `pack(check, code)`
    whatever happens; returns 0, or 3 where a file was missing."""
    check = Check(work, w.deadline_s, quiet=True)
    mps = Mps(check)
    code = 0
    try:
        (work / "versions.txt").write_text(versions(commit))
        check.say("versions:\n" + (work / "versions.txt").read_text())
        steps(check, mps)
    except MissingData as e:
        check.say(f"stopped: {e}")
        code = 3
    finally:
        mps.stop()
        pack(check, code)
    return code


def _bench_args(data: Path, w: Window) -> list[str]:
    args = ["experiments.bench", "--data-root", str(data), "--archs", "resnet", "--no-reference"]
    args += ["--steps", str(w.steps), "--warmup", str(w.warmup)]
    return args + (["--batch", str(w.batch)] if w.batch else [])


def _call1_steps(check: Check, mps: Mps, stash: Path, w: Window) -> None:
    # Limits for a 240 s deadline where the last window's timings (tests 25 s, a bench
    # measurement about 9 s, a concurrency bench 52 s) and the fused tests' (not run on a GPU
    # yet) suggest about 200 s: a step that hangs cannot starve the bench.
    data = stash / "bench_data"
    materialize = stash / "cifar10" / "materialize.py"
    if not check.script("materialize", 60, materialize, str(data), "--train-parts", "0"):
        check.say("no data for the bench: call 2 will bench graph-bf16 itself")
        return
    check.step("tests", 100, "pytest", "-q", "-rA", "-p", "no:cacheprovider", *GPU_TESTS)
    bench = _bench_args(data, w)
    single = [*bench, "--depths", ",".join(map(str, w.bench_depths))]
    single += ["--variants", ",".join(PLAN_VARIANTS), "--out", str(check.work / "bench.csv")]
    check.step("bench", min(check.left() - 70, 150), *single)
    # Concurrency of the unfused graph path (a fused variant's bench is one process per group)
    # at the deepest depth and at 20. Without MPS processes time-slice the GPU (1.00x at depth
    # 110 in the last window), so only depth 20 is measured then.
    jobs = [*bench, "--variants", "graph-bf16", "--jobs", str(w.jobs)]
    deepest, shallowest = max(w.bench_depths), min(w.bench_depths)
    under_mps = mps.start()
    for depth in (deepest, shallowest) if under_mps else (shallowest,):
        name = f"{'mps' if under_mps else 'jobs'}_{depth}"
        out = ["--depths", str(depth), "--out", str(check.work / f"bench_{name}.csv")]
        check.step(name, min(check.left() - 5, 70), *jobs, *out)


def _pack_call1(check: Check, out: Path, code: int) -> None:
    check.say(f"archiving {check.work} into {out}")
    shutil.copy(check.log, out / "call1.log")
    for name in ("versions.txt", "bench.csv"):
        if (check.work / name).is_file():
            shutil.copy(check.work / name, out)
    with tarfile.open(out / "call1.tar.gz", "w:gz") as tar:
        tar.add(check.work, arcname="call1", filter=_no_pipes)
    rows = read_rows(*sorted(check.work.glob("bench*.csv")))
    print(_rows_table(rows), flush=True)
    if code == 0:
        print(
            "CALL 1 DONE. Make call 2 NOW (the machine stays warm about 30 s):\n"
            "  run(command='bash experiments/gpu_check.sh call2 --deadline-s 420', "
            "carry=['.gpu_call2'], timeout_s=480)\n"
            "  where this reply's lease.budget_left_s is not 520: --deadline-s D with "
            "D = min(540, budget_left_s - 100) and timeout_s D + 60 (results/gpu/README.md)",
            flush=True,
        )


def _no_pipes(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if "mps" in parts or not (info.isfile() or info.isdir()):
        return None
    return info


def _rows_table(rows: Sequence[dict]) -> str:
    """The bench rows in a few lines: ms/step (per run) by variant and depth, jobs at once."""
    lines = ["variant      depth jobs  ms/step  ms/run  images/s  (source)"]
    for r in rows:
        per_run = r["ms_per_step"] / r["members"]
        lines.append(
            f"{r['variant']:<12}{r['depth']:>6}{r['jobs']:>5}{r['ms_per_step']:>9.2f}"
            f"{per_run:>8.2f}{r['images_per_s']:>10.0f}  ({r['source']})"
        )
    return "\n".join(lines)


def run_call2(out: Path, carry: Path, stash: Path, w: Window, name: str | None = None) -> int:
    """Call 2: the data checked and materialized, the figure planned from call 1's bench and
    trained, the precision pair, everything packed into `out` (results/gpu/NAME/ inside
    figure6.tar.gz, NAME `<date>-figure6`). Returns 0, or 3 where call 1's or call 2's files were
    missing (nothing trained)."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        check_call1_stash(stash)
    except MissingData as e:
        message = f"[gpu_check call2] stopped: {e}"
        print(message, flush=True)
        (out / "call2.log").write_text(message + "\n")
        return 3
    work = stash / "call2"
    if work.exists():  # a repeated call 2 starts over
        shutil.rmtree(work)
    work.mkdir()
    name = name or time.strftime("%Y-%m-%d-figure6", time.gmtime())
    name += "-cpu-dry-run" if w.dry_run else ""

    def steps(check: Check, mps: Mps) -> None:
        gather(carry, stash / "cifar10", CALL_FILES[2])
        _call2_steps(check, mps, stash, w)

    return _call(
        work, w, commit_of(stash), steps, lambda check, _: _pack_call2(check, out, stash, name)
    )


def _call2_steps(check: Check, mps: Mps, stash: Path, w: Window) -> None:
    cifar, data, call1 = stash / "cifar10", stash / "data", stash / "call1"
    # verify.py and materialize.py each decode everything on one core: at once, and the GPU
    # times issue #17's large fused groups meanwhile (on call 1's data folder, if it was written).
    large = [*_bench_args(stash / "bench_data", w), "--variants", ",".join(LARGE_FUSED)]
    large += ["--depths", ",".join(map(str, w.large_depths))]
    large += ["--out", str(check.work / "bench_large.csv")]
    steps = [
        ("verify", 150, [sys.executable, str(cifar / "verify.py")]),
        ("materialize", 150, [sys.executable, str(cifar / "materialize.py"), str(data)]),
    ]
    if (stash / "bench_data").is_dir():
        steps.append(("bench_large", 60, [sys.executable, "-m", *large]))
    done = check.parallel(steps)
    if not (done["verify"] and done["materialize"]):
        raise MissingData("the data did not verify or materialize (verify.log): nothing trained")
    check.say("data: all four files and the 50,000 training images verified (verify.log)")

    rows = read_rows(call1 / "bench.csv", *sorted(call1.glob("bench_*.csv")))
    if not any(r["variant"] != "reference" for r in rows):  # call 1 measured nothing
        bench = [*_bench_args(data, w), "--variants", "graph-bf16"]
        bench += ["--depths", f"{min(w.bench_depths)},{max(w.bench_depths)}"]
        check.step("bench", 90, *bench, "--out", str(check.work / "bench.csv"))
        rows = read_rows(check.work / "bench.csv")
    if not rows:
        check.say("no variant was timed: nothing to plan a figure from")
        return
    tests = call1 / "tests.log"
    measured = sorted({r["variant"] for r in rows})
    allowed = allowed_variants(tests.read_text() if tests.is_file() else "", measured, w)
    check.say(f"variants that may train the figure: {', '.join(allowed)}")

    # MPS only for a step whose jobs at once were measured under it: one process alone ran 3-4%
    # slower with the daemon on (results/gpu/check/bench_mps.csv).
    under_mps = any("mps" in r["source"] for r in rows)
    try:
        variant, plan, options = _plan(check, rows, allowed, w)
        if plan.jobs > 1 and under_mps and not mps.start():  # one at a time, then
            rows = [r for r in rows if "mps" not in r["source"] or r["jobs"] == 1]
            variant, plan, options = _plan(check, rows, allowed, w)
    except ValueError as e:
        check.say(f"no figure: {e}")
        return
    plan_json = {
        "variant": variant,
        "overrides": [*VARIANTS[variant], f"fuse={plan.fuse}"],
        **asdict(plan),
        "runs": plan.runs,
        "allowed": allowed,
        "mps": under_mps and (plan.jobs > 1 or plan.pair_jobs > 1),
        "options": [{"variant": v, **asdict(p)} for v, p in options],
    }
    (check.work / "plan.json").write_text(_json(plan_json))
    check.say(
        f"plan: {variant} (fuse={plan.fuse}), {plan.seeds} seeds, {plan.runs} runs in "
        f"{plan.groups} jobs, {plan.jobs} at once, {plan.iterations} iterations, depths "
        f"{'/'.join(map(str, plan.depths))}; expected {plan.expected_s - plan.pair_s:.0f} s, "
        f"then the precision pair {plan.pair_s:.0f} s ({plan.pair_jobs} at once)"
    )

    # The figure may use the pair's time if it runs over: a figure cut off would be the worst
    # outcome, a shorter pair (pair_iterations) a small loss.
    sweep, pair_dir = check.work / "figure", check.work / "precision"
    figure = figure_command(variant, plan, data, sweep, w)
    ok = check.step("figure", check.left() - 25, *figure)
    if not ok and not (sweep / "verdict.json").is_file():  # cut off before its analysis
        check.step("analyze", min(60, check.left() - 40), "experiments.analyze", str(sweep))
    mps_on = "CUDA_MPS_PIPE_DIRECTORY" in check.env
    if plan.pair_jobs > 1 and under_mps and not mps_on and not mps.start():
        plan = replace(plan, pair_jobs=1, pair_s=2 * plan.pair_s)  # one after another: at most 2x
    iterations = pair_iterations(plan, check.left() - 25, w.plan.get("round_to", 100))
    if iterations < plan.iterations:
        check.say(f"the pair gets {iterations} iterations, not the figure's: time is short")
    if iterations:
        pair = pair_command(variant, replace(plan, iterations=iterations), data, pair_dir, w)
        check.step("precision", check.left() - 25, *pair)
    try:
        report = precision_report(pair_dir, sweep, w.pair_depth)
    except Exception as e:  # the report must not cost the archive
        report = {"sentence": f"no precision report: {type(e).__name__}: {e}"}
    (check.work / "precision.json").write_text(_json(report))
    check.say(f"precision: {report['sentence']}")


def pair_iterations(plan: QuickPlan, left_s: float, round_to: int = 100) -> int:
    """The pair's iterations: the figure's where its planned time (with 10% to spare) is left,
    else as many as fit, rounded down to `round_to`; 0 if fewer than a tenth of the figure's."""
    if plan.pair_s * 1.1 <= left_s:
        return plan.iterations
    fit = int(plan.iterations * left_s / (plan.pair_s * 1.1)) // round_to * round_to
    return fit if fit >= plan.iterations / 10 else 0


def _json(data: dict) -> str:
    return json.dumps(plain_data(data), indent=2) + "\n"


def figure_command(variant: str, plan: QuickPlan, data: Path, sweep: Path, w: Window) -> list[str]:
    """The figure's sweep (`python -m` these): plain and resnet at the plan's depths, deepest
    first, seeds 0..seeds-1, `variant`'s overrides and fuse=K, its jobs at once."""
    figure = ["experiments.run", "-m", "experiment=figure6_quick"]
    figure += [f"depth={','.join(map(str, sorted(plan.depths, reverse=True)))}"]
    figure += [f"seed={','.join(map(str, range(plan.seeds)))}"]
    figure += [*VARIANTS[variant], f"fuse={plan.fuse}", *_common(plan, data, w)]
    figure += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={plan.jobs}"]
    return [*figure, f"hydra.sweep.dir={sweep}"]


def pair_command(variant: str, plan: QuickPlan, data: Path, sweep: Path, w: Window) -> list[str]:
    """The precision pair's sweep: ResNet at `w.pair_depth`, seed 0, the figure's iterations and
    data, fp32 and bf16 on `variant`'s unfused path (`budget.pair_variants`: its CUDA graph or
    eager step; channels-last with bf16 only, as `auto` gives it)."""
    graph = "false" if variant.startswith("eager") else "true"
    pair = ["experiments.run", "-m", "name=precision", "arch=resnet", f"depth={w.pair_depth}"]
    pair += ["seed=0", f"cuda_graph={graph}", "channels_last=auto", "fuse=1"]
    pair += ["trainer.precision=32-true,bf16-mixed", *_common(plan, data, w)]
    pair += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={plan.pair_jobs}"]
    return [*pair, f"hydra.sweep.dir={sweep}"]


def _common(plan: QuickPlan, data: Path, w: Window) -> list[str]:
    common = [f"schedule.iterations={plan.iterations}"]
    common += [f"data.val_split={w.val_split}"] if w.val_split else []
    return [*common, *w.figure_overrides, f"data.root={data}", "data.download=false"]


def _plan(check: Check, rows: list[dict], allowed: list[str], w: Window):
    budget = check.left() - w.reserve_s
    if w.figure_budget_s is not None:
        budget = min(budget, w.figure_budget_s)
    check.say(f"planning the figure and the precision pair into {budget:.0f} s")
    options = dict(w.plan) | {"depth_sets": w.depth_sets}
    considered = figure_options(rows, budget, allowed, w.seeds, w.pair_depth, **options)
    if not considered:  # plan_from_bench says why nothing fits
        plan_from_bench(rows, budget, allowed, seeds=w.seeds, pair_depth=w.pair_depth, **options)
    variant, plan = choose_plan(considered, w.more_seeds_worth)
    return variant, plan, considered


def precision_report(pair_dir: Path, figure_dir: Path, depth: int) -> dict:
    """precision.json: the pair's final training and test errors (fp32, bf16), their difference
    with its SE (the runs' own window-to-window SEs), and beside them the figure's ResNet runs at
    that depth (seed 0 is the bf16 run again, trained in the figure's way: fused or not), whose
    spread over seeds says how far two runs differ without any change of precision."""

    def runs(sweep: Path) -> list[dict]:
        found = []
        for record in sorted(sweep.glob("*/run.json")):
            try:
                run = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if run.get("arch") != "resnet" or run.get("depth") != depth:
                continue
            errors = read_final_errors(record.parent)
            found.append(
                {
                    key: run.get(key)
                    for key in ("seed", "precision", "cuda_graph", "status", "fused_with")
                }
                | {"run_dir": record.parent.name, "iterations": errors["iterations"]}
                | {k: errors[k] for k in ("final_train_error", "final_train_error_se")}
                | {"final_test_error": errors["final_test_error"]}
            )
        return found

    pair, figure = runs(pair_dir), runs(figure_dir)
    by_precision = {r["precision"]: r for r in pair}
    report: dict = {"depth": depth, "pair": pair, "figure_runs": figure}
    fp32, bf16 = by_precision.get("32-true"), by_precision.get("bf16-mixed")
    if fp32 and bf16 and fp32["status"] == bf16["status"] == "done":
        diff = fp32["final_train_error"] - bf16["final_train_error"]
        se = (fp32["final_train_error_se"] ** 2 + bf16["final_train_error_se"] ** 2) ** 0.5
        report |= {"train_error_fp32_minus_bf16": diff, "train_error_difference_se": se}
        report |= {
            "test_error_fp32_minus_bf16": fp32["final_test_error"] - bf16["final_test_error"]
        }
        errors = [r["final_train_error"] for r in figure if r["status"] == "done"]
        spread = None
        if len(errors) > 1:
            mean = sum(errors) / len(errors)
            spread = (sum((e - mean) ** 2 for e in errors) / (len(errors) - 1)) ** 0.5
        report["figure_seed_sd"] = spread
        report["sentence"] = (
            f"resnet-{depth} final training error fp32 {fp32['final_train_error']:.2f}%, bf16 "
            f"{bf16['final_train_error']:.2f}%: fp32 - bf16 = {diff:+.2f} ± {se:.2f} (within-run"
            " SEs)"
            + (f"; the figure's seeds at this depth spread SD {spread:.2f}" if spread else "")
        )
    else:
        states = ", ".join(f"{r['precision']}: {r['status']}" for r in pair) or "no runs"
        report["sentence"] = f"the pair did not finish ({states})"
    return report


def _pack_call2(check: Check, out: Path, stash: Path, name: str) -> None:
    """figure6.tar.gz: results/gpu/NAME/ as the repository should hold it (every run's run.json,
    config.yaml and metrics.csv, no checkpoints; summaries, verdicts, figures; call 1's and call
    2's logs, CSVs and commands; a README of facts); beside it the files to read first."""
    check.say(f"archiving into {out}/figure6.tar.gz as results/gpu/{name}/")
    work = check.work
    (work / "README.md").write_text(facts_readme(stash, name))
    root = f"results/gpu/{name}"
    with tarfile.open(out / "figure6.tar.gz", "w:gz") as tar:
        for folder, arc in ((stash / "call1", "call1"), (work, "call2")):
            for path in sorted(folder.rglob("*")):
                rel = path.relative_to(folder)
                if rel.parts[0] in ("figure", "precision", "mps") or not path.is_file():
                    continue
                if rel.name == "README.md" and arc == "call2":
                    continue
                tar.add(path, f"{root}/{arc}/{rel}")
        tar.add(work / "README.md", f"{root}/README.md")
        for sweep in ("figure", "precision"):
            for path, rel in _sweep_files(work / sweep):
                tar.add(path, f"{root}/{sweep}/{rel}")
    shutil.copy(check.log, out / "call2.log")
    for rel in ("plan.json", "precision.json", "figure/summary.md", "figure/verdict.json"):
        if (work / rel).is_file():
            shutil.copy(work / rel, out)
    if (work / "figure" / "figure6.png").is_file():
        shutil.copy(work / "figure" / "figure6.png", out)
    check.say("done")
    verdict = work / "figure" / "verdict.json"
    if verdict.is_file():
        print(json.loads(verdict.read_text()).get("sentence", ""), flush=True)


RUN_FILES = ("run.json", "config.yaml", "metrics.csv")


def _sweep_files(sweep: Path) -> list[tuple[Path, Path]]:
    """A sweep's files as the repository keeps them: of each run directory (one holding run.json)
    only RUN_FILES; of the sweep itself everything but locks and checkpoints."""
    if not sweep.is_dir():
        return []
    kept = []
    for path in sorted(sweep.rglob("*")):
        rel = path.relative_to(sweep)
        if not path.is_file() or "checkpoints" in rel.parts or path.suffix in (".lock", ".ckpt"):
            continue
        in_run = (sweep / rel.parts[0] / "run.json").is_file()  # inside a run directory
        if in_run and (len(rel.parts) != 2 or rel.name not in RUN_FILES):
            continue
        kept.append((path, rel))
    return kept


def facts_readme(stash: Path, name: str) -> str:
    """results/gpu/NAME/README.md as the check writes it: what ran, from its own files (the next
    session adds the reading)."""
    call1, call2 = stash / "call1", stash / "call2"

    def text(path: Path) -> str:
        return path.read_text().strip() if path.is_file() else "(missing)"

    verify = text(call2 / "verify.log").splitlines()
    verdict = call2 / "figure" / "verdict.json"
    plan = json.loads(text(call2 / "plan.json")) if (call2 / "plan.json").is_file() else {}
    lines = [
        f"# {name}: Figure 6 on all 50,000 training images (issue #18), as the check wrote it",
        "",
        "Written by `experiments/gpu_check.sh call1` and `call2`"
        " (src/depthsweep/tools/gpu_check.py);",
        "results/gpu/README.md says how the calls were made. Facts only: the reading belongs in",
        "the project README.",
        "",
        "## Versions",
        "```",
        text(call2 / "versions.txt"),
        "```",
        "## Data (verify.py, call2/verify.log)",
        "```",
        *[line for line in verify if line.startswith(("PASS", "FAIL", "ALL", "SOME"))],
        "```",
        "## Plan (call2/plan.json)",
        "```",
        *[f"{k}: {v}" for k, v in plan.items() if k != "options"],
        "```",
        "## Verdict (figure/verdict.json)",
        json.loads(verdict.read_text()).get("sentence", "") if verdict.is_file() else "(none)",
        "",
        "## Precision pair (call2/precision.json)",
        json.loads(text(call2 / "precision.json")).get("sentence", "")
        if (call2 / "precision.json").is_file()
        else "(none)",
        "",
        "## Steps (call1/gpu_check.log, call2/gpu_check.log)",
        "```",
        text(call1 / "gpu_check.log"),
        text(call2 / "gpu_check.log"),
        "```",
        "Every command a step ran: call1/commands.txt, call2/commands.txt.",
        "",
    ]
    return "\n".join(lines)
