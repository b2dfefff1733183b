"""Several training processes at once on one device: their total throughput in a steady state,
as in the long middle of a sweep of k jobs (`hydra/launcher=joblib hydra.launcher.n_jobs=k`).
Whole sweeps would add each job's start-up to the measurement and cost minutes of a short GPU
window; here the k processes line up at a barrier after their warm-up and are timed together."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time

import torch
from omegaconf import DictConfig

from depthsweep.tools.timing import quiet_lightning, time_harness


def _job(cfg, warmup, steps, threads, barrier, results) -> None:  # runs in a child process
    quiet_lightning()
    if threads:
        torch.set_num_threads(threads)
    try:
        t = time_harness(cfg, warmup, steps, barrier)
        results.put((t.t0, t.t1))
    except BaseException as e:  # the parent must hear of it instead of waiting for nothing
        barrier.abort()
        results.put(f"{type(e).__name__}: {e}")
        raise


def collect(results: mp.Queue, procs: list, timeout_s: float = 900) -> list:
    """One result per process; fails fast if one dies without a word (killed, out of memory).
    A failing child should abort its barrier and put a string saying why (as `_job` does)."""
    got, deadline = [], time.monotonic() + timeout_s
    while len(got) < len(procs):
        try:
            got.append(results.get(timeout=5))
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"concurrent harness processes: exit codes {dead}") from None
    return got


def time_concurrent(
    cfg: DictConfig, k: int, warmup: int, steps: int, device: torch.device
) -> tuple[float, float]:
    """Run `k` harness processes at once on `device`, their timed steps overlapping (a steady
    state, as in the long middle of a sweep of k jobs). Returns total images/s (all images over
    the span from the first timed step's start to the last one's end) and the mean ms/step."""
    # Children fork from a server that imported this module once and never started CUDA or
    # OpenMP: safe, unlike forking this process, and no per-child imports, unlike spawn.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # this module, and through it the training code
    barrier, results = ctx.Barrier(k), ctx.Queue()
    # On a CPU, k processes with this one's threads each would fight over the cores.
    threads = max(1, torch.get_num_threads() // k) if device.type == "cpu" else 0
    procs = [
        ctx.Process(target=_job, args=(cfg, warmup, steps, threads, barrier, results))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    try:
        got = collect(results, procs)
    except BaseException:
        for p in procs:  # the others may be waiting at the barrier for the one that died
            p.terminate()
        raise
    for p in procs:
        p.join()
    errors = [g for g in got if isinstance(g, str)]
    if errors:
        raise RuntimeError(f"a concurrent harness process failed: {errors[0]}")
    # perf_counter is CLOCK_MONOTONIC on Linux: one clock for all processes.
    span = max(t1 for _, t1 in got) - min(t0 for t0, _ in got)
    mean_ms = sum(t1 - t0 for t0, t1 in got) * 1000 / (k * steps)
    return k * steps * cfg.data.batch_size / span, mean_ms
