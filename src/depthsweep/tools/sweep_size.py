"""What a sweep is about to cost, said at its launch: its size (runs x iterations) and, where it
trains on a CPU, an estimate of its duration from a quick measurement on this machine, with what
to run instead when that is hours.

The estimate is rough by design, so that it costs about a second: a training step (forward,
backward, SGD) of the sweep's cheapest net on random images at its batch size, the median of
three timed after an untimed one (one step alone varies several-fold on a busy machine), then
scaled to every run by its net's multiply-adds and its batch size. Evaluations, checkpoints and
start-up come on top; a CPU busy with other work makes every step slower, the measured ones too.

On a GPU nothing is timed at launch (the fast path's first steps capture a CUDA graph and tune
cuDNN: seconds, not a quick measurement): where the GPU is one the README's bench measured, the
estimate comes from those steps; elsewhere the line says how to measure them.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from depthsweep.nets.models import PlainNet, ResNet, count_macs
from depthsweep.tools.budget import interpolate_ms
from depthsweep.training.build import build_net
from depthsweep.training.callbacks import duration
from depthsweep.training.config import resolve_cuda_graph, resolve_precision, trains_on_gpu

LONG_S = 3600.0  # a CPU sweep estimated beyond this gets the warning and what to run instead
# What the warning offers instead: the README's CPU check (conf/experiment/smoke.yaml).
SMOKE = "python -m experiments.run -m experiment=smoke"
SMOKE_RUNS = [("plain", 8), ("resnet", 8), ("plain", 20), ("resnet", 20)]
SMOKE_ITERATIONS, SMOKE_BATCH = 200, 128


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
        key = repr((cfg.arch, cfg.depth, cfg.data.get("classes")))
        if key not in macs:
            macs[key] = count_macs(build_net(cfg))
        label = f"{cfg.arch_name}-{cfg.depth}"
        jobs.append(Job(label, cfg.depth, cfg.schedule.iterations, cfg.data.batch_size, macs[key]))
    return jobs


# ms per training step at batch 128 on the GPUs the bench measured, for the path a run takes
# there by default (CUDA graph, bf16): README *Measured on a GPU*, results/gpu/check/.
MEASURED_GPU_MS = {"H200": {20: 2.3, 110: 11.5}}


def step_seconds(net: nn.Module, batch: int, classes: int = 10) -> float:
    """Seconds of a training step of `net` on `batch` random images on the CPU: the median of
    three, timed after an untimed one (first calls pay for allocations)."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, classes, (batch,))
    net.train()
    times = []
    for _ in range(4):
        start = time.perf_counter()
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


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


def describe(configs: Sequence[DictConfig]) -> list[str]:
    """The lines a sweep prints at its launch: its size; on a CPU, its estimated duration, and
    past LONG_S a warning with what to run instead. `configs`: every job's composed config."""
    jobs = jobs_of(configs)
    total = sum(j.iterations for j in jobs)
    sizes = sorted({j.iterations for j in jobs})
    each = f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,} to {sizes[-1]:,}"
    runs = f"{len(jobs)} run{'s' if len(jobs) != 1 else ''}"
    lines = [f"sweep: {runs} x {each} iterations ({total:,} training steps)"]
    if not configs:
        return lines
    if trains_on_gpu(configs[0].trainer):
        return [*lines, _gpu_line(jobs, configs)]
    cheapest = min(range(len(jobs)), key=lambda i: jobs[i].macs)
    batch = jobs[cheapest].batch
    seconds = step_seconds(build_net(configs[cheapest]), batch)
    per_mac_image = seconds / (jobs[cheapest].macs * batch)  # CPU seconds per multiply-add
    estimate = sum(j.iterations * j.batch * j.macs for j in jobs) * per_mac_image
    lines.append(
        f"sweep: about {duration(estimate)} of training steps on this CPU, one run after another "
        f"(a step of {jobs[cheapest].label} at batch {batch} took {1000 * seconds:.0f} ms here; "
        "scaled by each run's multiply-adds and batch; evaluations add to it)"
    )
    if estimate > LONG_S:
        smoke = sum(SMOKE_ITERATIONS * SMOKE_BATCH * _macs(*run) for run in SMOKE_RUNS)
        lines.append(
            f"warning: this sweep is sized for a GPU (about {duration(estimate)} here). To check "
            f"the pipeline on this CPU run `{SMOKE}` (plain and resnet at 8 and 20 layers, "
            f"{SMOKE_ITERATIONS} iterations: about {duration(smoke * per_mac_image)} of steps "
            "here); for Figure 6, a GPU (see the README's Speed section)."
        )
    return lines


def _macs(arch: str, depth: int) -> int:
    """Multiply-adds per image of a smoke run's net (conf/arch/plain.yaml, resnet.yaml)."""
    return count_macs((PlainNet if arch == "plain" else ResNet)(depth=depth, num_classes=10))
