"""Speed: the harness's training variants against a plain PyTorch reference, on one device.

The reference is the textbook CIFAR-10 loop: fp32 eager, a DataLoader of PIL images augmented per
image by torchvision transforms in worker processes, a bare SGD step. A harness variant is what
`experiments.run` trains (the config composed from conf/, `build_net`, `make_module`,
`make_trainer`, the device-resident data module) under a few overrides: eager or with each step's
forward and backward replayed as one CUDA graph, in fp32 or bf16. All are timed over the same
steps after a warm-up; the first step (graph capture, autotuning) is reported apart, and the
measured ms/step are projected onto the paper's Figure 6 sweep.
"""

from __future__ import annotations

import csv
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.errors import HydraException
from omegaconf import DictConfig
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from depthsweep.errors import OptionError, check_count
from depthsweep.nets.models import InvalidDepthError
from depthsweep.paper import PAPER_BATCH, PAPER_DEPTHS, PAPER_ITERATIONS
from depthsweep.tools.budget import fastest_variant, ms_by_depth, project_sweep_s
from depthsweep.tools.concurrency import time_concurrent
from depthsweep.tools.timing import Timing, quiet_lightning, time_harness
from depthsweep.training.build import build_net, make_datamodule, make_schedule
from depthsweep.training.clocks import StepClock
from depthsweep.training.config import (
    compose_config,
    device_for,
    resolve_cuda_graph,
    resolve_precision,
)
from depthsweep.training.data import ensure_cifar10, read_cifar10
from depthsweep.training.overrides import check_added_keys, command_line_error

COLUMNS = [
    *["device", "torch_version", "arch", "depth", "variant", "batch", "ms_per_step"],
    *["images_per_s", "steps_timed", "precision", "cuda_graph", "jobs", "first_step_s"],
    "members",  # runs a step trains: K for fused-K (ms_per_step is the group's, images_per_s all)
]
# Harness variants: overrides on top of the composed config (and the bench's own). Each names all
# it depends on, so that its meaning does not change with the config's defaults.
VARIANTS = {
    "default": [],  # the config as composed: what a run gets without options
    "eager-fp32": ["cuda_graph=false", "trainer.precision=32-true", "channels_last=false"],
    "eager-bf16": ["cuda_graph=false", "trainer.precision=bf16-mixed", "channels_last=true"],
    "graph-fp32": ["cuda_graph=true", "trainer.precision=32-true", "channels_last=false"],
    "graph-bf16": ["cuda_graph=true", "trainer.precision=bf16-mixed", "channels_last=true"],
    # K runs (seeds) of the config as composed, trained as one fused network (fuse=K); 4 and 6
    # are a Figure 6 depth's plain and resnet runs of 2 and 3 seeds (the GPU check's figure)
    **{f"fused-{k}": [] for k in (2, 4, 6, 8, 10)},
}
GPU_VARIANTS = ["eager-fp32", "eager-bf16", "graph-fp32", "graph-bf16"]


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
    variants: list[str]  # the harness variants to time (VARIANTS), each against the reference
    reference: bool  # time the reference loop too
    overrides: list[str]  # more Hydra overrides for every variant, e.g. data.eval_batch_size=500
    data_root: str | None  # None: the config's data.root
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
        "variants": ["default"] if cpu else GPU_VARIANTS,
        "reference": True,
        "overrides": [],
        "data_root": None,
        "out": Path("bench.csv"),
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
    return f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def members_of(variant: str) -> int:
    """The runs one step of `variant` trains: K for fused-K, else 1."""
    return int(variant.removeprefix("fused-")) if variant.startswith("fused-") else 1


class NothingMeasured(RuntimeError):
    """Every harness variant failed: there is nothing to compare."""


def variant_overrides(variant: str) -> list[str]:
    """The overrides that turn the composed config into harness variant `variant`."""
    if variant not in VARIANTS:
        raise OptionError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def compose_run(s: Settings, arch: str, depth: int, root: str, variant: str = "") -> DictConfig:
    """The config harness variant `variant` trains (none: as composed), with the bench's sizes."""
    extra = variant_overrides(variant) if variant else []
    overrides = [f"arch={arch}", f"depth={depth}", f"data.root={root}", "data.download=false"]
    return compose_config([*overrides, f"data.batch_size={s.batch}", *s.overrides, *extra])


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

    model = build_net(cfg).to(device)
    return time_sgd_loop(cfg, model, batch, warmup, steps, device)


def time_sgd_loop(
    cfg: DictConfig,
    model: nn.Module,
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    warmup: int,
    steps: int,
    device: torch.device,
) -> Timing:
    """A bare loop of SGD steps with `cfg.schedule`'s optimizer, on one `batch()` each: the first
    step (worker start-up, first batch, autotuning) and the `steps` after `warmup` timed."""
    optimizer, _ = make_schedule(cfg.schedule)
    opt = optimizer(model.parameters())
    clock = StepClock(at=(1, warmup, warmup + steps))
    clock.start(device)
    for _ in range(warmup + steps):
        x, y = batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clock.tick(device)
    return Timing.of(clock, warmup, steps)


def say(*lines: str) -> None:
    print(*lines, sep="\n", flush=True)  # flushed: the bench's output is read from a log


def job_counts(jobs: int) -> list[int]:
    """The concurrency levels to measure: 1, 2, 4, ... below `jobs`, then `jobs`; none for 1."""
    return [*(k for k in (2**i for i in range(10)) if k < jobs), jobs] if jobs > 1 else []


def _row(
    device: str,
    cfg: DictConfig,
    variant: str,
    ms: float,
    steps: int,
    first_step_s: float | None = None,
    jobs: int = 1,
    total: float | None = None,
) -> dict:
    """A CSV row; `total` is the images/s of `jobs` concurrent processes, measured as a whole; a
    fused variant's images/s counts every member's images."""
    harness = variant != "reference"
    members = members_of(variant)
    return {
        "device": device,
        "torch_version": torch.__version__,
        "arch": cfg.arch_name,
        "depth": cfg.depth,
        "variant": variant,
        "batch": cfg.data.batch_size,
        "ms_per_step": round(ms, 3),
        "images_per_s": round(total or members * cfg.data.batch_size * 1000 / ms, 1),
        "steps_timed": steps,
        "precision": resolve_precision(cfg.trainer) if harness else "32-true",
        "cuda_graph": resolve_cuda_graph(cfg) if harness else False,
        "jobs": jobs,
        "first_step_s": None if first_step_s is None else round(first_step_s, 6),
        "members": members,
    }


def _variants(rows: list[dict]) -> list[str]:
    """The harness variants in `rows`, in the order measured."""
    return list(dict.fromkeys(r["variant"] for r in rows if r["variant"] != "reference"))


def format_table(rows: list[dict]) -> str:
    """One line per arch and depth: the reference's ms/step, then each variant's ms/step (a fused
    group's: all its members' step) and its speed-up in images/s over the reference (where the
    reference was timed)."""
    single = [r for r in rows if r["jobs"] == 1]
    by_key = {(r["arch"], r["depth"], r["variant"]): r["ms_per_step"] for r in single}
    variants = _variants(single)
    lines = [f"{'arch':<8}{'depth':>6}{'reference':>12}" + "".join(f"{v:>20}" for v in variants)]
    lines.append(f"{'':<14}{'ms/step':>12}" + f"{'ms/step (speed-up)':>20}" * len(variants))
    for arch, depth in dict.fromkeys((r["arch"], r["depth"]) for r in single):
        ref = by_key.get((arch, depth, "reference"))
        cells = []
        for v in variants:
            ms = by_key.get((arch, depth, v))
            gain = f" ({members_of(v) * ref / ms:.2f}x)" if ref and ms else ""
            cell = "—" if ms is None else f"{ms:.1f}{gain}"
            cells.append(f"{cell:>20}")
        lines.append(
            f"{arch:<8}{depth:>6}{'—' if ref is None else f'{ref:.1f}':>12}" + "".join(cells)
        )
    return "\n".join(lines)


def projection(rows: list[dict], gains: Mapping[int, float], concurrent: str = "") -> list[str]:
    """The Figure 6 sweep's training time per variant (both archs from the slowest measured),
    and for variant `concurrent` with k jobs at once (`gains`: k -> measured throughput gain)."""
    measured = sorted({r["depth"] for r in rows})
    batch = rows[0]["batch"]
    lines = [
        f"Figure 6 sweep projection: plain+resnet at {'/'.join(map(str, PAPER_DEPTHS))}, "
        f"{PAPER_ITERATIONS} iterations each, at batch {batch}"
        + ("" if batch == PAPER_BATCH else f" (the paper's is {PAPER_BATCH})")
        + f"; ms/step linear in depth from depths {','.join(map(str, measured))}; "
        "training steps only (no evaluation, start-up or checkpoints)."
    ]
    named = ["reference", *_variants(rows)]
    width = max(len(v) for v in named)
    for variant in named:
        if not any(r["variant"] == variant and r["jobs"] == 1 for r in rows):
            continue
        total = 2 * project_sweep_s(ms_by_depth(rows, variant))
        k = members_of(variant)
        lines.append(
            f"  {variant:<{width}} 1 job at a time: {total / 60:8.1f} min"
            + (
                f" (each run at its cost in a group of {k}, e.g. plain and resnet of a depth"
                f"{'' if k == 2 else f' x {k // 2} seeds'})"
                if k > 1
                else ""
            )  # fmt: skip
        )
        if variant == concurrent:
            for k, gain in gains.items():
                if k > 1:
                    lines.append(
                        f"  {variant:<{width}} {k} jobs at once:  {total / gain / 60:8.1f} min "
                        f"(measured total throughput x{gain:.2f})"
                    )
    return lines


class CsvRows(list):
    """The bench's rows, each also appended to the CSV as soon as it is measured, so that a bench
    cut off by a time limit keeps what it measured."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writeheader()

    def append(self, row: dict) -> None:
        super().append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(row)


def measure_variants(
    s: Settings, root: str, name: str, device: torch.device, rows: CsvRows
) -> None:
    """Reference and harness rows for every arch and depth. A variant that fails is reported and
    skipped: the others still say what they cost."""
    for arch in s.archs:
        for depth in s.depths:
            timings = []
            if s.reference:
                cfg = compose_run(s, arch, depth, root)
                ref = time_reference(cfg, s.warmup, s.steps, s.workers, device)
                rows.append(
                    _row(name, cfg, "reference", ref.ms_per_step, s.steps, ref.first_step_s)
                )
                timings.append(f"reference {ref.ms_per_step:.1f}")
            for variant in s.variants:
                cfg = compose_run(s, arch, depth, root, variant)
                try:
                    t = time_harness(cfg, s.warmup, s.steps, members=members_of(variant))
                except Exception as e:  # reported in the table's place; no row is written
                    timings.append(f"{variant} FAILED ({type(e).__name__}: {e})")
                    continue
                rows.append(_row(name, cfg, variant, t.ms_per_step, s.steps, t.first_step_s))
                timings.append(f"{variant} {t.ms_per_step:.1f} (first step {t.first_step_s:.2f}s)")
            say(f"  {arch}-{depth}: ms/step {', '.join(timings)}")


def measure_jobs(
    s: Settings, root: str, name: str, device: torch.device, variant: str, rows: CsvRows
) -> dict[int, float]:
    """Rows for 1, 2, 4, ... concurrent processes of `variant`, first arch, deepest depth (the
    runs that dominate the sweep); returns each k's total throughput relative to one process."""
    arch, depth = s.archs[0], max(s.depths)
    cfg = compose_run(s, arch, depth, root, variant)
    say(f"concurrency: k {variant} processes of {arch}-{depth} at once on one {device.type}")
    totals = {}
    for k in job_counts(s.jobs):
        totals[k], ms = time_concurrent(cfg, k, s.warmup, s.steps, device)
        rows.append(_row(name, cfg, variant, ms, s.steps, jobs=k, total=totals[k]))
        say(f"  k={k}: {totals[k]:.0f} images/s in total, {ms:.1f} ms/step per process")
    return {k: totals[k] / totals[1] for k in totals}


def hydra_error(e: HydraException) -> str:
    """Hydra's message (an unknown arch or config group, an override's syntax) in one line,
    without its config search path."""
    text = str(e).split("\nConfig search path:")[0]
    said, _, options = text.partition("\n\nAvailable options in ")
    group, _, names = options.partition(":")
    available = f" (available in {group}: {', '.join(names.split())})" if options else ""
    return " ".join(said.split()) + available


def check_settings(s: Settings, root: str) -> None:
    """Every option and override as the timing would refuse it, refused before anything is timed
    or downloaded: a variant that fails is reported and skipped, so an option every variant
    refuses (--depths 21, --batch 0, data.limit=0) would otherwise end, minutes later, in
    "every variant failed"."""
    for name, value, minimum in [
        ("--steps", s.steps, 1),
        ("--warmup", s.warmup, 1),
        ("--batch", s.batch, 1),
        ("--workers", s.workers, 0),
        ("--jobs", s.jobs, 1),
    ]:
        check_count(name, value, minimum)
    check_count("--threads", s.threads, 0, none="unset for torch's default")  # 0: torch's
    for variant in s.variants:
        variant_overrides(variant)  # an unknown variant
    refused = command_line_error(s.overrides)  # as experiments.run's: schedule.lr=0.05 and the like
    if refused:
        raise OptionError(refused)
    try:
        check_added_keys(compose_config(s.overrides), s.overrides)  # a +KEY that nothing reads
    except HydraException as e:
        raise OptionError(hydra_error(e)) from None
    for arch in s.archs:
        for depth in s.depths:  # a variant's overrides change neither the net nor the data
            try:
                cfg = compose_run(s, arch, depth, root)
            except HydraException as e:  # an unknown arch (the overrides composed above)
                raise OptionError(f"--archs {arch}: {hydra_error(e)}") from None
            try:
                build_net(cfg)  # also an unknown class of data.classes
            except InvalidDepthError as e:
                raise OptionError(f"--depths {depth} ({arch}): {e}") from None
            make_datamodule(cfg)  # the data options (data.limit=0), without reading the data


def run(settings: Settings, note: str | None = None) -> list[dict]:
    """Measure, print the table and projection, write the CSV; returns the CSV's rows."""
    quiet_lightning()
    s = settings
    device = device_for()
    name = device_name(device)
    say(f"depthsweep bench on {name}, torch {torch.__version__}", *([note] if note else []))
    root = s.data_root or compose_config().data.root
    check_settings(s, root)
    if s.threads:
        torch.set_num_threads(s.threads)
    ensure_cifar10(root)  # downloads if online and missing, else says where it looked
    say(
        f"data: CIFAR-10 from {root}; {s.steps} timed steps after {s.warmup} warm-up steps",
        f"reference: fp32 eager, DataLoader of PIL images, {s.workers} workers; variants "
        f"{', '.join(s.variants)}; torch threads: {torch.get_num_threads()}",
    )
    rows = CsvRows(s.out)
    measure_variants(s, root, name, device, rows)
    if not any(r["variant"] != "reference" for r in rows):
        raise NothingMeasured(f"every variant failed: nothing to compare (rows so far in {s.out})")
    single = list(rows)
    concurrent, gains = fastest_variant(single), {}
    if s.jobs > 1:
        gains = measure_jobs(s, root, name, device, concurrent, rows)
    say("", format_table(single), "", *projection(single, gains, concurrent))
    say(f"wrote {s.out} ({len(rows)} rows); device: {name}")
    return list(rows)
