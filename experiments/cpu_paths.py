"""The fastest way to train these nets on this CPU, measured: `python -m experiments.cpu_paths`.

Times a training step (forward, backward, SGD) of the paper's plain net at the sizes of a CPU
Figure 6 on random images, for every combination of: fp32 or bf16 autocast, contiguous or
channels-last, eager or torch.compile, 1 or 2 torch threads; then 1 thread in each of 2
processes at once (joblib's way: one run per core), whose images/s count both. Writes
OUT/cpu_paths.csv (`--out FILE.csv`: that file) and prints it (default OUT: results/cpu_paths).

    python -m experiments.cpu_paths --depths 20,56 --width 4 --resolution 32 --batch 128

It times the net alone, not the harness around it (Lightning, data, metrics: the same for every
path), so that torch.compile, which the harness does not offer, is measured on equal terms.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from depthsweep.nets.models import PlainNet
from depthsweep.tools.concurrency import collect

COLUMNS = ["depth", "precision", "memory", "compile", "threads", "processes", "ms_per_step"]


def step_ms(
    depth: int,
    width: int,
    size: int,
    batch: int,
    bf16: bool,
    nhwc: bool,
    compiled: bool,
    threads: int,
    steps: int,
    barrier: Barrier | None = None,
    arch: Callable[..., nn.Module] = PlainNet,
    prepare: Callable[[nn.Module], object] | None = None,
) -> float:
    """The median ms of `steps` training steps after five untimed ones (compilation, oneDNN's
    kernel choice), all in this process with `threads` torch threads; `prepare` (hooks, say) is
    applied to the net once it is in its memory format."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if nhwc else torch.contiguous_format
    net = arch(depth, width=width).to(memory_format=fmt)
    if prepare is not None:
        prepare(net)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    # a fresh compile for each path: Dynamo's cache would otherwise count each new net as a
    # recompile of the last and, past its limit (8), silently run the rest eagerly
    torch.compiler.reset()
    forward = torch.compile(net) if compiled else net
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    times = []
    for i in range(5 + steps):
        if i == 5 and barrier is not None:
            barrier.wait()  # processes at once: timed over the same span
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[5:])


def _child(args: tuple, barrier, results) -> None:  # one of the processes at once
    try:
        results.put(step_ms(*args, barrier=barrier))
    except BaseException as e:  # the others wait at the barrier, the parent for a result
        barrier.abort()
        results.put(f"{type(e).__name__}: {e}")
        raise


def at_once(args: tuple, processes: int) -> list[float]:
    """`step_ms` in `processes` processes at once, their timed steps overlapping; a
    RuntimeError, with no process left behind, where one fails."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(args, barrier, results)) for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        got = collect(results, procs, timeout_s=1800)
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    for p in procs:
        p.join()
    errors = [g for g in got if isinstance(g, str)]
    if errors:
        raise RuntimeError(f"a process of {processes} at once failed: {errors[0]}")
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--depths", default="20,56", help="plain nets of these depths (20,56)")
    p.add_argument("--width", type=int, default=4, help="arch.width (4)")
    p.add_argument("--resolution", type=int, default=32, help="data.resolution (32)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="timed steps per path (20)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/cpu_paths"),
        help="a folder for cpu_paths.csv, or a file name ending in .csv (results/cpu_paths)",
    )
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    rows = []
    for depth in map(int, args.depths.split(",")):
        size = (depth, args.width, args.resolution, args.batch)
        for bf16, nhwc, compiled, threads in itertools.product(
            (False, True), (False, True), (False, True), sorted({1, min(2, cores)})
        ):
            ms = step_ms(*size, bf16, nhwc, compiled, threads, args.steps)
            memory = "channels_last" if nhwc else "contiguous"
            rows.append([depth, "bf16" if bf16 else "fp32", memory, compiled, threads, 1, ms])
            print(*rows[-1], flush=True)
        if cores >= 2:  # joblib's way: two runs at once, a thread each, on the fastest eager path
            eager = [r for r in rows if r[0] == depth and not r[3] and r[4] == 1]
            best = min(eager, key=lambda r: r[-1])
            path = (best[1] == "bf16", best[2] == "channels_last", False, 1, args.steps)
            ms = statistics.mean(at_once((*size, *path), 2))  # each process's step
            rows.append([depth, best[1], best[2], False, 1, 2, ms])
            print(*rows[-1], flush=True)
    table = pd.DataFrame(rows, columns=COLUMNS)
    # all processes' images: two at once each train a batch per step
    table["images_per_s"] = table["processes"] * args.batch * 1000 / table["ms_per_step"]
    out = args.out if args.out.suffix == ".csv" else args.out / "cpu_paths.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
