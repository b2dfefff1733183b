"""Speed: the harness's training path against a plain PyTorch reference, on one device.

The reference is the textbook CIFAR-10 loop: fp32 eager, a DataLoader of PIL images augmented per
image by torchvision transforms in worker processes, a bare SGD step. The harness path is what
`experiments.run` trains: the config composed from conf/, `build_model`, `make_module` and
`make_trainer`, with its device-resident data module, in up to three variants: as configured
(`harness`), with each step's forward and backward replayed as one CUDA graph (`harness-graph`), and
with the model under torch.compile (`harness-compile`). All are timed over the same steps after a
warm-up, the first step (compilation, capture, autotuning) is reported apart, and the measured
ms/step are projected onto the paper's Figure 6 sweep.

The host's share is measured apart: each harness path and a bare PyTorch loop train a linear model
that costs the device nothing, so their ms/step is host time (Lightning, logging, augmentation
launches, the optimizer). A step cannot run faster than its host time.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import os
import pickle
import platform
import queue
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig
from PIL import Image
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from depthsweep.data import FOLDER, TEST_FILE, TRAIN_FILES, random_crop_flip, read_cifar10
from depthsweep.module import synchronize
from depthsweep.train import (
    build_model,
    compose_config,
    make_module,
    make_trainer,
    resolve_precision,
)

PAPER_DEPTHS = (20, 32, 44, 56, 110)
PAPER_ITERATIONS = 64_000
PAPER_BATCH = 128
COLUMNS = [
    *["device", "torch_version", "arch", "depth", "path", "batch", "ms_per_step"],
    *["images_per_s", "steps_timed", "precision", "compile", "jobs", "first_step_s"],
]
# The harness paths: extra overrides on top of the composed config (and the bench's own).
HARNESS_PATHS = {
    "harness": [],
    "harness-graph": ["cuda_graph=true"],
    "harness-compile": ["compile.enabled=true"],  # + compile.mode=--compile-mode, if given
}


@dataclass
class Settings:
    archs: list[str]
    depths: list[int]
    steps: int  # timed steps per measurement
    warmup: int  # untimed steps first: cudnn autotuning, compilation, worker start-up
    batch: int
    workers: int  # reference DataLoader workers
    threads: int | None  # torch intra-op threads; None: torch's default
    jobs: int  # measure k = 1, 2, 4, ... <= jobs concurrent harness processes
    paths: list[str]  # the harness paths to time (HARNESS_PATHS), each against the reference
    compile_mode: str | None  # torch.compile mode of harness-compile; None: inductor's default
    overrides: list[str]  # more Hydra overrides for every harness path, e.g. channels_last=false
    data_root: str | None  # None: the config's data.root, else random images
    out: Path


def default_settings(device: torch.device, **given) -> tuple[Settings, str | None]:
    """Settings for `device` where an option is None; on a CPU, tiny ones, and a note saying so."""
    cpu = device.type == "cpu"
    defaults = {
        "archs": ["plain", "resnet"],
        "depths": [8, 20] if cpu else [20, 56, 110],
        "steps": 10 if cpu else 100,
        "warmup": 3 if cpu else 20,
        "batch": 32 if cpu else PAPER_BATCH,
        "workers": min(8, os.cpu_count() or 1),
        # On a small shared CPU, 2 threads ran 20-30x slower than 1 once other processes were busy.
        "threads": 1 if cpu else None,
        "jobs": 1,
        "paths": ["harness"] if cpu else ["harness", "harness-graph"],
        "compile_mode": None,
        "overrides": [],
        "data_root": None,
        "out": Path("results/bench.csv"),
    }
    values = {k: v if given.get(k) is None else given[k] for k, v in defaults.items()}
    tiny = ["depths", "steps", "warmup", "batch", "threads"]
    tiny = [k for k in tiny if cpu and given.get(k) is None]
    note = None
    if cpu:
        picked = (
            f"tiny settings picked: {', '.join(f'{k}={values[k]}' for k in tiny)}; " if tiny else ""
        )
        note = f"CPU only ({picked}these numbers say nothing about GPU speed)."
    return Settings(**values), note


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:  # platform.processor() is just "x86_64" on Linux; cpuinfo has the model
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} cores)"


def write_random_cifar10(root: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random uint8 images in the official python-version layout under `root`, so the bench reads
    them with the project's own reader when no real CIFAR-10 is at hand."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    parts = np.array_split(np.arange(n_train), len(TRAIN_FILES))
    for name, n in [*zip(TRAIN_FILES, map(len, parts), strict=True), (TEST_FILE, n_test)]:
        entry = {
            "batch_label": name,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.integers(0, 10, n).tolist(),
            "filenames": [f"{name}_{i:05d}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=4)
    return Path(root)


def compose_run(
    arch: str, depth: int, data_root: str, batch: int, extra: Sequence[str] = ()
) -> DictConfig:
    overrides = [f"arch={arch}", f"depth={depth}", f"data.root={data_root}"]
    return compose_config([*overrides, f"data.batch_size={batch}", "data.download=false", *extra])


def path_overrides(path: str, compile_mode: str | None = None) -> list[str]:
    """The overrides that turn the composed config into harness path `path`."""
    if path not in HARNESS_PATHS:
        raise SystemExit(f"unknown path {path!r}: choose from {', '.join(HARNESS_PATHS)}")
    extra = HARNESS_PATHS[path]
    if path == "harness-compile" and compile_mode:
        extra = [*extra, f"compile.mode={compile_mode}"]
    return extra


def path_config(s: Settings, arch: str, depth: int, root: str, path: str) -> DictConfig:
    """The config harness path `path` trains, with the bench's own overrides."""
    return compose_run(
        arch, depth, root, s.batch, [*s.overrides, *path_overrides(path, s.compile_mode)]
    )


def compile_label(cfg: DictConfig) -> str:
    c = cfg.compile
    return f"{c.backend}/{c.mode or 'default'}" if c.enabled else "false"


@dataclass
class Timing:
    t0: float  # perf_counter at the end of the last warm-up step
    t1: float  # ... and of the last timed step
    steps: int
    first_step_s: float | None = None  # the first step alone: compilation, capture, autotuning

    @property
    def ms_per_step(self) -> float:
        return (self.t1 - self.t0) * 1000 / self.steps


class StepTimer(Callback):
    """Clock readings at the end of warm-up and of the last timed step. A barrier, if given, lines
    up concurrent processes so their timed windows overlap."""

    def __init__(self, warmup: int, steps: int, barrier: threading.Barrier | None = None) -> None:
        self.warmup, self.steps, self.barrier = warmup, steps, barrier
        self.done, self.t0, self.t1 = 0, 0.0, 0.0

    def on_train_batch_end(self, trainer: pl.Trainer, module, outputs, batch, batch_idx) -> None:
        self.done += 1
        if self.done == self.warmup:
            synchronize(module.device)
            if self.barrier is not None:
                self.barrier.wait(timeout=600)
            self.t0 = time.perf_counter()
        elif self.done == self.warmup + self.steps:
            synchronize(module.device)
            self.t1 = time.perf_counter()


def time_harness(
    cfg: DictConfig,
    warmup: int,
    steps: int,
    barrier: threading.Barrier | None = None,
    model: nn.Module | None = None,
) -> Timing:
    """`steps` steps of the real training path, after `warmup` ones; no evaluation, no files.
    `model` replaces the config's (the host-time measurement)."""
    pl.seed_everything(cfg.seed)
    module = make_module(cfg, model or build_model(cfg.arch, cfg.depth))
    timer = StepTimer(warmup, steps, barrier)
    with tempfile.TemporaryDirectory() as scratch:
        # max_steps, not schedule.iterations: the module keeps the real run's LR schedule and
        # metrics window (one host sync per window), so the timed steps are a real run's steps.
        trainer = make_trainer(
            cfg,
            [timer],
            max_steps=warmup + steps,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            default_root_dir=scratch,
        )
        trainer.fit(module, datamodule=instantiate(cfg.data, _convert_="all"))
    return Timing(timer.t0, timer.t1, steps, module.first_step_s)


class PILCifar(Dataset):
    """CIFAR-10 as torchvision's CIFAR10 serves it: an HWC uint8 array, a PIL image per item."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: transforms.Compose) -> None:
        self.x = x.permute(0, 2, 3, 1).numpy()
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def _forever(loader: DataLoader):
    while True:
        yield from loader


def time_reference(
    cfg: DictConfig, warmup: int, steps: int, workers: int, device: torch.device
) -> Timing:
    """The textbook loop on the same data, model and device: fp32 eager, per-image transforms."""
    torch.manual_seed(cfg.seed)
    d = cfg.data
    data = read_cifar10(d.root, download=False)
    mean, std = [m / 255 for m in d.mean], [s / 255 for s in d.std]
    augment = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=d.pad),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    loader = DataLoader(
        PILCifar(data.x_train, data.y_train, augment),
        batch_size=d.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,  # epochs do not restart the workers
    )
    # Same cudnn autotuning as the harness's trainer, which sets this flag process-wide.
    torch.backends.cudnn.benchmark = bool(cfg.trainer.benchmark)
    batches = _forever(loader)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = next(batches)
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    model = build_model(cfg.arch, cfg.depth).to(device)
    return time_sgd_loop(cfg, model, batch, warmup, steps, device)


def time_sgd_loop(
    cfg: DictConfig,
    model: nn.Module,
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    steps: int,
    device: torch.device,
) -> Timing:
    """A bare loop of SGD steps as `cfg.schedule` sets them, on one `batch()` each: the first step
    (worker start-up, first batch, autotuning) and the `steps` after `warmup` timed."""
    s = cfg.schedule
    opt = torch.optim.SGD(
        model.parameters(), lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay
    )
    t0 = first = 0.0
    start = time.perf_counter()
    for i in range(warmup + steps):
        if i == 1:
            synchronize(device)
            first = time.perf_counter() - start
        if i == warmup:
            synchronize(device)
            t0 = time.perf_counter()
        x, y = batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    synchronize(device)
    return Timing(t0, time.perf_counter(), steps, first)


def linear_model() -> nn.Module:
    """A model that costs the device next to nothing: what is left of a step is host time."""
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))


def time_bare_loop(cfg: DictConfig, warmup: int, steps: int, device: torch.device) -> Timing:
    """The harness's per-step work without Lightning, for `linear_model`: augmentation and
    normalisation on the device, forward, backward, SGD."""
    d = cfg.data
    data = read_cifar10(d.root, download=False)
    x, y = data.x_train[: d.batch_size].to(device), data.y_train[: d.batch_size].to(device)
    mean = torch.tensor(d.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(d.std, device=device).view(1, 3, 1, 1)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        return (random_crop_flip(x, d.pad).float() - mean) / std, y

    return time_sgd_loop(cfg, linear_model().to(device), batch, warmup, steps, device)


def quiet_lightning() -> None:
    """Lightning's start-up banners (GPU available, seed set, ...) would bury the table."""
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's use of a torch API deprecated in this torch: nothing the reader can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module="pytorch_lightning")


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


def _collect(results: mp.Queue, procs: list, timeout_s: float = 900) -> list:
    """One result per process; fails fast if one dies without a word (killed, out of memory)."""
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
    """Run `k` harness processes at once on `device`. Returns total images/s (all images over
    the span from the first timed step's start to the last one's end) and the mean ms/step."""
    # Children fork from a server that imported this module once and never started CUDA or
    # OpenMP: safe, unlike forking this process, and no per-child imports, unlike spawn.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    barrier, results = ctx.Barrier(k), ctx.Queue()
    # On a CPU, k processes with this one's threads each would fight over the cores: give each
    # its share.
    threads = max(1, torch.get_num_threads() // k) if device.type == "cpu" else 0
    procs = [
        ctx.Process(target=_job, args=(cfg, warmup, steps, threads, barrier, results))
        for _ in range(k)
    ]
    for p in procs:
        p.start()
    try:
        got = _collect(results, procs)
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


def interpolate_ms(ms_by_depth: Mapping[int, float], depth: int) -> float:
    """ms/step at `depth`, linear in depth between measured depths and beyond them along the
    nearest segment; from one measured depth, proportional to depth."""
    points = sorted(ms_by_depth.items())
    if len(points) == 1:
        ((d0, m0),) = points
        return m0 * depth / d0
    i = 1
    while i < len(points) - 1 and depth > points[i][0]:
        i += 1
    (d0, m0), (d1, m1) = points[i - 1], points[i]
    return m0 + (m1 - m0) * (depth - d0) / (d1 - d0)


def project_sweep_s(
    ms_by_depth: Mapping[int, float],
    depths: Sequence[int] = PAPER_DEPTHS,
    iterations: int = PAPER_ITERATIONS,
    speedup: float = 1.0,
) -> float:
    """Seconds of training steps for one arch at `depths`, `iterations` each, with `speedup`
    the measured gain in total throughput from running several jobs at once."""
    return sum(interpolate_ms(ms_by_depth, d) for d in depths) * iterations / 1000 / speedup


def say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)  # flushed: the bench's output is read from a log


def job_counts(jobs: int) -> list[int]:
    """The concurrency levels to measure: 1, 2, 4, ... below `jobs`, then `jobs`; none for 1."""
    return [*(k for k in (2**i for i in range(10)) if k < jobs), jobs] if jobs > 1 else []


def find_data(data_root: str | None, tmp: Path, n_train: int) -> tuple[str, str]:
    """The data root to bench on and a line saying what it holds; `n_train` random images in `tmp`
    if there is no CIFAR-10 at `data_root` or, when that is None, at the config's data.root."""
    if data_root is not None:
        if not (Path(data_root) / FOLDER).is_dir():
            raise SystemExit(f"--data-root {data_root}: no {FOLDER}/ in it")
        return data_root, f"data: CIFAR-10 from {data_root}"
    default = compose_config().data.root
    if (Path(default) / FOLDER).is_dir():
        return default, f"data: CIFAR-10 from {default} (the config's data.root)"
    n_train = min(50_000, n_train)
    write_random_cifar10(tmp, n_train, n_test=100)
    return str(tmp), (
        f"data: {n_train} random images in the official CIFAR-10 format in {tmp} (no --data-root "
        f"given, no {Path(default) / FOLDER}); speed does not depend on the pixels"
    )


def _row(
    device: str,
    cfg: DictConfig,
    path: str,
    ms: float,
    steps: int,
    first_step_s: float | None = None,
    jobs: int = 1,
    total: float | None = None,
) -> dict:
    """A CSV row; `total` is the images/s of `jobs` concurrent processes, measured as a whole."""
    harness = path.startswith("harness")
    return {
        "device": device,
        "torch_version": torch.__version__,
        "arch": cfg.arch.name,
        "depth": cfg.depth,
        "path": path,
        "batch": cfg.data.batch_size,
        "ms_per_step": round(ms, 3),
        "images_per_s": round(total or cfg.data.batch_size * 1000 / ms, 1),
        "steps_timed": steps,
        "precision": resolve_precision(cfg.trainer) if harness else "32-true",
        "compile": compile_label(cfg) if harness else "false",
        "jobs": jobs,
        "first_step_s": None if first_step_s is None else round(first_step_s, 6),
    }


def _paths(rows: list[dict]) -> list[str]:
    """The harness paths in `rows`, in the order measured."""
    return list(dict.fromkeys(r["path"] for r in rows if r["path"] != "reference"))


def format_table(rows: list[dict]) -> str:
    """One line per arch and depth: the reference's ms/step, then each harness path's ms/step and
    its speed-up over the reference."""
    by_key = {(r["arch"], r["depth"], r["path"]): r for r in rows if r["jobs"] == 1}
    paths = _paths(rows)
    lines = [f"{'arch':<8}{'depth':>6}{'reference':>12}" + "".join(f"{p:>22}" for p in paths)]
    lines.append(f"{'':<14}{'ms/step':>12}" + f"{'ms/step (speed-up)':>22}" * len(paths))
    for arch, depth, _ in [k for k in by_key if k[2] == "reference"]:
        ref = by_key[arch, depth, "reference"]["ms_per_step"]
        cells = []
        for p in paths:
            ms = by_key[arch, depth, p]["ms_per_step"]
            cells.append(f"{f'{ms:.1f} ({ref / ms:.2f}x)':>22}")
        lines.append(f"{arch:<8}{depth:>6}{ref:>12.1f}" + "".join(cells))
    return "\n".join(lines)


def projection(rows: list[dict], speedups: Mapping[int, float], concurrent: str = "") -> list[str]:
    """The Figure 6 sweep's training time per path, and for path `concurrent` with k jobs at once
    (`speedups`: k -> measured gain in total throughput)."""
    measured = sorted({r["depth"] for r in rows})
    batch = rows[0]["batch"]
    lines = [
        f"Figure 6 sweep projection: plain+resnet at {'/'.join(map(str, PAPER_DEPTHS))}, "
        f"{PAPER_ITERATIONS} iterations each, at batch {batch}"
        + ("" if batch == PAPER_BATCH else f" (the paper's is {PAPER_BATCH})")
        + f"; ms/step linear in depth from depths {','.join(map(str, measured))}; "
        "training steps only (no evaluation, start-up or checkpoints)."
    ]
    archs = {r["arch"] for r in rows}
    sweep_archs = [a for a in ("plain", "resnet") if a in archs] or sorted(archs)
    if len(sweep_archs) == 1:
        lines.append(f"  only {sweep_archs[0]} measured: its times stand in for both archs")
    width = max(len(p) for p in ["reference", *_paths(rows)])
    for path in ["reference", *_paths(rows)]:
        total = 0.0
        for arch in ("plain", "resnet"):
            src = arch if arch in sweep_archs else sweep_archs[0]
            ms = {
                r["depth"]: r["ms_per_step"]
                for r in rows
                if r["arch"] == src and r["path"] == path and r["jobs"] == 1
            }
            total += project_sweep_s(ms)
        lines.append(f"  {path:<{width}} 1 job at a time: {total / 3600:8.2f} h")
        if path == concurrent:
            for k, gain in speedups.items():
                lines.append(
                    f"  {path:<{width}} {k} jobs at once:  {total / gain / 3600:8.2f} h "
                    f"(measured total throughput x{gain:.2f})"
                )
    return lines


def measure_paths(s: Settings, root: str, name: str, device: torch.device) -> list[dict]:
    """Reference and harness rows for every arch and depth."""
    rows = []
    for arch in s.archs:
        for depth in s.depths:
            cfg = compose_run(arch, depth, root, s.batch, s.overrides)
            ref = time_reference(cfg, s.warmup, s.steps, s.workers, device)
            rows.append(_row(name, cfg, "reference", ref.ms_per_step, s.steps, ref.first_step_s))
            timings = [f"reference {ref.ms_per_step:.1f}"]
            for path in s.paths:
                cfg = path_config(s, arch, depth, root, path)
                t = time_harness(cfg, s.warmup, s.steps)
                rows.append(_row(name, cfg, path, t.ms_per_step, s.steps, t.first_step_s))
                timings.append(f"{path} {t.ms_per_step:.1f} (first step {t.first_step_s:.2f}s)")
            say(f"  {arch}-{depth}: ms/step {', '.join(timings)}")
    return rows


def measure_host(s: Settings, root: str, name: str, device: torch.device) -> list[dict]:
    """Host time per step: a bare loop and each harness path, all training `linear_model`
    (rows with arch 'linear', depth 0)."""
    arch, depth, linear = s.archs[0], s.depths[0], {"arch": "linear", "depth": 0}
    cfg = compose_run(arch, depth, root, s.batch, s.overrides)
    bare = time_bare_loop(cfg, s.warmup, s.steps, device)
    rows = [_row(name, cfg, "bare-loop", bare.ms_per_step, s.steps) | linear]
    for path in s.paths:
        if path == "harness-compile":  # compiling a linear layer says nothing about the host
            continue
        cfg = path_config(s, arch, depth, root, path)
        t = time_harness(cfg, s.warmup, s.steps, model=linear_model())
        rows.append(_row(name, cfg, path, t.ms_per_step, s.steps, t.first_step_s) | linear)
    cells = [f"{r['path']} {r['ms_per_step']:.2f}" for r in rows]
    say(f"host time per step (a linear model; the device waits on the host): {', '.join(cells)}")
    return rows


def fastest_path(rows: list[dict]) -> str:
    """The harness path with the lowest ms/step at the deepest depth measured."""
    deepest = max(r["depth"] for r in rows)
    harness = [r for r in rows if r["path"] != "reference" and r["depth"] == deepest]
    return min(harness, key=lambda r: r["ms_per_step"])["path"]


def measure_jobs(
    s: Settings, root: str, name: str, device: torch.device, path: str
) -> tuple[list[dict], dict[int, float]]:
    """Rows for 1, 2, 4, ... concurrent processes of harness `path`, first arch, deepest depth
    (the runs that dominate the sweep), and each k's total throughput relative to one process."""
    arch, depth = s.archs[0], max(s.depths)
    cfg = path_config(s, arch, depth, root, path)
    say(f"concurrency: k {path} processes of {arch}-{depth} at once on one {device.type}")
    rows, totals = [], {}
    for k in job_counts(s.jobs):
        totals[k], ms = time_concurrent(cfg, k, s.warmup, s.steps, device)
        rows.append(_row(name, cfg, path, ms, s.steps, jobs=k, total=totals[k]))
        say(f"  k={k}: {totals[k]:.0f} images/s in total, {ms:.1f} ms/step per process")
    return rows, {k: totals[k] / totals[1] for k in totals if k > 1}


def run(settings: Settings, note: str | None = None) -> list[dict]:
    """Measure, print the table and projection, write the CSV; returns the CSV's rows."""
    quiet_lightning()
    s = settings
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = device_name(device)
    say(f"depthsweep bench on {name}, torch {torch.__version__}", *([note] if note else []))
    if s.warmup < 1 or s.steps < 1:
        raise SystemExit("--warmup and --steps must be at least 1")
    for path in s.paths:
        path_overrides(path)  # an unknown path fails now, not after minutes of timing
    if s.threads:
        torch.set_num_threads(s.threads)
    with tempfile.TemporaryDirectory(prefix="depthsweep-bench-") as tmp:
        root, data_note = find_data(s.data_root, Path(tmp), s.batch * (s.warmup + s.steps))
        say(data_note, f"{s.steps} timed steps after {s.warmup} warm-up steps, per measurement")
        cfg = compose_run(s.archs[0], s.depths[0], root, s.batch, s.overrides)
        say(
            f"reference: fp32 eager, DataLoader of PIL images, {s.workers} workers; harness: "
            f"precision {resolve_precision(cfg.trainer)}, channels_last {cfg.channels_last}, "
            f"data and augmentation on the {device.type}; paths {', '.join(s.paths)}; "
            f"torch threads: {torch.get_num_threads()}"
        )
        rows = measure_paths(s, root, name, device)
        host_rows = measure_host(s, root, name, device)
        concurrent = fastest_path(rows)
        job_rows, speedups = ([], {})
        if s.jobs > 1:
            job_rows, speedups = measure_jobs(s, root, name, device, concurrent)
    say("", format_table(rows), "", *projection(rows, speedups, concurrent))
    s.out.parent.mkdir(parents=True, exist_ok=True)
    with open(s.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows + host_rows + job_rows)
    say(f"wrote {s.out} ({len(rows + host_rows + job_rows)} rows); device: {name}")
    return rows + host_rows + job_rows
