"""The composed config and what it leaves to be decided where a run trains: the device, precision,
the CUDA graph, the logging window."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from depthsweep import CONF_DIR
from depthsweep.errors import OptionError
from depthsweep.runs.provenance import cpu_flags


def compose_config(
    overrides: Sequence[str] = (), hydra: bool = False, config_name: str = "config"
) -> DictConfig:
    """The config `python -m experiments.run <overrides>` would train (with its `hydra` node if
    asked), composed outside a Hydra app: for the bench, the tests and notebooks; another of
    conf/'s primary configs by `config_name` (experiments.transfer's "transfer")."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="run"):
        return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)


# KEY=~/path, a value that begins with a home directory (no list, no quotes).
_HOME_VALUE = re.compile(r"^(\+{0,2}[A-Za-z_][\w.\-/@]*)=(~[^,'\"\s]*)$")


def home_expanded(argv: Sequence[str]) -> list[str]:
    """The command line with `KEY=~/x` written `KEY='/home/me/x'`: what a shell does for an
    assignment but not for an argument, and what Hydra's override grammar, which refuses a bare
    `~`, then gets quoted. Anything else (a `~KEY` deletion, a list, a quoted value) is left to
    Hydra as typed."""
    out = list(argv[:1])
    for arg in argv[1:]:
        match = _HOME_VALUE.match(arg)
        home = os.path.expanduser(match[2]) if match else None
        out.append(f"{match[1]}='{home}'" if match and "'" not in home else arg)
    return out


def device_for(accelerator: str = "auto") -> torch.device:
    """Where work runs: the GPU if there is one and `accelerator` (trainer.accelerator) allows
    it, else the CPU. The one rule for training, transfer, diagnostics and the bench."""
    gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if gpu else "cpu")


def trains_on_gpu(trainer_cfg: DictConfig) -> bool:
    return device_for(trainer_cfg.accelerator).type == "cuda"


# trainer.precision: bf16-mixed where the hardware computes bf16 natively (a GPU; a CPU with AMX
# or AVX512-BF16), fp32 elsewhere, where bf16 is emulated and slower.
NATIVE_BF16 = "bf16-where-native"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16; False where not known)."""
    return bool(cpu_flags(cpuinfo) & {"amx_bf16", "avx512_bf16"})


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has AMX's bf16 tiles (an Intel Xeon since Sapphire Rapids)."""
    return "amx_bf16" in cpu_flags(cpuinfo)


# What a run trains in: its images reach the net as fp32 (the data module's normalisation), which
# autocast (the -mixed ones) takes as they are; a "-true" half or double precision casts the
# weights alone, and the first convolution failed on fp32 images against fp64 or bf16 weights.
TRAINED_PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def check_precision(precision: object, given: str) -> None:
    """An OptionError starting with `given` (the option as typed) unless `precision`, by its full
    name (ALIASES), is one a run trains in."""
    if ALIASES.get(str(precision), str(precision)) not in TRAINED_PRECISIONS:
        raise OptionError(
            f"{given}: a run trains in 32-true, bf16-mixed or 16-mixed (its images "
            "are fp32; a '-true' half or double precision would cast only the weights)"
        )


# Lightning's short names, and what it trains fp16 as on a CPU (with a warning): run.json records
# the precision a run trained in, which "16" on a CPU is not.
ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """'auto': bf16-mixed where a GPU trains (with the CUDA graph, the fastest measured), fp32 on
    a CPU. NATIVE_BF16: bf16-mixed on a GPU or a CPU with native bf16 (2.2x faster than fp32 on
    the project's Xeon at figure6_cpu's sizes, results/cpu_paths), fp32 on other CPUs. Others by
    their full name (ALIASES), 16-mixed on a CPU as bf16-mixed."""
    precision = str(trainer_cfg.precision)
    if precision == NATIVE_BF16:
        native = trains_on_gpu(trainer_cfg) or cpu_has_native_bf16()
        return "bf16-mixed" if native else "32-true"
    if precision == "auto":
        return "bf16-mixed" if trains_on_gpu(trainer_cfg) else "32-true"
    precision = ALIASES.get(precision, precision)
    return "bf16-mixed" if precision == "16-mixed" and not trains_on_gpu(trainer_cfg) else precision


# fuse: "K-where-avx512": K where a GPU trains or ATen runs the CPU's kernels at AVX-512 (so
# ATEN_CPU_CAPABILITY=avx2 stands for a CPU without) on a CPU without AMX, one run at a time
# elsewhere. At figure6_cpu's width a run cost 1.3-1.5x less in a group of 2 or 4 than alone on
# an AMD EPYC with AVX-512 in fp32 (more in bf16), and 1.24-1.75x more with oneDNN and ATen held
# to AVX2, as on most laptops (results/cpu_bench/fused_fp32_width4.txt). A Xeon with AMX trains
# bf16 on other kernels, where fused groups were never timed: there each run trains alone, as
# the experiment was measured there (figure6_cpu_2500_intel and its rerun, 48-58 min).
FUSE_WHERE_AVX512 = re.compile(r"(\d+)-where-avx512")


def resolve_fuse(cfg: DictConfig) -> object:
    """`fuse` as a count: "K-where-avx512" resolved here (FUSE_WHERE_AVX512); anything else as
    given, for check_options to judge."""
    fuse = cfg.get("fuse", 1)
    match = FUSE_WHERE_AVX512.fullmatch(fuse) if isinstance(fuse, str) else None
    if match is None:
        return fuse
    avx512 = torch.backends.cpu.get_cpu_capability() == "AVX512" and not cpu_has_amx()
    wide = trains_on_gpu(cfg.trainer) or avx512
    return int(match[1]) if wide else 1


def resolve_channels_last(cfg: DictConfig) -> bool:
    """'auto': channels-last wherever the run trains in a reduced precision (bf16 or fp16),
    except on a CPU with AMX; contiguous in fp32."""
    if cfg.channels_last == "auto":
        reduced = resolve_precision(cfg.trainer).startswith(("bf16", "16"))
        # bf16 steps of the 4-16 channel nets in channels-last: 2-14% slower than contiguous on
        # a Xeon with AMX (results/cpu_paths), 24-28% faster on an AMD EPYC with AVX512-BF16 and
        # no AMX (results/cpu_paths_amd); faster on a GPU (results/gpu).
        return reduced and (trains_on_gpu(cfg.trainer) or not cpu_has_amx())
    return bool(cfg.channels_last)


def resolve_cuda_graph(cfg: DictConfig) -> bool:
    """'auto': on where a GPU trains in fp32 or bf16 (the measured winner, tested against eager
    training); a CPU, or fp16 (whose loss scaler cannot be graphed), trains eagerly."""
    if cfg.cuda_graph != "auto":
        return bool(cfg.cuda_graph)
    return trains_on_gpu(cfg.trainer) and not resolve_precision(cfg.trainer).startswith("16")


def log_window(cfg: DictConfig) -> int:
    """Iterations per logged training-metrics row: at most log_every_n_steps, >= 10 rows a run."""
    return max(1, min(cfg.trainer.log_every_n_steps, cfg.schedule.iterations // 10))


def use_threads(cfg: DictConfig) -> None:
    """torch's intra-op threads for a run on a CPU: `threads` (null: torch's default, a thread per
    core). One per run with runs at once on as many cores (hydra/launcher=joblib)."""
    if cfg.get("threads") and not trains_on_gpu(cfg.trainer):
        torch.set_num_threads(cfg.threads)


def pin_data_root(cfg: DictConfig) -> None:
    """data.root as the absolute folder it names where the command was started (a relative root
    is relative to there, also with hydra.job.chdir=true, which moves the job into its run
    directory: Hydra's to_absolute_path), so that its config.yaml and checkpoint name the data it
    read wherever they are used from: a notebook's kernel runs in notebooks/, the zoo anywhere."""
    cfg.data.root = to_absolute_path(str(Path(cfg.data.root).expanduser()))


def job_overrides() -> list[str]:
    """The overrides of the Hydra job running now, as typed (none outside a Hydra app)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def run_label(cfg: DictConfig) -> str | None:
    """How a run names itself in its console lines: `plain-56 seed=0`; None for a config that
    names no arch (a transfer run's, which says its own)."""
    if cfg.get("arch_name") is None:
        return None
    return f"{cfg.arch_name}-{cfg.depth} seed={cfg.seed}"
