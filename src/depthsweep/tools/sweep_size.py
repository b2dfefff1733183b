"""What a sweep is about to cost, said at its launch: its size (runs x iterations) and, where it
trains on a CPU, an estimate of its duration from a quick measurement on this machine, with what
to run instead when that is hours.

The estimate costs a few seconds: a training step as the runs take it (their net, batch, image
size, precision, memory format and torch threads) on random images, the median of five timed
after two untimed ones, for the cheapest and the dearest net of the runs still to train; the
others' steps in between, by multiply-adds x batch (a straight line through the two: small nets
cost more per multiply-add). A fused group (fuse=K) is one job: a step of its K nets as one
FusedNet is timed and counted, not K steps alone (at a quarter width, three fused cost 1.5-1.8x
less per run). Runs already finished are not timed or counted; with jobs at once
(hydra/launcher=joblib) the steps are shared out over them. Evaluations, checkpoints and
start-up come on top; a CPU busy with other work makes every step slower, the measured ones too,
and the line says so when the load was high (over half a core's worth per core besides this
process).

On a GPU nothing is timed at launch (the fast path's first steps capture a CUDA graph and tune
cuDNN: seconds, not a quick measurement): where the GPU is one the README's bench measured, the
estimate comes from those steps; elsewhere the line says how to measure them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from depthsweep.nets.models import count_macs
from depthsweep.tools.budget import interpolate_ms
from depthsweep.training.build import build_net, input_shape
from depthsweep.training.callbacks import duration
from depthsweep.training.config import (
    resolve_channels_last,
    resolve_cuda_graph,
    resolve_precision,
    trains_on_gpu,
)
from depthsweep.training.data import class_indices
from depthsweep.training.fused import FusedNet

LONG_S = 3600.0  # a CPU sweep estimated beyond this gets the warning and what to run instead
# What the warning offers instead: the README's CPU sweeps (conf/experiment/), which are sized
# for a CPU and so never get it themselves, however long a slow CPU takes.
SMOKE = "python -m experiments.run -m experiment=smoke"
FIGURE6_CPU = "python -m experiments.run -m experiment=figure6_cpu"
CPU_SIZED = ("smoke", "figure6_cpu")  # their `name`s
# Load average per core, besides the launching process's own, above which the timed steps are
# said to be slowed by other work.
BUSY_LOAD = 0.5


@dataclass
class Job:
    label: str  # arch-depth
    depth: int
    iterations: int
    batch: int
    macs: int  # multiply-adds per image, forward


def jobs_of(configs: Sequence[DictConfig]) -> list[Job]:
    """Each composed job config as what it costs; nets built once per (arch, depth, classes)."""
    macs: dict[str, int] = {}
    jobs = []
    for cfg in configs:
        key = repr((cfg.arch, cfg.depth, cfg.data.get("classes"), input_shape(cfg)))
        if key not in macs:
            macs[key] = count_macs(build_net(cfg), input_shape(cfg))
        label = f"{cfg.arch_name}-{cfg.depth}"
        jobs.append(Job(label, cfg.depth, cfg.schedule.iterations, cfg.data.batch_size, macs[key]))
    return jobs


# ms per training step at batch 128 on the GPUs the bench measured, for the path a run takes
# there by default (CUDA graph, bf16): README *Measured on a GPU*, results/gpu/check/.
MEASURED_GPU_MS = {"H200": {20: 2.3, 110: 11.5}}


def step_seconds(cfg: DictConfig, members: int = 1) -> float:
    """Seconds of a training step of `cfg`'s run on this CPU as the run takes it: its net on
    random images of its batch and size, in its precision (bf16 autocast) and memory format,
    with its torch threads; with `members` > 1, that many of its nets as one FusedNet, each on
    its own batch (a group's plain and resnet members cost alike: the shortcut is an add). The
    median of five, timed after two untimed ones (first calls pay for allocations and oneDNN's
    kernel choice)."""
    bf16 = resolve_precision(cfg.trainer).startswith("bf16")
    fmt = torch.channels_last if resolve_channels_last(cfg) else torch.contiguous_format
    shape = (cfg.data.batch_size, *input_shape(cfg))
    if members > 1:
        net = FusedNet([build_net(cfg) for _ in range(members)]).train()
        net.memory_format = fmt
        x = torch.randn(members, *shape)
    else:
        net = build_net(cfg).train().to(memory_format=fmt)
        x = torch.randn(shape).contiguous(memory_format=fmt)
    y = torch.randint(0, len(class_indices(cfg.data.get("classes"))), x.shape[:-3])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.get("threads") or threads)
    times = []
    try:
        for _ in range(7):
            start = time.perf_counter()
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(net(x).flatten(0, -2), y.flatten())
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times[2:])


def gpu_name() -> str:
    """The first GPU's name, from nvidia-smi: torch.cuda.get_device_name would create a CUDA
    context in the process that launches the jobs, held for the whole sweep."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", "0"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "this GPU"
    return out.stdout.strip() or "this GPU"


def _gpu_line(jobs: list[Job], configs: Sequence[DictConfig]) -> str:
    """The launch line of a sweep that trains on a GPU: an estimate from MEASURED_GPU_MS
    (linear in depth between the measured depths, scaled by batch) where this GPU was measured
    and the runs take the measured path, else how to measure it."""
    name = gpu_name()
    measured = next((ms for gpu, ms in MEASURED_GPU_MS.items() if gpu in name), None)
    default_path = all(
        resolve_cuda_graph(c) and resolve_precision(c.trainer) == "bf16-mixed" for c in configs
    )
    if measured is None or not default_path:
        return (
            f"sweep: no duration estimate for {name} on this path at launch: `python -m "
            "experiments.bench` measures its steps and projects Figure 6"
        )
    (d0, ms0), (d1, ms1) = sorted(measured.items())
    seconds = sum(
        j.iterations * interpolate_ms(measured, j.depth) / 1000 * j.batch / 128 for j in jobs
    )
    return (
        f"sweep: about {duration(seconds)} of training steps on this {name}, one run after "
        f"another (from the steps measured on one: {ms0} / {ms1} ms at depth {d0} / {d1}, batch "
        "128, CUDA graph and bf16; evaluations and start-up add to it)"
    )


def describe(
    configs: Sequence[DictConfig],
    at_once: int = 1,
    finished: Sequence[bool] | None = None,
    groups: Sequence[Sequence[int]] | None = None,
) -> Iterator[str]:
    """The lines a sweep prints at its launch, each as it is known (its size first: the estimate
    then times steps for a few seconds): its size; on a CPU, its estimated duration, and
    past LONG_S, unless it is one of the CPU_SIZED sweeps, a warning with what to run instead.
    `configs`: every run's composed config; `at_once`: how many jobs the launcher trains at a
    time; `finished`: which runs finished before (neither timed nor counted); `groups`: the
    jobs, as lists of run indices (a fused group's runs train as one job; default: one each)."""
    jobs = jobs_of(configs)
    total = sum(j.iterations for j in jobs)
    sizes = sorted({j.iterations for j in jobs})
    each = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,} to {sizes[-1]:,}"
    runs = f"{len(jobs)} run{'s' if len(jobs) != 1 else ''}"
    yield f"sweep: {runs} x {each} iterations ({total:,} training steps)"
    todo = [i for i in range(len(jobs)) if not (finished and finished[i])]
    if not todo:
        yield "sweep: every run finished before: nothing to train, only the analysis"
        return
    if trains_on_gpu(configs[0].trainer):
        yield _gpu_line([jobs[i] for i in todo], [configs[i] for i in todo])
        return
    # the jobs still to train, each a run or the unfinished members of a fused group
    units = [tuple(i for i in g if i in todo) for g in groups or [[i] for i in range(len(jobs))]]
    units = [u for u in units if u]
    cost = {u: sum(jobs[i].macs * jobs[i].batch for i in u) for u in units}
    ends = sorted({min(cost, key=cost.get), max(cost, key=cost.get)}, key=cost.get)
    timed = {u: step_seconds(configs[u[0]], len(u)) for u in ends}
    if len(ends) == 1:  # one size of job: in proportion to multiply-adds x batch
        per = timed[ends[0]] / cost[ends[0]]
        step = {u: per * cost[u] for u in units}
    else:  # a straight line through the cheapest and the dearest
        (a, b) = ends
        slope = (timed[b] - timed[a]) / (cost[b] - cost[a])
        step = {u: max(0.0, timed[a] + slope * (cost[u] - cost[a])) for u in units}
    steps = sum(jobs[u[0]].iterations * step[u] for u in units)
    parallel = min(at_once, len(units))
    estimate = steps / parallel
    fused = len(units) < len(todo)
    kind = "job" if fused else "run"
    how = f"one {kind} after another" if parallel == 1 else f"{parallel} {kind}s at once"
    if fused:
        how = f"{len(todo)} runs as {len(units)} jobs (fused groups), {how}"
    measured = " and ".join(
        f"{f'{len(u)} fused ' if len(u) > 1 else ''}{jobs[u[0]].label} {1000 * timed[u]:.0f} ms"
        for u in ends
    )
    path = _path(configs[ends[0][0]])
    left = (
        f"{len(todo)} run{'s' if len(todo) != 1 else ''} to train, "
        if len(todo) < len(jobs) and not fused
        else ""
    )
    yield (
        f"sweep: about {duration(estimate)} of training steps on this CPU, {left}{how} (a step "
        f"of {measured} here, {path}; the others' by multiply-adds x batch; evaluations add "
        "to it)"
    )
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > BUSY_LOAD * cores + 1:  # + 1: this process, timing the steps
        yield (
            f"note: the CPU was busy while the steps were timed (load {load:.1f} on {cores} "
            "cores): on an idle one the sweep takes less"
        )
    if estimate > LONG_S and configs[0].get("name") not in CPU_SIZED:
        yield (
            f"warning: this sweep is sized for a GPU (about {duration(estimate)} here). On this "
            f"CPU, `{FIGURE6_CPU}` shows Figure 6's claim at a CPU's scale (about an hour on 2 "
            f"cores), `{SMOKE}` checks the pipeline in minutes; for the paper's scale, a GPU "
            "(see the README's Speed section)."
        )


def runs_at_once(launcher: DictConfig) -> int:
    """How many runs the sweep's launcher trains at a time: joblib's n_jobs (negative: counted
    back from the cores, as joblib does), one for the others (the basic launcher, and clusters,
    whose jobs run elsewhere)."""
    if "joblib" not in str(launcher.get("_target_", "")).lower():
        return 1
    jobs = int(launcher.get("n_jobs") or 1)
    return max(1, jobs if jobs > 0 else (os.cpu_count() or 1) + 1 + jobs)


def _path(cfg: DictConfig) -> str:
    """How the runs take a step, as timed: batch, image size, precision, torch threads."""
    _, h, w = input_shape(cfg)
    threads = cfg.get("threads") or torch.get_num_threads()
    return (
        f"batch {cfg.data.batch_size}, {h}x{w} images, {resolve_precision(cfg.trainer)}, "
        f"{threads} thread{'s' if threads != 1 else ''}"
    )
